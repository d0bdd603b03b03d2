"""`orderflow operator` (``orderflow_operator.main``): the scope must be explicit, and the public surface is what
the package says it is."""

from __future__ import annotations

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
