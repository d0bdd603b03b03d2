"""``orderflow contracts``: the can-i-deploy matrix without a broker, and its exit status."""

import json
import shutil
from pathlib import Path

import pytest

from orderflow import cli
from orderflow_dev.contracts import pactfiles


def test_verify_prints_the_matrix_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["contracts", "verify"]) == 0
    out = capsys.readouterr().out
    assert "12 pair(s), 25 interaction(s)" in out
    assert "order                 -               verified (4)    verified (4)    verified (3)" in out
    assert "all pairs verified" in out


def test_verify_fails_naming_consumer_interaction_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A consumer (shipping) starts to expect a field billing does not send; the matrix says who, where and why."""
    copy = tmp_path / "contracts"
    shutil.copytree(pactfiles.CONTRACTS_DIR, copy, ignore=shutil.ignore_patterns("tools"))
    path = pactfiles.pact_path(copy, "shipping", "billing")
    doc = json.loads(path.read_text())
    charged = next(i for i in doc["interactions"] if i["description"].startswith("PaymentCharged"))
    charged["contents"]["content"]["amount"]["fee_minor"] = 30
    path.write_text(json.dumps(doc))

    assert cli.main(["contracts", "verify", "--pacts", str(copy), "--provider", "billing"]) == 1
    out = capsys.readouterr().out
    assert "shipping              -               -               FAILED" in out
    assert "FAILED shipping (consumer) x billing (provider):" in out
    assert "shipping's expectations changed since shipping-billing.json was generated" in out
    assert "shipping: 'PaymentCharged for an order whose stock is reserved': $.amount: " in out
    assert "fee_minor" in out
    assert "1 pair(s) failed" in out


def test_verify_provider_only_checks_the_files_as_they_are(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "contracts"
    shutil.copytree(pactfiles.CONTRACTS_DIR, copy, ignore=shutil.ignore_patterns("tools"))
    argv = ["contracts", "verify", "--pacts", str(copy), "--provider-only", "--consumer=order", "--provider=billing"]
    assert cli.main(argv) == 0
    assert "1 pair(s), 4 interaction(s)" in capsys.readouterr().out


def test_graph_and_drift_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["contracts", "graph", "--check"]) == 0
    assert capsys.readouterr().out.startswith("flowchart LR\n")
    assert cli.main(["contracts", "drift"]) == 0
    assert "contracts/ is up to date" in capsys.readouterr().out


def test_usage_errors_exit_2() -> None:
    assert cli.main(["contracts", "verify", "--provider", "payroll"]) == 2
