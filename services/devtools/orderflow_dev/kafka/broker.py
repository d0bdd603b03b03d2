"""A private single-node KRaft broker (combined broker + controller) on 127.0.0.1, run from the cached jars.

:class:`LocalBroker` is a context manager; ``kill()`` and ``restart()`` support crash tests ("the broker goes
away and comes back"). The broker is configured for tests: replication factor 1 everywhere,
``auto.create.topics.enable=false`` (services must create their topics), ``num.partitions=3`` and no initial
rebalance delay.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Final

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from orderflow_dev.kafka.errors import BrokerStartError, KafkaToolError, ToolMissingError
from orderflow_dev.kafka.files import tail
from orderflow_dev.kafka.jars import LOG4J_CONFIG, ensure_jars, kafka_version

log = logging.getLogger(__name__)

_HEAP_OPTS: Final = ("-Xmx512m", "-Xms256m")


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


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


_LISTENER_RE = re.compile(r"^listeners=.*?PLAINTEXT://[^:,]+:(\d+).*?CONTROLLER://[^:,]+:(\d+)", re.MULTILINE)

# Brokers this process started and has not detached: stopped at interpreter exit so none is left orphaned.
_LIVE: set[LocalBroker] = set()


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
            signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("Kafka broker pid %d ignored SIGTERM for %.0fs; killing it", proc.pid, timeout)
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        signal_group(proc.pid, signal.SIGKILL)  # anything else left in its process group
        self._proc = None
        _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL the broker at once (a crash, for tests); :meth:`restart` brings it back, same data."""
        proc = self._proc
        if proc is None:
            return
        signal_group(proc.pid, signal.SIGKILL)
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
            text = tail(path, lines)
            if text:
                parts.append(f"--- {path} (last {lines} lines) ---\n{text}")
        return "\n".join(parts) or f"(no log output in {self.state_dir})"

    def __enter__(self) -> LocalBroker:
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
                f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting Kafka {kafka_version()}: {' '.join(cmd)}\n".encode()
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
                    hint = f"\nHint: Kafka {kafka_version()} needs a newer Java than `java` on PATH."
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
                    kafka_version(),
                    self.bootstrap,
                    time.monotonic() - started,
                    proc.pid,
                )
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)  # the poll interval; returns at once if the broker dies
