"""The background broker behind ``orderflow kafka start|stop|status``: a :class:`LocalBroker` detached from the
process that started it, found again through a pid file in ``${ORDERFLOW_STATE:-~/.local/state/orderflow}/kafka``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from pathlib import Path
from typing import Final, TypedDict

from orderflow_dev.kafka.broker import LocalBroker, broker_answers, signal_group
from orderflow_dev.kafka.errors import BrokerUnreachableError, KafkaToolError
from orderflow_dev.kafka.files import daemon_dir, file_lock, write_atomic
from orderflow_dev.kafka.jars import kafka_version

log = logging.getLogger(__name__)

DEFAULT_DAEMON_PORT: Final = 19092


class DaemonStatus(TypedDict):
    pid: int
    bootstrap: str
    answering: bool
    state_dir: str
    log: str
    kafka_version: str


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as gone; our own dead child gets reaped)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _wait_pid_exit(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` (not necessarily our child) has exited; False if it still runs after ``timeout``."""
    deadline = time.monotonic() + timeout
    pidfd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)
    try:
        while _pid_alive(pid):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if pidfd is not None:
                select.select([pidfd], [], [], min(remaining, 0.5))  # readable once the process has exited
            else:
                time.sleep(min(remaining, 0.1))  # polling fallback without pidfd
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _is_daemon_broker(pid: int, state: Path) -> bool:
    """Guard against pid reuse: the process must be a Kafka broker using this state dir."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid file
    return b"kafka.Kafka" in cmdline and str(state / "server.properties").encode() in cmdline


def _daemon_files(state: Path) -> tuple[Path, Path]:
    return state / "broker.pid", state / "bootstrap"


def daemon_status(*, probe_timeout: float = 3.0) -> DaemonStatus | None:
    """The daemon's pid, bootstrap servers and whether it answers, or None if it is not running."""
    state = daemon_dir()
    pid_file, bootstrap_file = _daemon_files(state)
    try:
        pid = int(pid_file.read_text().strip())
        bootstrap = bootstrap_file.read_text().strip()
    except (FileNotFoundError, ValueError):
        return None
    if not _pid_alive(pid) or not _is_daemon_broker(pid, state):
        return None
    return DaemonStatus(
        pid=pid,
        bootstrap=bootstrap,
        answering=broker_answers(bootstrap, timeout=probe_timeout),
        state_dir=str(state),
        log=str(state / "server.log"),
        kafka_version=kafka_version(),
    )


def start_daemon(port: int = DEFAULT_DAEMON_PORT, *, startup_timeout: float = 120.0) -> str:
    """Start the background broker (idempotent: an answering one is reused); return its bootstrap servers."""
    state = daemon_dir()
    state.mkdir(parents=True, exist_ok=True)
    with file_lock(state / ".lock"):
        status = daemon_status()
        if status is not None:
            if status["answering"]:
                return status["bootstrap"]
            # Alive but silent: give it the startup allowance, then give up.
            deadline = time.monotonic() + startup_timeout
            while time.monotonic() < deadline and _pid_alive(status["pid"]):
                if broker_answers(status["bootstrap"], timeout=2.0):
                    return status["bootstrap"]
            raise BrokerUnreachableError(
                f"the Kafka daemon (pid {status['pid']}, {status['bootstrap']}) runs but does not answer; "
                f"see {status['log']} and {state / 'broker.log'}, or `orderflow kafka stop` and start again"
            )
        broker = LocalBroker(state, port=port, startup_timeout=startup_timeout)
        bootstrap = broker.start()
        pid = broker.detach()
        pid_file, bootstrap_file = _daemon_files(state)
        write_atomic(bootstrap_file, bootstrap + "\n")
        write_atomic(pid_file, f"{pid}\n")
        return bootstrap


def stop_daemon(*, timeout: float = 30.0) -> int | None:
    """Stop the background broker (SIGTERM, SIGKILL after ``timeout``); its pid, or None if none ran."""
    state = daemon_dir()
    pid_file, bootstrap_file = _daemon_files(state)
    with file_lock(state / ".lock"):
        status = daemon_status(probe_timeout=0.5)
        stopped: int | None = None
        if status is not None:
            pid = status["pid"]
            signal_group(pid, signal.SIGTERM)
            if not _wait_pid_exit(pid, timeout):
                log.warning("Kafka daemon pid %d ignored SIGTERM for %.0fs; killing it", pid, timeout)
                signal_group(pid, signal.SIGKILL)
                if not _wait_pid_exit(pid, 30):
                    raise KafkaToolError(f"the Kafka daemon (pid {pid}) survived SIGKILL")
            stopped = pid
        for path in (pid_file, bootstrap_file):
            path.unlink(missing_ok=True)
        return stopped
