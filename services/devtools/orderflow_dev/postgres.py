"""A private, real PostgreSQL server on loopback (Debian's ``postgresql`` binaries), for tests, benchmarks and
``orderflow demo --postgres``.

Exists so the services' PostgreSQL path — the one Kubernetes runs, and the only one several replicas of a service
can share — runs against the real thing, without a Docker engine or a server the machine may not have. The
server lives in a temporary directory on a free loopback port and dies with the process that started it.
``create_database(name)`` returns a ``postgresql://`` URL for a new, empty database.

Binaries: ``$ORDERFLOW_PG_BIN`` if set, else the newest ``/usr/lib/postgresql/<v>/bin``, else ``pg_config
--bindir``; ``tests/support/install-postgres.sh`` installs them when missing. ``initdb`` refuses to run as root,
so as root the server runs as the unprivileged ``postgres`` user (or ``nobody``).
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import psycopg

from orderflow_dev.stack import free_port
from orderflow_dev.wait import until

SUPERUSER = "orderflow"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine, or the server would not start."""


def _version(bin_postgres: str) -> tuple[int, ...]:
    """The numbers of ``<v>`` in ``/usr/lib/postgresql/<v>/bin/postgres`` (``16``, or ``9.6`` before PostgreSQL 10),
    to pick the newest; ``()`` for a directory not named by a version, which sorts first."""
    return tuple(int(n) for n in re.findall(r"\d+", Path(bin_postgres).parent.parent.name))


def find_bin_dir() -> Path:
    """Where ``initdb``, ``postgres`` and ``pg_ctl`` are."""
    explicit = os.environ.get("ORDERFLOW_PG_BIN")
    if explicit:
        return Path(explicit)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version)
    if candidates:
        return Path(candidates[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
        bindir = Path(found.stdout.strip())
        if (bindir / "postgres").exists():
            return bindir
    raise PostgresUnavailable(
        "no PostgreSQL server binaries found: run `bash tests/support/install-postgres.sh` (Debian's postgresql) "
        "or set ORDERFLOW_PG_BIN to the directory holding initdb and postgres"
    )


def _unprivileged_user() -> pwd.struct_passwd | None:
    """As root, the account to run the server as (initdb refuses root); ``None`` when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and neither a `postgres` nor a `nobody` user exists to run initdb")


class _ServerUser(TypedDict, total=False):
    """The ``subprocess`` keyword arguments that run a child as the server's user and tie it to this process."""

    user: int
    group: int
    extra_groups: list[int]
    preexec_fn: Callable[[], None]


def _die_with_parent() -> None:
    # Runs in the child after the uid switch (which would clear it): a killed test run leaves no server behind.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class PostgresServer:
    """One ``postgres`` process on 127.0.0.1:<free port>, superuser ``orderflow``, trust authentication."""

    def __init__(self, *, durable: bool = False, max_connections: int = 400) -> None:
        self.bin_dir = find_bin_dir()
        self.durable = durable
        self.max_connections = max_connections
        self.port = 0
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._user = _unprivileged_user()
        self._settings: dict[str, str] = {}

    @property
    def admin_url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _as_server_user(self) -> _ServerUser:
        if self._user is None:
            return {"preexec_fn": _die_with_parent}
        return {
            "user": self._user.pw_uid,
            "group": self._user.pw_gid,
            "extra_groups": [],
            "preexec_fn": _die_with_parent,
        }

    def start(self, timeout: float = 60) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orderflow-postgres-"))
        data, sockets = self.root / "data", self.root / "run"
        sockets.mkdir()
        if self._user is not None:
            for path in (self.root, sockets):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        env = {**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"}
        self._initdb(data, env)
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(sockets),
            "max_connections": str(self.max_connections),
            "shared_buffers": "64MB",
            "logging_collector": "off",
        }
        if not self.durable:
            # A test server: a crash of the machine loses it anyway. Services still commit for real.
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        self._settings = settings
        for attempt in range(3):  # a free port can be taken between probing and binding
            self.port = free_port()
            try:
                self._launch(timeout)
                return
            except PostgresUnavailable:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _launch(self, timeout: float) -> None:
        assert self.root is not None
        args = [str(self.bin_dir / "postgres"), "-D", str(self.root / "data"), "-p", str(self.port)]
        for key, value in self._settings.items():
            args += ["-c", f"{key}={value}"]
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"},
            cwd=self.root,
            **self._as_server_user(),
        )
        log.close()
        until(self._accepts, timeout=timeout, what=f"PostgreSQL on 127.0.0.1:{self.port}", interval=0.1)

    def halt(self) -> None:
        """Stop the server ("fast" shutdown: sessions are cut) but keep its data and port, for :meth:`resume`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)

    def resume(self, timeout: float = 60) -> None:
        """Start a halted server again on the same data and port: a database restart, as clients see one."""
        self._launch(timeout)

    def _initdb(self, data: Path, env: dict[str, str]) -> None:
        assert self.root is not None
        init = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
             "--no-sync", "--no-instructions"],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.root,
            **self._as_server_user(),
        )
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")

    def _accepts(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise PostgresUnavailable(f"postgres exited ({self.process.returncode}):\n{self.log_tail()}")
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        if self.root is None:
            return ""
        try:
            return "\n".join((self.root / "postgres.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` (lower case, ``[a-z0-9_]``); return its ``postgresql://`` URL."""
        name = name.lower()
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a plain PostgreSQL database name ([a-z_][a-z0-9_]*, at most 63)")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: roll back sessions, stop at once
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
