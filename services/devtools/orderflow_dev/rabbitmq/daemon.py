"""The background node behind ``orderflow rabbitmq start|stop|status``: a :class:`RabbitMQServer` that outlives
the command that started it, found again through ``${ORDERFLOW_STATE:-~/.local/state/orderflow}/rabbitmq``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import TypedDict

from orderflow_dev.kafka.files import file_lock, write_atomic
from orderflow_dev.rabbitmq.server import RabbitMQServer, answers
from orderflow_dev.wait import until


class DaemonStatus(TypedDict):
    pid: int
    epmd_pid: int
    url: str
    management_url: str
    answering: bool
    state_dir: str


def daemon_dir() -> Path:
    state = os.environ.get("ORDERFLOW_STATE")
    return (Path(state).expanduser() if state else Path.home() / ".local" / "state" / "orderflow") / "rabbitmq"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
    return True


def _is_our_node(pid: int, state: Path) -> bool:
    """Guard against pid reuse: the process must be an Erlang VM whose data is in ``state``."""
    try:
        return str(state).encode() in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return True


def daemon_status(*, probe_timeout: float = 3.0) -> DaemonStatus | None:
    state = daemon_dir()
    try:
        saved = json.loads((state / "daemon.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    pid = int(saved["pid"])
    if not _alive(pid) or not _is_our_node(pid, state):
        return None
    return DaemonStatus(
        pid=pid,
        epmd_pid=int(saved["epmd_pid"]),
        url=saved["url"],
        management_url=saved["management_url"],
        answering=answers(saved["url"], timeout=probe_timeout),
        state_dir=str(state),
    )


def start_daemon(*, startup_timeout: float = 60.0) -> DaemonStatus:
    """Start the background node (an answering one is reused) and return its status."""
    state = daemon_dir()
    state.mkdir(parents=True, exist_ok=True)
    with file_lock(state / ".lock"):
        status = daemon_status()
        if status is not None and status["answering"]:
            return status
        if status is not None:
            _stop_pids(status["pid"], status["epmd_pid"])
        node = state / "node"
        shutil.rmtree(node, ignore_errors=True)
        node.mkdir()
        server = RabbitMQServer(node, die_with_parent=False)
        server.start(startup_timeout)
        assert server.process is not None and server.epmd is not None
        saved = {
            "pid": server.process.pid,
            "epmd_pid": server.epmd.pid,
            "url": server.url,
            "management_url": server.management_url,
            "start_seconds": round(server.start_seconds, 2),
        }
        write_atomic(state / "daemon.json", json.dumps(saved) + "\n")
        status = daemon_status()
        assert status is not None
        return status


def _stop_pids(pid: int, epmd_pid: int, timeout: float = 30.0) -> None:
    for target in (pid, epmd_pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(target, signal.SIGTERM)

        def gone(t: int = target) -> bool:
            return not _alive(t)

        with contextlib.suppress(AssertionError):  # a Timeout: SIGKILL below
            until(gone, timeout=timeout, what=f"pid {target} to exit")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(target, signal.SIGKILL)


def stop_daemon() -> int | None:
    """Stop the background node and its epmd; its pid, or None if none ran."""
    state = daemon_dir()
    with file_lock(state / ".lock"):
        status = daemon_status(probe_timeout=0.5)
        if status is not None:
            _stop_pids(status["pid"], status["epmd_pid"])
        (state / "daemon.json").unlink(missing_ok=True)
        return status["pid"] if status is not None else None
