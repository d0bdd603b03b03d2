"""Every container the charts run from the OrderFlow image runs a real ``orderflow`` subcommand.

Each rendered ``command`` + ``args`` is handed to the real CLI (``orderflow.cli:main``, the console script's
target) in a subprocess whose argparse stops right after a successful parse: the subcommand's own parser must
accept every argument, so a misspelt subcommand, service or flag fails here instead of in a CrashLoopBackOff on
the user's cluster. (Appending ``--help`` would not do: argparse acts on it before it reports unknown flags.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from orderflow.events import catalog
from tests.deploy import charts


def _orderflow_commands() -> dict[str, list[str]]:
    """``case/kind/name/container`` -> the argv after ``orderflow``, for containers whose command is orderflow."""
    found: dict[str, list[str]] = {}
    for case in charts.CASES:
        for name, template in charts.pod_templates(charts.render(case)):
            for container in charts.containers(template["spec"]):
                argv = [*container.get("command", []), *container.get("args", [])]
                if argv and argv[0] == "orderflow":
                    found[f"{case.id} {name}/{container['name']}"] = argv[1:]
    return found


COMMANDS = _orderflow_commands()


# Parse, report what was parsed and stop: the command itself never runs.
_PARSE_ONLY = """
import argparse, sys
_parse = argparse.ArgumentParser.parse_args
def parse_args(self, args=None, namespace=None):
    parsed = _parse(self, args, namespace)
    print("PARSED", self.prog, sorted(vars(parsed).items(), key=str))
    sys.exit(0)
argparse.ArgumentParser.parse_args = parse_args
from orderflow.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _PARSE_ONLY, *argv], capture_output=True, text=True, timeout=120)


def test_the_charts_run_every_service_and_the_operator() -> None:
    runs = {tuple(argv) for argv in COMMANDS.values()}
    assert {("run", s) for s in catalog.SERVICES} <= runs
    assert any(argv[0] == "operator" for argv in runs)


@pytest.mark.parametrize("argv", sorted({tuple(a) for a in COMMANDS.values()}), ids=" ".join)
def test_each_command_parses_with_the_real_cli(argv: tuple[str, ...]) -> None:
    result = _cli(*argv)
    assert result.returncode == 0, f"orderflow {' '.join(argv)}: {result.stderr[-2000:]}"
    assert result.stdout.startswith(f"PARSED orderflow {argv[0]}" if argv[0] != "run" else "PARSED orderflow"), (
        result.stdout)


@pytest.mark.parametrize("argv", [("run", "warehouse"), ("operator", "--every-namespace"), ("serve",)])
def test_a_wrong_command_is_caught(argv: tuple[str, ...]) -> None:
    result = _cli(*argv)
    assert result.returncode == 2 and "error:" in result.stderr, (result.stdout, result.stderr)
