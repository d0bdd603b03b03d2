"""`orderflow operator` (``orderflow_operator.main``): the scope must be explicit, and the public surface is what
the package says it is."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import orderflow_operator
from orderflow_operator import cli


def test_scope_is_required_and_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    for argv in ([], ["--all-namespaces", "--namespace=a"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 2
    assert "--all-namespaces" in capsys.readouterr().err
    args = parser.parse_args(["-n", "a", "--namespace", "b", "--liveness", "http://0.0.0.0:8080/healthz"])
    assert args.namespaces == ["a", "b"] and not args.all_namespaces
    assert args.liveness == "http://0.0.0.0:8080/healthz"


def test_module_entry_point_prints_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orderflow_operator", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "usage: orderflow operator" in result.stdout and "--liveness" in result.stdout


def test_public_names_are_exported_sorted_and_documented() -> None:
    assert orderflow_operator.__all__ == sorted(orderflow_operator.__all__)
    assert orderflow_operator.main is cli.main
    for name in orderflow_operator.__all__:
        assert getattr(orderflow_operator, name).__doc__, name


def test_identity_without_a_passwd_entry_or_user_variables() -> None:
    """Regression: in a Pod whose numeric uid (65532) has no passwd entry and no USER/LOGNAME, kopf's own identity
    guess (``getpass.getuser()``) raised ``KeyError: 'getpwuid(): uid not found'`` and the operator crash-looped.
    The operator names itself from the Pod instead, and never asks the passwd database."""
    code = (
        "import pwd\n"
        "def refuse(uid): raise KeyError(f'getpwuid(): uid not found: {uid}')\n"
        "pwd.getpwuid = refuse\n"
        "from orderflow_operator import cli\n"
        "print(cli.identity())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"USER", "LOGNAME", "POD_ID", "POD_NAME"}}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith(f"uid{os.getuid()}@")
    env["POD_NAME"] = "orderflow-operator-7d9f-abcde"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "orderflow-operator-7d9f-abcde"
    assert cli.identity({"POD_ID": "explicit", "POD_NAME": "pod"}) == "explicit"
