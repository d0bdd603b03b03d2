"""A private RabbitMQ node on 127.0.0.1 that shares nothing with the machine's own (Debian's ``rabbitmq-server``).

Why it is built this way: a RabbitMQ node is an Erlang VM that finds itself through epmd, keeps its state under
``/var/lib/rabbitmq`` and reads ``/etc/rabbitmq``, all shared with any other node on the machine. Here every one
of those is private: a unique node name, its own epmd on a free port (our child, so we can kill it: Erlang's own
``epmd -daemon`` would outlive us), the distribution and AMQP ports free on loopback, and the config, the enabled
plugins, Mnesia and the logs in one temporary directory. ``HOME`` points there too, so the Erlang cookie is
private. The VM runs as the current user (root works: no ``su rabbitmq``), in its own process group, with
``RUNNING_UNDER_SYSTEMD`` so the start script ``exec``s the VM instead of wrapping it in a shell that traps
signals; SIGTERM then stops it cleanly.

Plugins: ``rabbitmq_consistent_hash_exchange`` (the transport's per-group hash exchange) and
``rabbitmq_management`` (its HTTP API on another free loopback port: the only way to read a queue's
unacknowledged count, which the backlog reader needs). ``collect_statistics_interval`` is 500 ms and the quorum
queues' ``quorum_tick_interval`` 1 s (``advanced.config``), so the backlog a test reads is fresh.

:meth:`halt` and :meth:`resume` stop and start the same node on the same ports and data: a broker restart as
clients see one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Final

import pika
import pika.exceptions

from orderflow_dev.stack import free_port
from orderflow_dev.wait import until

SBIN: Final = Path(os.environ.get("ORDERFLOW_RABBITMQ_SBIN", "/usr/lib/rabbitmq/bin"))
PLUGINS: Final = ("rabbitmq_consistent_hash_exchange", "rabbitmq_management")


class RabbitMQUnavailable(RuntimeError):
    """No RabbitMQ server on this machine, or the node would not start."""


def _die_with_parent() -> None:
    # A killed test run leaves no node behind (the daemon, which must outlive its starter, skips this).
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def answers(url: str, *, timeout: float = 2.0) -> bool:
    """True if an AMQP connection to ``url`` opens (and a channel on it)."""
    params = pika.URLParameters(url)
    params.socket_timeout = timeout
    params.connection_attempts = 1
    params.blocked_connection_timeout = timeout
    try:
        connection = pika.BlockingConnection(params)
    except (pika.exceptions.AMQPError, OSError):
        return False
    try:
        connection.channel()
        return True
    except pika.exceptions.AMQPError:
        return False
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            connection.close()


class RabbitMQServer:
    """One RabbitMQ node (+ its epmd) on free 127.0.0.1 ports, its data in ``root`` (a temp dir by default)."""

    def __init__(self, root: Path | None = None, *, die_with_parent: bool = True) -> None:
        self._own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="orderflow-rabbitmq-"))
        self.die_with_parent = die_with_parent
        self.node = f"orderflow-{uuid.uuid4().hex[:8]}@localhost"
        self.amqp_port = self.dist_port = self.epmd_port = self.http_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.http_port}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        return env | {
            "HOME": str(self.root),
            "LC_ALL": "C.UTF-8",
            "RUNNING_UNDER_SYSTEMD": "true",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbitmq.pid"),
        }

    def _configure(self) -> None:
        if not (SBIN / "rabbitmq-server").exists():
            raise RabbitMQUnavailable(
                f"no {SBIN / 'rabbitmq-server'}: run `bash tests/support/install-rabbitmq.sh` (Debian's "
                "rabbitmq-server) or set ORDERFLOW_RABBITMQ_SBIN to the directory holding rabbitmq-server"
            )
        self.amqp_port, self.dist_port, self.epmd_port, self.http_port = (free_port() for _ in range(4))
        (self.root / "rabbitmq-env.conf").write_text("")
        # quorum queues report their counts every tick (5 s by default): a backlog a test can wait on needs 1 s
        (self.root / "advanced.config").write_text("[{rabbit, [{quorum_tick_interval, 1000}]}].\n")
        (self.root / "enabled_plugins").write_text(f"[{','.join(PLUGINS)}].\n")
        (self.root / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    "loopback_users.guest = true",  # guest, on 127.0.0.1 only (the default, said out loud)
                    f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.http_port}",
                    "collect_statistics_interval = 500",
                    "log.console = false",
                    "log.file.level = info",
                    "",
                ]
            )
        )

    def start(self, timeout: float = 60) -> str:
        """Start the node and wait until an AMQP connection opens; return its URL."""
        self._configure()
        try:
            self._launch(timeout)
        except BaseException:
            self.halt()
            raise
        return self.url

    def _launch(self, timeout: float) -> None:
        began = time.monotonic()
        env = self._env()
        preexec = _die_with_parent if self.die_with_parent else None
        with open(self.root / "epmd.log", "ab") as log:
            # epmd in the foreground, as our child: the VM finds it on ERL_EPMD_PORT and does not start its own.
            self.epmd = subprocess.Popen(
                ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                start_new_session=True, preexec_fn=preexec,
            )  # fmt: skip
        until(lambda: _port_open(self.epmd_port), timeout=10, what=f"epmd on 127.0.0.1:{self.epmd_port}")
        with open(self.root / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [str(SBIN / "rabbitmq-server")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                start_new_session=True, preexec_fn=preexec,
            )  # fmt: skip
        until(self._answers, timeout=timeout, what=f"RabbitMQ on 127.0.0.1:{self.amqp_port}", interval=0.2)
        self.start_seconds = time.monotonic() - began

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RabbitMQUnavailable(f"rabbitmq-server exited ({self.process.returncode}):\n{self.log_tail()}")
        return _port_open(self.amqp_port) and answers(self.url)

    def halt(self, *, crash: bool = False) -> None:
        """Stop the node but keep its data and ports, for :meth:`resume`: SIGTERM (a clean shutdown, ~5 s), or
        SIGKILL with ``crash`` (what a node that dies looks like; quorum queues recover from their logs)."""
        _stop(self.process, signal.SIGKILL if crash else signal.SIGTERM)
        _stop(self.epmd, signal.SIGTERM)

    def resume(self, timeout: float = 60) -> None:
        """Start a halted node again on the same data and ports: a broker restart, as clients see one."""
        self._launch(timeout)

    def stop(self) -> None:
        self.halt(crash=self._own_root)  # its data is thrown away: no need to wait for a clean shutdown
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        texts = []
        for path in [self.root / "server.log", *sorted((self.root / "log").glob("*.log"))]:
            with contextlib.suppress(OSError):
                texts.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(texts)

    def __enter__(self) -> RabbitMQServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.25):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes] | None, how: signal.Signals, timeout: float = 30) -> None:
    """``how`` to the process group (the VM's helpers too), SIGKILL after ``timeout``."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, how)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)
    # whatever it left in its group (erl_child_setup, inet_gethost) goes with it
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
