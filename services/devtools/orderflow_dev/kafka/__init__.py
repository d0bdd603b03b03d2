"""A real, local Apache Kafka broker that OrderFlow fetches and runs by itself.

Why this exists: OrderFlow's services exchange CloudEvents over Kafka, and their tests, the demo and a
developer's own experiments need a real broker, not a fake. There is no Docker here and no Kafka tarball
download, but Maven Central is reachable, so the broker is assembled from its published jars (``pom.xml``
beside this file, copied once with ``mvn dependency:copy-dependencies`` into
``${ORDERFLOW_CACHE:-~/.cache/orderflow}/kafka/<version>/libs``) and run with the local ``java`` as a
single-node KRaft server (combined broker + controller) on 127.0.0.1.

Three ways to use it:

* :class:`LocalBroker` -- a private broker in a temp (or given) directory, as a context manager;
  ``kill()`` and ``restart()`` support crash tests ("the broker goes away and comes back").
* The daemon behind ``orderflow kafka start|stop|status`` (:func:`main`, :func:`start_daemon`,
  :func:`stop_daemon`, :func:`daemon_status`), kept in ``${ORDERFLOW_STATE:-~/.local/state/orderflow}/kafka``.
* :func:`ensure_broker` -- what tests and the demo call: ``ORDERFLOW_KAFKA_BOOTSTRAP`` if set, else the
  running daemon, else a private broker for the duration.

The broker is configured for tests: replication factor 1 everywhere, ``auto.create.topics.enable=false``
(services must create their topics), ``num.partitions=3`` and no initial rebalance delay.
"""

import argparse
import atexit
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Final, TypedDict

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

__all__ = [
    "DEFAULT_DAEMON_PORT",
    "KAFKA_VERSION",
    "BrokerStartError",
    "BrokerUnreachableError",
    "DaemonStatus",
    "KafkaToolError",
    "LocalBroker",
    "ToolMissingError",
    "broker_answers",
    "daemon_dir",
    "daemon_status",
    "ensure_broker",
    "ensure_jars",
    "main",
    "start_daemon",
    "stop_daemon",
]

log = logging.getLogger(__name__)

_HERE: Final = Path(__file__).resolve().parent
POM: Final = _HERE / "pom.xml"
LOG4J_CONFIG: Final = _HERE / "log4j2.properties"

DEFAULT_DAEMON_PORT: Final = 19092
BOOTSTRAP_ENV: Final = "ORDERFLOW_KAFKA_BOOTSTRAP"
_HEAP_OPTS: Final = ("-Xmx512m", "-Xms256m")
_MARKER: Final = ".orderflow-complete"
_MVN_TIMEOUT_S: Final = 900.0


class KafkaToolError(Exception):
    """Base class for every error of the local Kafka tooling."""


class ToolMissingError(KafkaToolError):
    """A program the broker needs (Maven, Java) is not installed or not on PATH."""


class BrokerStartError(KafkaToolError):
    """The broker process died during startup or did not answer in time; the message carries its log tail."""


class BrokerUnreachableError(KafkaToolError):
    """A broker that should be there (ORDERFLOW_KAFKA_BOOTSTRAP, the daemon) does not answer."""


def _read_kafka_version() -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(POM).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise KafkaToolError(f"{POM} has no <kafka.version> property")
    return (node.text or "").strip()


#: The Kafka version the POM pins (its single source of truth).
KAFKA_VERSION: Final = _read_kafka_version()


def _env_dir(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else default


def cache_dir() -> Path:
    """``${ORDERFLOW_CACHE:-~/.cache/orderflow}``: downloaded, rebuildable things."""
    return _env_dir("ORDERFLOW_CACHE", Path.home() / ".cache" / "orderflow")


def daemon_dir() -> Path:
    """``${ORDERFLOW_STATE:-~/.local/state/orderflow}/kafka``: the daemon's pid, bootstrap, data and logs."""
    return _env_dir("ORDERFLOW_STATE", Path.home() / ".local" / "state" / "orderflow") / "kafka"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise processes (two test runs, two CLI calls) on an advisory lock file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ensure_jars() -> Path:
    """Return the directory holding the broker's runtime jars, fetching them with Maven the first time.

    The jars go to ``<cache>/kafka/<version>/libs``; they are built in a temp directory and renamed into
    place, and a marker file records the POM they came from (a changed POM fetches again).
    """
    root = cache_dir() / "kafka" / KAFKA_VERSION
    libs = root / "libs"
    pom_digest = hashlib.sha256(POM.read_bytes()).hexdigest()

    def complete() -> bool:
        marker = libs / _MARKER
        return marker.is_file() and marker.read_text().strip() == pom_digest

    if complete():
        return libs
    with _file_lock(root / ".lock"):
        if complete():  # another process fetched them while we waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ToolMissingError(
                "Maven ('mvn') is needed to fetch the Kafka broker jars from Maven Central but is not on "
                "PATH: install Maven 3.6+ (Debian/Ubuntu: apt-get install maven) and retry."
            )
        log.info("Fetching Kafka %s jars with Maven into %s (first run only)...", KAFKA_VERSION, libs)
        tmp = Path(tempfile.mkdtemp(prefix="libs.tmp-", dir=root))
        try:
            cmd = [
                mvn,
                "-q",
                "-B",
                "-Dstyle.color=never",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
            ]
            try:
                done = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    timeout=_MVN_TIMEOUT_S,
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise KafkaToolError(
                    f"Maven did not finish fetching the Kafka jars within {_MVN_TIMEOUT_S:.0f}s"
                ) from exc
            except OSError as exc:
                raise ToolMissingError(f"could not run Maven ({mvn}): {exc}; (re)install Maven 3.6+") from exc
            if done.returncode != 0:
                output = _ANSI.sub("", (done.stdout or "") + (done.stderr or "")).strip().splitlines()
                detail = "\n".join(output[-30:])
                raise KafkaToolError(
                    f"Maven failed (exit {done.returncode}) fetching the Kafka {KAFKA_VERSION} jars "
                    f"(needs network access to Maven Central):\n  {' '.join(cmd)}\n{detail}"
                )
            if not (tmp / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
                raise KafkaToolError(f"Maven ran but {tmp} has no kafka_2.13-{KAFKA_VERSION}.jar")
            (tmp / _MARKER).write_text(pom_digest + "\n")
            if libs.exists():  # stale (older POM): move it aside, then swap
                old = Path(tempfile.mkdtemp(prefix="libs.old-", dir=root))
                libs.rename(old / "libs")
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(libs)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return libs


def _require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ToolMissingError(
            "Java ('java', version 17 or newer) is needed to run the Kafka broker but is not on PATH: "
            "install a JDK/JRE 17+ (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) and retry."
        )
    return java


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int, timeout: float = 0.25) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def broker_answers(bootstrap: str, timeout: float = 5.0) -> bool:
    """True if a Kafka broker at ``bootstrap`` answers a metadata request within ``timeout`` seconds."""
    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "log_level": 0,  # probing: connection-refused chatter on stderr helps nobody
            "reconnect.backoff.max.ms": 500,
            "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
        }
    )
    try:
        metadata = admin.list_topics(timeout=max(0.1, timeout))
    except KafkaException:
        return False
    return bool(metadata.brokers)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


_LISTENER_RE = re.compile(r"^listeners=.*?PLAINTEXT://[^:,]+:(\d+).*?CONTROLLER://[^:,]+:(\d+)", re.MULTILINE)

# Brokers this process started and has not detached: stopped at interpreter exit so none is left orphaned.
_LIVE: "set[LocalBroker]" = set()


@atexit.register
def _stop_live_brokers() -> None:
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.close()


class LocalBroker:
    """A single-node KRaft Kafka broker (combined broker + controller) on 127.0.0.1, run from the cached jars.

    ``state_dir`` holds ``server.properties``, ``data/`` (the log dirs), ``broker.log`` (the JVM's own
    output) and ``server.log`` (Log4j, WARN and above). Without a ``state_dir`` a temp directory is used and
    removed by :meth:`close` (and on leaving the ``with`` block). Ports default to free ones, chosen at the
    first start and kept for :meth:`restart`; a directory with a ``server.properties`` keeps its ports.
    """

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self._owns_dir = state_dir is None
        self.state_dir = Path(tempfile.mkdtemp(prefix="orderflow-kafka-")) if state_dir is None else Path(state_dir)
        self.properties_file = self.state_dir / "server.properties"
        self.data_dir = self.state_dir / "data"
        self.stdout_log = self.state_dir / "broker.log"
        self.server_log = self.state_dir / "server.log"
        self.startup_timeout = startup_timeout
        self._auto_ports = port is None and controller_port is None
        previous = self._previous_ports()
        self.port = port if port is not None else (previous[0] if previous else None)
        self.controller_port = controller_port if controller_port is not None else (previous[1] if previous else None)
        self._proc: subprocess.Popen[bytes] | None = None

    # -- public surface ---------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, the bootstrap servers for clients."""
        if self.port is None:
            raise KafkaToolError("the broker has no port yet: start() it first")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker JVM's pid while it runs (it also leads its own process group), else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> str:
        """Format storage if needed, launch the broker, wait until it answers; return the bootstrap."""
        if self.running:
            raise KafkaToolError(f"the broker in {self.state_dir} is already running (pid {self.pid})")
        libs = ensure_jars()
        java = _require_java()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # A free port can be taken between choosing and binding it: with ports we chose, a fresh dir retries.
        attempts = 3 if self._auto_ports and not self._formatted() else 1
        for attempt in range(1, attempts + 1):
            if self.port is None:
                self.port = _free_port()
            if self.controller_port is None:
                self.controller_port = _free_port()
            busy = [p for p in (self.port, self.controller_port) if _port_open("127.0.0.1", p)]
            if busy:  # checked first: a foreign broker on our port would answer our readiness probe
                if attempt < attempts:
                    self.port = self.controller_port = None
                    continue
                raise BrokerStartError(
                    f"port {' and '.join(map(str, busy))} on 127.0.0.1 is already in use by another "
                    f"program: choose another port (orderflow kafka start --port N) or stop that program"
                )
            self._write_properties()
            if not self._formatted():
                self._format(java, libs)
            try:
                self._launch(java, libs)
                self._wait_ready()
            except BrokerStartError as exc:
                if attempt < attempts and "Address already in use" in str(exc):
                    log.info("port clash starting Kafka (%s); retrying on new ports", exc)
                    shutil.rmtree(self.data_dir, ignore_errors=True)
                    self.port = self.controller_port = None
                    continue
                raise
            except BaseException:
                self.kill()
                raise
            return self.bootstrap
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the broker (a clean, controlled shutdown); SIGKILL it if still there after ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("Kafka broker pid %d ignored SIGTERM for %.0fs; killing it", proc.pid, timeout)
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        _signal_group(proc.pid, signal.SIGKILL)  # anything else left in its process group
        self._proc = None
        _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL the broker at once (a crash, for tests); :meth:`restart` brings it back, same data."""
        proc = self._proc
        if proc is None:
            return
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        self._proc = None
        _LIVE.discard(self)

    def restart(self) -> str:
        """Stop the broker if it runs, then start it again on the same data dir and ports."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the broker and, if its directory is a temp one this object made, remove it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def detach(self) -> int:
        """Let the running broker outlive this object and this process (the daemon); return its pid."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise KafkaToolError("no running broker to detach")
        pid = proc.pid
        _LIVE.discard(self)
        self._proc = None
        with warnings.catch_warnings():  # Popen warns when dropped with a live child: the point here
            warnings.simplefilter("ignore", ResourceWarning)
            del proc
        return pid

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the JVM output and of the Log4j log, for error messages."""
        parts = []
        for path in (self.stdout_log, self.server_log):
            text = _tail(path, lines)
            if text:
                parts.append(f"--- {path} (last {lines} lines) ---\n{text}")
        return "\n".join(parts) or f"(no log output in {self.state_dir})"

    def __enter__(self) -> "LocalBroker":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalBroker(state_dir={str(self.state_dir)!r}, port={self.port}, pid={self.pid})"

    # -- internals --------------------------------------------------------------------------------

    def _previous_ports(self) -> tuple[int, int] | None:
        try:
            match = _LISTENER_RE.search(self.properties_file.read_text())
        except FileNotFoundError:
            return None
        return (int(match.group(1)), int(match.group(2))) if match else None

    def _formatted(self) -> bool:
        return (self.data_dir / "meta.properties").is_file()

    def _write_properties(self) -> None:
        p, c = self.port, self.controller_port
        text = f"""\
# Written by orderflow_dev.kafka (OrderFlow): a single-node KRaft broker for development and tests.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}
advertised.listeners=PLAINTEXT://127.0.0.1:{p}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:{c}
log.dirs={self.data_dir}
# One node: every internal topic has replication factor 1.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Few internal partitions: groups and transactions get going fast on a small machine.
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=8
share.coordinator.state.topic.num.partitions=8
# Consumer groups start at once, and tests may use short session timeouts.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
# Services create their own topics; topics created without a count get 3 partitions.
auto.create.topics.enable=false
num.partitions=3
# After a crash (kill()), the restarted broker cannot register until its old session expires (default 9 s).
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
# Sized for a 2-core box and the 512 MiB heap (the cleaner's dedupe buffer defaults to 128 MiB).
num.network.threads=2
num.io.threads=4
log.cleaner.dedupe.buffer.size=33554432
"""
        self.properties_file.write_text(text)

    def _java_cmd(self, java: str, libs: Path, *args: str, jvm_opts: tuple[str, ...] = ()) -> list[str]:
        return [
            java,
            *jvm_opts,
            "-cp",
            f"{libs}/*",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.state_dir}",
            f"-Dorderflow.kafka.log.level={os.environ.get('ORDERFLOW_KAFKA_LOG_LEVEL') or 'WARN'}",
            "-Djava.awt.headless=true",
            *args,
        ]

    def _format(self, java: str, libs: Path) -> None:
        def run(*args: str) -> str:
            cmd = self._java_cmd(java, libs, "kafka.tools.StorageTool", *args)
            try:
                done = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                    stdin=subprocess.DEVNULL,
                    cwd=self.state_dir,
                )
            except subprocess.TimeoutExpired as exc:
                raise BrokerStartError(f"kafka.tools.StorageTool {args[0]} did not finish in 120s") from exc
            except OSError as exc:
                raise BrokerStartError(f"could not run {java}: {exc}") from exc
            if done.returncode != 0:
                raise BrokerStartError(
                    f"kafka.tools.StorageTool {' '.join(args)} failed (exit {done.returncode}):\n"
                    f"{done.stdout}{done.stderr}".rstrip()
                )
            return done.stdout

        shutil.rmtree(self.data_dir, ignore_errors=True)  # a half-formatted dir from an interrupted start
        cluster_id = run("random-uuid").strip().splitlines()[-1].strip()
        run("format", "--standalone", "-t", cluster_id, "-c", str(self.properties_file))

    def _launch(self, java: str, libs: Path) -> None:
        cmd = self._java_cmd(java, libs, "kafka.Kafka", str(self.properties_file), jvm_opts=_HEAP_OPTS)
        with self.stdout_log.open("ab") as out:
            out.write(
                f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting Kafka {KAFKA_VERSION}: {' '.join(cmd)}\n".encode()
            )
            out.flush()
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.state_dir,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise BrokerStartError(f"could not run {java}: {exc}") from exc
        _LIVE.add(self)

    def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None
        started = time.monotonic()
        deadline = started + self.startup_timeout
        while True:
            code = proc.poll()
            if code is not None:
                self._proc = None
                _LIVE.discard(self)
                tail = self.log_tail()
                hint = ""
                if "UnsupportedClassVersionError" in tail:
                    hint = f"\nHint: Kafka {KAFKA_VERSION} needs a newer Java than `java` on PATH."
                elif "Address already in use" in tail:
                    hint = f"\nHint: port {self.port} or {self.controller_port} is in use by another program."
                raise BrokerStartError(
                    f"the Kafka broker exited with code {code} during startup (state dir {self.state_dir}):\n"
                    f"{tail}{hint}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tail = self.log_tail()
                self.kill()
                raise BrokerStartError(
                    f"the Kafka broker did not answer on {self.bootstrap} within {self.startup_timeout:.0f}s "
                    f"(state dir {self.state_dir}):\n{tail}"
                )
            if _port_open("127.0.0.1", int(self.port or 0)) and broker_answers(
                self.bootstrap, timeout=min(2.0, remaining)
            ):
                log.info(
                    "Kafka %s up on %s in %.1fs (pid %d)",
                    KAFKA_VERSION,
                    self.bootstrap,
                    time.monotonic() - started,
                    proc.pid,
                )
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)  # the poll interval; returns at once if the broker dies


# ----------------------------------------------------------------------------------------------------
# The daemon behind `orderflow kafka start|stop|status`


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
        kafka_version=KAFKA_VERSION,
    )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def start_daemon(port: int = DEFAULT_DAEMON_PORT, *, startup_timeout: float = 120.0) -> str:
    """Start the background broker (idempotent: an answering one is reused); return its bootstrap servers."""
    state = daemon_dir()
    state.mkdir(parents=True, exist_ok=True)
    with _file_lock(state / ".lock"):
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
        _write_atomic(bootstrap_file, bootstrap + "\n")
        _write_atomic(pid_file, f"{pid}\n")
        return bootstrap


def stop_daemon(*, timeout: float = 30.0) -> int | None:
    """Stop the background broker (SIGTERM, SIGKILL after ``timeout``); its pid, or None if none ran."""
    state = daemon_dir()
    pid_file, bootstrap_file = _daemon_files(state)
    with _file_lock(state / ".lock"):
        status = daemon_status(probe_timeout=0.5)
        stopped: int | None = None
        if status is not None:
            pid = status["pid"]
            _signal_group(pid, signal.SIGTERM)
            if not _wait_pid_exit(pid, timeout):
                log.warning("Kafka daemon pid %d ignored SIGTERM for %.0fs; killing it", pid, timeout)
                _signal_group(pid, signal.SIGKILL)
                if not _wait_pid_exit(pid, 30):
                    raise KafkaToolError(f"the Kafka daemon (pid {pid}) survived SIGKILL")
            stopped = pid
        for path in (pid_file, bootstrap_file):
            path.unlink(missing_ok=True)
        return stopped


# ----------------------------------------------------------------------------------------------------
# For tests and the demo


@contextlib.contextmanager
def ensure_broker(*, connect_timeout: float = 10.0, startup_timeout: float = 120.0) -> Iterator[str]:
    """Yield the bootstrap servers of a running broker.

    ``ORDERFLOW_KAFKA_BOOTSTRAP`` if set (it must answer: no silent fallback), else the
    ``orderflow kafka start`` daemon if it answers, else a private :class:`LocalBroker` started now and
    stopped on exit.
    """
    configured = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if configured:
        if not broker_answers(configured, timeout=connect_timeout):
            raise BrokerUnreachableError(
                f"{BOOTSTRAP_ENV}={configured} does not answer as a Kafka broker "
                f"(waited {connect_timeout:.0f}s): "
                f"start it (`orderflow kafka start` runs one locally) or unset {BOOTSTRAP_ENV} to have a "
                f"private broker started"
            )
        yield configured
        return
    status = daemon_status()
    if status is not None and status["answering"]:
        yield status["bootstrap"]
        return
    with LocalBroker(startup_timeout=startup_timeout) as broker:
        yield broker.bootstrap


# ----------------------------------------------------------------------------------------------------
# CLI: `orderflow kafka start|stop|status` and `python -m orderflow_dev.kafka ...`


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderflow kafka",
        description=f"Run a local Apache Kafka {KAFKA_VERSION} broker (single-node KRaft on 127.0.0.1) in "
        f"the background. State and logs: {daemon_dir()}.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the broker (no-op if it already runs) and print its bootstrap")
    start.add_argument(
        "--port",
        type=int,
        default=DEFAULT_DAEMON_PORT,
        help=f"client port on 127.0.0.1 (default {DEFAULT_DAEMON_PORT})",
    )
    start.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for it to answer")
    sub.add_parser("stop", help="stop the broker")
    sub.add_parser("status", help="exit 0 if the broker runs, 3 if not")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of `orderflow kafka`; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "start":
            bootstrap = start_daemon(args.port, startup_timeout=args.timeout)
            status = daemon_status()
            print(bootstrap)
            if status is not None:
                print(
                    f"Kafka {KAFKA_VERSION} broker running (pid {status['pid']}); "
                    f"state and logs in {status['state_dir']}"
                )
            if not bootstrap.endswith(f":{args.port}"):
                print(f"(it was already running on {bootstrap}; --port {args.port} ignored)")
            print(f"To use it from services and tests: export {BOOTSTRAP_ENV}={bootstrap}")
            return 0
        if args.command == "stop":
            pid = stop_daemon()
            print(f"stopped the Kafka broker (pid {pid})" if pid is not None else "the Kafka broker was not running")
            return 0
        status = daemon_status()
        if status is None:
            print("the Kafka broker is not running")
            return 3
        print(
            f"running: pid {status['pid']}, bootstrap {status['bootstrap']}, "
            f"{'answering' if status['answering'] else 'NOT answering'}; Kafka {status['kafka_version']}, "
            f"state dir {status['state_dir']}"
        )
        return 0
    except (KafkaToolError, OSError) as exc:
        print(f"orderflow kafka: error: {exc}", file=sys.stderr)
        return 1
