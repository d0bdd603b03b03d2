"""Running ``orderflow trace|flow|dlq`` as a user does: the real command, in its own process, against a stack."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from orderflow_dev.stack import Stack


def run(stack: Stack, *args: str, bootstrap: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``orderflow <args>`` pointed at ``stack``'s topics and APIs (through the command-line options)."""
    urls = [f"--{name}-url={service.url}" for name, service in stack.services.items()]
    command = [sys.executable, "-m", "orderflow.cli", *args, f"--bootstrap={bootstrap}", f"--prefix={stack.prefix}",
               *urls]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def json_of(stack: Stack, *args: str, bootstrap: str, expect: int = 0) -> Any:
    done = run(stack, *args, "--json", bootstrap=bootstrap)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)
