"""A real, local NATS server with JetStream (Debian's ``nats-server``) for tests, the demo and a developer's shell.

Why this exists: the NATS transport is proven against the real server, never a fake, and a developer runs it with
one command. ``nats-server -js`` is a single static binary (``tests/support/install-nats.sh`` installs Debian's
package when it is missing), so there is nothing to fetch or build:

* :class:`NatsServer` — a private server on a free 127.0.0.1 port with its JetStream store in a temp (or given)
  directory; ``restart()`` keeps port and store, as a broker restart does;
* :func:`ensure_server` — what the ``nats_url`` fixture and the demo call: ``ORDERFLOW_NATS_URL`` if set, else a
  private server for the duration;
* ``orderflow nats start|stop|status`` (:func:`main`) — a background server on 127.0.0.1:14222 with its state in
  ``${ORDERFLOW_STATE:-~/.local/state/orderflow}/nats``, found again through a pid file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

import nats.errors
from nats.aio.client import Client

from orderflow_dev.kafka.files import file_lock, tail, write_atomic
from orderflow_dev.stack import free_port
from orderflow_dev.wait import Timeout, until

URL_ENV: Final = "ORDERFLOW_NATS_URL"
DEFAULT_DAEMON_PORT: Final = 14222
INSTALL_SCRIPT: Final = Path("tests") / "support" / "install-nats.sh"


class NatsToolError(RuntimeError):
    """nats-server is missing, would not start, or the daemon is in a state the command cannot handle."""


def find_binary() -> Path:
    """The ``nats-server`` binary (on PATH, or Debian's /usr/sbin, which a non-root PATH may lack)."""
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise NatsToolError(f"nats-server not found: run `bash {INSTALL_SCRIPT}` (Debian's nats-server)")
    return Path(found)


def server_answers(url: str, *, timeout: float = 2.0) -> bool:
    """True if a NATS server with JetStream answers at ``url`` (connect, then a JetStream account-info call)."""

    async def quiet(_: Exception) -> None:
        pass

    async def ask() -> bool:
        nc = Client()
        try:
            # allow_reconnect=False alone still retries the server after reconnect_time_wait (2 s): one quick try.
            await nc.connect(
                servers=[url],
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                connect_timeout=timeout,  # type: ignore[arg-type]  # nats-py annotates seconds as int
                error_cb=quiet,
            )
            await nc.jetstream(timeout=timeout).account_info()
            return True
        finally:
            await nc.close()

    try:
        return asyncio.run(asyncio.wait_for(ask(), timeout + 1))
    except (OSError, TimeoutError, nats.errors.Error):
        return False


def _die_with_parent() -> None:
    # A killed test run leaves no server behind.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class NatsServer:
    """``with NatsServer() as server:`` — ``server.url``; ``stop()``/``start()``/``restart()`` keep port and store."""

    def __init__(self, *, store_dir: Path | None = None, port: int | None = None, detached: bool = False) -> None:
        self.binary = find_binary()
        self._own_dir = store_dir is None
        self.root = store_dir or Path(tempfile.mkdtemp(prefix="orderflow-nats-"))
        self.port = port or free_port()
        self.detached = detached
        self.log_path = self.root / "nats-server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    def command(self) -> list[str]:
        store = self.root / "jetstream"
        return [
            str(self.binary),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            str(store),
            "-n",
            f"orderflow-{self.port}",
        ]

    def start(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=self.detached,
            preexec_fn=None if self.detached else _die_with_parent,
        )

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise NatsToolError(f"nats-server exited ({self.process.returncode}):\n{self.log_tail()}")
            return server_answers(self.url, timeout=1.0)

        try:
            until(up, timeout=timeout, what=f"nats-server on {self.url} (JetStream)", interval=0.1)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (nats-server flushes its store and exits), SIGKILL after ``timeout``."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)


@contextlib.contextmanager
def ensure_server() -> Iterator[str]:
    """The URL of a NATS server with JetStream: ``$ORDERFLOW_NATS_URL``, else a private one for the duration."""
    explicit = os.environ.get(URL_ENV, "").strip()
    if explicit:
        yield explicit
        return
    with NatsServer() as server:
        yield server.url


# -- the background server of `orderflow nats start|stop|status` ---------------------------------------------------


def daemon_dir() -> Path:
    """``${ORDERFLOW_STATE:-~/.local/state/orderflow}/nats``: the daemon's pid, URL, store and log."""
    base = os.environ.get("ORDERFLOW_STATE")
    return (Path(base).expanduser() if base else Path.home() / ".local" / "state" / "orderflow") / "nats"


def _pid_alive(pid: int, state: Path) -> bool:
    try:
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except ProcessLookupError:
        return False
    except OSError:
        return True  # no /proc: trust the pid file
    # Guard against pid reuse: it must be a nats-server on this state dir (and not a zombie without cmdline).
    return b"nats-server" in cmdline and str(state).encode() in cmdline


def daemon_status() -> dict[str, object] | None:
    """pid, url, whether it answers, and where its state is; None when it does not run."""
    state = daemon_dir()
    try:
        pid = int((state / "server.pid").read_text().strip())
        url = (state / "url").read_text().strip()
    except (FileNotFoundError, ValueError):
        return None
    if not _pid_alive(pid, state):
        return None
    return {
        "pid": pid,
        "url": url,
        "answering": server_answers(url),
        "state_dir": str(state),
        "log": str(state / "nats-server.log"),
    }


def start_daemon(port: int = DEFAULT_DAEMON_PORT, *, timeout: float = 30.0) -> str:
    """Start the background server (an answering one is reused); return its URL."""
    state = daemon_dir()
    with file_lock(state / ".lock"):
        status = daemon_status()
        if status is not None:
            if status["answering"]:
                return str(status["url"])
            raise NatsToolError(
                f"the NATS daemon (pid {status['pid']}) runs but does not answer; see "
                f"{status['log']}, or `orderflow nats stop` and start again"
            )
        server = NatsServer(store_dir=state, port=port, detached=True)
        server.start(timeout)
        assert server.process is not None
        write_atomic(state / "url", server.url + "\n")
        write_atomic(state / "server.pid", f"{server.process.pid}\n")
        return server.url


def stop_daemon(timeout: float = 15.0) -> int | None:
    """Stop the background server; its pid, or None if none ran."""
    state = daemon_dir()
    with file_lock(state / ".lock"):
        status = daemon_status()
        stopped: int | None = None
        if status is not None:
            pid = int(str(status["pid"]))
            os.kill(pid, signal.SIGTERM)
            try:
                until(lambda: not _pid_alive(pid, state), timeout=timeout, what=f"nats-server pid {pid} to exit")
            except Timeout:
                os.kill(pid, signal.SIGKILL)
            stopped = pid
        for name in ("server.pid", "url"):
            (state / name).unlink(missing_ok=True)
        return stopped


def main(argv: list[str]) -> int:
    """``orderflow nats start|stop|status``; returns the exit status (status: 0 running, 3 not)."""
    parser = argparse.ArgumentParser(
        prog="orderflow nats",
        description=f"Run a local NATS server with JetStream on 127.0.0.1 in the background. State: {daemon_dir()}.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the server (no-op if it already runs) and print its URL")
    start.add_argument("--port", type=int, default=DEFAULT_DAEMON_PORT, help="client port (default %(default)s)")
    start.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it to answer")
    sub.add_parser("stop", help="stop the server")
    sub.add_parser("status", help="exit 0 if the server runs, 3 if not")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "start":
            url = start_daemon(args.port, timeout=args.timeout)
            print(url)
            print(f"To use it: export ORDERFLOW_TRANSPORT=nats {URL_ENV}={url}")
            return 0
        if args.command == "stop":
            pid = stop_daemon()
            print(f"stopped the NATS server (pid {pid})" if pid is not None else "the NATS server was not running")
            return 0
        status = daemon_status()
        if status is None:
            print("the NATS server is not running")
            return 3
        print(
            f"running: pid {status['pid']}, {status['url']}, "
            f"{'answering' if status['answering'] else 'NOT answering'}; state dir {status['state_dir']}"
        )
        return 0
    except (NatsToolError, OSError) as exc:
        print(f"orderflow nats: error: {exc}", file=sys.stderr)
        return 1
