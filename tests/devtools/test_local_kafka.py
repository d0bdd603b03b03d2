"""The local Kafka broker (orderflow_dev.kafka) against the real thing: start, produce/consume, stop,
crash and restart, ensure_broker's choices and the `orderflow kafka` daemon CLI."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import orderflow_dev.kafka as kafka_tool
import orderflow_dev.kafka.ensure as kafka_ensure
from orderflow_dev.kafka import (
    BrokerStartError,
    BrokerUnreachableError,
    LocalBroker,
    ToolMissingError,
    ensure_broker,
    ensure_jars,
)

pytestmark = pytest.mark.kafka

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _create_topic(bootstrap: str, topic: str, partitions: int | None = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic) if partitions is None else NewTopic(topic, num_partitions=partitions)
    admin.create_topics([new])[topic].result(timeout=TIMEOUT_S)
    # CreateTopics returns once the controller has committed the topic; the broker's metadata cache catches
    # up a moment later, so a client asking right away may still hear UNKNOWN_TOPIC_OR_PART.
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        metadata = admin.list_topics(topic, timeout=TIMEOUT_S).topics[topic]
        if metadata.error is None and metadata.partitions:
            return
        assert time.monotonic() < deadline, f"topic {topic} not visible in metadata: {metadata.error}"
        time.sleep(0.05)  # poll interval


def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    errors: list[KafkaError] = []
    producer.produce(
        topic,
        value=value,
        key=b"k",
        on_delivery=lambda err, _msg: errors.append(err) if err is not None else None,
    )
    assert producer.flush(TIMEOUT_S) == 0, "message not delivered in time"
    assert errors == []


def _consume_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    """Read partition 0 of ``topic`` from the start until ``expected`` messages arrived (or the deadline)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + TIMEOUT_S
        while len(values) < expected and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            values.append(msg.value())
    finally:
        consumer.close()
    return values


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as b:
        yield b


def test_local_broker_round_trip_and_clean_stop(broker: LocalBroker, unique_prefix: str) -> None:
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    pid = broker.pid
    assert pid is not None and os.getpgid(pid) == pid  # its own process group

    topic = f"{unique_prefix}-orders"
    _create_topic(broker.bootstrap, topic)
    _produce(broker.bootstrap, topic, b"hello")
    assert _consume_all(broker.bootstrap, topic, 1) == [b"hello"]

    # Broker defaults meant for services: 3 partitions when unspecified, no auto-created topics.
    defaults_topic = f"{unique_prefix}-defaults"
    _create_topic(broker.bootstrap, defaults_topic, partitions=None)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert len(admin.list_topics(defaults_topic, timeout=TIMEOUT_S).topics[defaults_topic].partitions) == 3
    missing = f"{unique_prefix}-never-created"
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 2000})
    failures: list[KafkaError] = []
    producer.produce(missing, b"x", on_delivery=lambda err, _m: failures.append(err))
    producer.flush(TIMEOUT_S)
    del producer  # before stop(): a live client would log connection errors
    assert failures and failures[0] is not None
    assert missing not in admin.list_topics(timeout=TIMEOUT_S).topics

    broker.stop()
    assert broker.pid is None and not broker.running
    assert _gone(pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # nothing left in its process group either
    assert broker.state_dir.is_dir()  # data survives stop(); close() removes the temp dir
    broker.stop()  # idempotent


def test_kill_and_restart_keeps_data(broker: LocalBroker, unique_prefix: str) -> None:
    topic = f"{unique_prefix}-durable"
    bootstrap = broker.bootstrap
    _create_topic(bootstrap, topic)
    _produce(bootstrap, topic, b"before-crash")

    old_pid = broker.pid
    assert old_pid is not None
    broker.kill()
    assert _gone(old_pid)
    assert not kafka_tool.broker_answers(bootstrap, timeout=1.0)

    assert broker.restart() == bootstrap  # same ports
    assert broker.pid not in (None, old_pid)
    _produce(bootstrap, topic, b"after-restart")
    assert _consume_all(bootstrap, topic, 2) == [b"before-crash", b"after-restart"]


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = LocalBroker(tmp_path / "kafka", port=port)
        with pytest.raises(BrokerStartError, match=rf"port {port}\b.*already in use.*--port"):
            broker.start()
        assert broker.pid is None


def test_ensure_broker_uses_env_bootstrap(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, unique_prefix: str
) -> None:
    monkeypatch.setenv("ORDERFLOW_KAFKA_BOOTSTRAP", kafka_bootstrap)

    def no_private_broker(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("ensure_broker started a broker although ORDERFLOW_KAFKA_BOOTSTRAP is set")

    monkeypatch.setattr(kafka_ensure, "LocalBroker", no_private_broker)  # where ensure_broker finds it
    with ensure_broker() as bootstrap:
        assert bootstrap == kafka_bootstrap
        topic = f"{unique_prefix}-env"
        _create_topic(bootstrap, topic)
        _produce(bootstrap, topic, b"via-env")
        assert _consume_all(bootstrap, topic, 1) == [b"via-env"]


def test_ensure_broker_rejects_unreachable_env_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("ORDERFLOW_KAFKA_BOOTSTRAP", dead)
    started = time.monotonic()
    with pytest.raises(BrokerUnreachableError) as info, ensure_broker(connect_timeout=2.0):
        pytest.fail("ensure_broker yielded an unreachable broker")
    assert time.monotonic() - started < 20
    message = str(info.value)
    assert "ORDERFLOW_KAFKA_BOOTSTRAP" in message and dead in message and "orderflow kafka start" in message


def test_ensure_jars_is_cached() -> None:
    libs = ensure_jars()
    assert (libs / f"kafka_2.13-{kafka_tool.kafka_version()}.jar").is_file()
    assert any(p.name.startswith("log4j-slf4j-impl-") for p in libs.iterdir())
    assert ensure_jars() == libs


def test_ensure_jars_names_maven_when_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn here
    with pytest.raises(ToolMissingError, match=r"(?s)Maven.*apt-get install maven"):
        ensure_jars()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orderflow_dev.kafka", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_daemon_cli_start_status_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k != "ORDERFLOW_KAFKA_BOOTSTRAP"}
    env["ORDERFLOW_STATE"] = str(state)
    monkeypatch.setenv("ORDERFLOW_STATE", str(state))
    monkeypatch.delenv("ORDERFLOW_KAFKA_BOOTSTRAP", raising=False)
    port = _free_port()
    bootstrap = f"127.0.0.1:{port}"

    assert _cli(env, "status").returncode == 3
    try:
        started = _cli(env, "start", "--port", str(port))
        assert started.returncode == 0, started.stderr
        lines = started.stdout.splitlines()
        assert lines[0] == bootstrap
        assert f"export ORDERFLOW_KAFKA_BOOTSTRAP={bootstrap}" in started.stdout
        status = kafka_tool.daemon_status()
        assert status is not None and status["answering"] and status["bootstrap"] == bootstrap
        pid = status["pid"]
        assert (state / "kafka" / "data" / "meta.properties").is_file()

        again = _cli(env, "start", "--port", str(port))  # idempotent: same broker
        assert again.returncode == 0 and again.stdout.splitlines()[0] == bootstrap
        assert kafka_tool.daemon_status() is not None
        assert kafka_tool.daemon_status()["pid"] == pid  # type: ignore[index]

        running = _cli(env, "status")
        assert running.returncode == 0 and bootstrap in running.stdout

        with ensure_broker() as reused:  # the daemon is reused, not a new broker
            assert reused == bootstrap

        stopped = _cli(env, "stop")
        assert stopped.returncode == 0 and str(pid) in stopped.stdout
        assert _gone(pid) or Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        assert _cli(env, "status").returncode == 3
        assert _cli(env, "stop").returncode == 0  # stopping twice is fine
    finally:
        leftover = kafka_tool.daemon_status()
        if leftover is not None:
            os.killpg(leftover["pid"], signal.SIGKILL)
