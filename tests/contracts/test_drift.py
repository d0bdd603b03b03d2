"""Drift check: what the code generates today is what is committed in contracts/ (pacts, AsyncAPI, graph).

A consumer that changes what it expects must regenerate and commit its pact, so the change is reviewed; a catalog
change must regenerate asyncapi.yaml; a new contract must redraw the graph.
"""

import json
import random
import shutil
from pathlib import Path

from orderflow_dev.contracts import artifacts, pactfiles


def test_committed_contracts_are_what_the_code_generates() -> None:
    problems = artifacts.drift()
    assert not problems, "\n\n".join(problems) + "\n\nrun `orderflow contracts generate` and review the diff"


def _copy_of_contracts(tmp_path: Path) -> Path:
    copy = tmp_path / "contracts"
    shutil.copytree(pactfiles.CONTRACTS_DIR, copy, ignore=shutil.ignore_patterns("tools"))
    return copy


def test_a_changed_consumer_expectation_is_drift(tmp_path: Path) -> None:
    copy = _copy_of_contracts(tmp_path)
    path = pactfiles.pact_path(copy, "billing", "order")
    doc = json.loads(path.read_text())
    doc["interactions"][0]["contents"]["content"]["customer_id"] = "someone-else"
    path.write_text(json.dumps(doc))
    problems = artifacts.drift(copy)
    assert len(problems) == 1 and problems[0].startswith("billing-order.json differs"), problems
    assert "someone-else" in problems[0]


def test_missing_stale_and_hand_edited_files_are_drift(tmp_path: Path) -> None:
    copy = _copy_of_contracts(tmp_path)
    pactfiles.pact_path(copy, "shipping", "order").unlink()
    shutil.copy(pactfiles.pact_path(copy, "order", "billing"), copy / "accounting-billing.json")
    (copy / artifacts.ASYNCAPI_FILE).write_text((copy / artifacts.ASYNCAPI_FILE).read_text() + "x-edited: true\n")
    problems = "\n".join(artifacts.drift(copy))
    assert "shipping-order.json: not committed" in problems
    assert "accounting-billing.json: committed, but no consumer expects it" in problems
    assert "asyncapi.yaml differs" in problems


def test_normal_form_ignores_interaction_order_and_the_writer_stamp() -> None:
    doc = json.loads(pactfiles.pact_path(pactfiles.CONTRACTS_DIR, "order", "billing").read_text())
    shuffled = json.loads(json.dumps(doc))
    random.Random(4).shuffle(shuffled["interactions"])
    shuffled["metadata"]["pactRust"] = {"ffi": "9.9.9", "models": "9.9.9"}
    assert shuffled["interactions"] != doc["interactions"]
    assert pactfiles.normalise(shuffled) == pactfiles.normalise(doc)
    assert pactfiles.dumps(pactfiles.normalise(shuffled)) == pactfiles.dumps(pactfiles.normalise(doc))


def test_committed_pacts_are_stored_in_normal_form() -> None:
    for pact in pactfiles.load_all(pactfiles.CONTRACTS_DIR):
        normal = pactfiles.normalise(pact.document)
        assert [i["description"] for i in pact.interactions] == [i["description"] for i in normal["interactions"]]
        assert pact.path.read_text() == pactfiles.dumps(pact.document)
        assert pact.document["metadata"]["pactSpecification"]["version"] == "4.0"
