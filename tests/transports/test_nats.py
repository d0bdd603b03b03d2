"""The NATS JetStream transport against the real server (Debian's nats-server -js): what the seam promises.

Each test has its own channels and groups (``unique_prefix``); the server is the session's (``nats_url``), except
where a test stops and restarts one of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent
from nats.aio.client import Client

from orderflow.errors import BrokerUnavailable
from orderflow.events import Event, catalog, codec, new_order_id
from orderflow.runtime.config import Settings
from orderflow.transport import Received, Record, Subscription
from orderflow.transport import nats as nats_transport
from orderflow.transport.nats import backlog, binding, naming
from orderflow.transport.nats.transport import NatsTransport
from orderflow_dev.nats import NatsServer
from orderflow_dev.stack import free_port
from orderflow_dev.wait import until
from tests.support import events

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

MakeTransport = Callable[..., NatsTransport]


@pytest.fixture
def make_transport(nats_url: str, unique_prefix: str) -> Iterator[MakeTransport]:
    """``make_transport(url=..., down=callback, options=...)``: a transport on this test's prefix, closed at the end."""
    made: list[NatsTransport] = []

    def make(
        url: str = nats_url, down: Callable[[str], None] | None = None, options: dict[str, str] | None = None
    ) -> NatsTransport:
        settings = Settings(
            service="order",
            transport="nats",
            transport_url=url,
            transport_options=options or {},
            topic_prefix=unique_prefix,
        )
        transport = nats_transport.make(settings, client_id=f"test-{len(made)}", on_all_brokers_down=down)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


def _record(event: Event, prefix: str) -> Record:
    return codec.encode(event, prefix=prefix)  # already the seam's Record


def _raw(channel: str, key: str, seq: int) -> Record:
    """A record that is not an event: the transport carries bytes; ``seq`` says where it stood."""
    headers = (("ce_id", uuid.uuid4().hex.encode()), ("ce_partitionkey", key.encode()), ("seq", str(seq).encode()))
    return Record(channel=channel, key=key.encode(), value=f"{key}:{seq}".encode(), headers=headers)


def _seq(message: Received) -> int:
    return int(dict(message.headers)["seq"])


def _fetch(sub: Subscription, count: int, *, timeout: float = 20.0, settle: bool = True) -> list[Received]:
    """Fetch until ``count`` messages came (settling them unless told not to), or fail after ``timeout``."""
    got: list[Received] = []

    def more() -> bool:
        batch = sub.fetch(100, 0.2)
        got.extend(batch)
        if settle and batch:
            sub.settle(batch)
        return len(got) >= count

    until(more, timeout=timeout, what=f"{count} messages (got {len(got)})", interval=0)
    return got


def _ignore(_: int) -> None:
    pass


# -- publish, fetch, settle -----------------------------------------------------------------------------------


@pytest.mark.nats
def test_round_trip_carries_every_attribute(make_transport: MakeTransport, unique_prefix: str) -> None:
    transport = make_transport()
    event = dataclasses.replace(events.order_created(), traceparent=TRACEPARENT)
    record = _record(event, unique_prefix)
    transport.ensure_channels([record.channel], partitions=3, replication=1)
    assigned: list[int] = []
    sub = transport.subscribe([record.channel], group=f"{unique_prefix}-order", on_assigned=assigned.append)

    acked, errors = transport.publisher("relay").publish([record])

    assert (acked, errors) == ([0], {})
    [message] = _fetch(sub, 1, settle=False)
    assert message.channel == record.channel
    assert message.key == record.key
    assert message.value == record.value
    assert message.headers == list(record.headers)  # every ce_ attribute and content-type, byte for byte
    assert {name for name, _ in message.headers} >= {
        "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject", "ce_time", "ce_dataschema",
        "ce_partitionkey", "ce_traceparent", "content-type",
    }  # fmt: skip
    assert message.deliveries == 1
    assert message.partition == naming.partition(record.key, 3)
    assert codec.decode(key=message.key, value=message.value, headers=message.headers) == event
    assert sub.joined.is_set() and sub.assigned() == 1 and assigned == [1]
    sub.settle([message])
    sub.close()
    sub.close()  # idempotent
    again = transport.subscribe([record.channel], group=f"{unique_prefix}-order", on_assigned=_ignore)
    assert again.fetch(10, 0.5) == []  # settled: never again to this group


@pytest.mark.nats
def test_wire_is_the_nats_binding_in_binary_mode(
    make_transport: MakeTransport, nats_url: str, unique_prefix: str
) -> None:
    """A plain nats-py subscriber sees every attribute as a ``ce-`` header, and the message decodes back."""
    transport = make_transport()
    event = dataclasses.replace(events.payment_charged(events.new_order_id()), traceparent=TRACEPARENT)
    record = _record(event, unique_prefix)
    transport.ensure_channels([record.channel], partitions=3, replication=1)
    publisher = transport.publisher("relay")

    async def capture() -> tuple[dict[str, str], bytes, str]:
        nc = Client()
        await nc.connect(servers=[nats_url])
        try:
            sub = await nc.subscribe(f"{record.channel}.>")
            await nc.flush()
            acked, _ = await asyncio.to_thread(publisher.publish, [record])
            assert acked == [0]
            msg = await sub.next_msg(timeout=10)
            return dict(msg.headers or {}), msg.data, msg.subject
        finally:
            await nc.close()

    wire, payload, subject = asyncio.run(capture())

    assert subject == naming.subject(record.channel, record.key, 3)
    assert payload == record.value
    for name, value in record.headers:
        wire_name = "ce-datacontenttype" if name == "content-type" else "ce-" + name.removeprefix("ce_")
        assert binding.percent_decode(wire[wire_name]) == value, wire_name
    assert wire["ce-datacontenttype"] == "application/json"
    assert wire["ce-traceparent"] == TRACEPARENT
    assert wire["Nats-Msg-Id"] == event.id  # JetStream de-duplication by event id
    assert not any(name.startswith("ce_") for name in wire)
    key, headers = binding.from_wire(wire)
    assert codec.decode(key=key, value=payload, headers=headers) == event


@pytest.mark.nats
def test_structured_mode_messages_decode(make_transport: MakeTransport, nats_url: str, unique_prefix: str) -> None:
    """Structured mode (1.0.3 with ``Content-Type``, and 1.0.2 without headers) arrives as the codec reads it."""
    transport = make_transport()
    channel = f"{unique_prefix}.orders"
    transport.ensure_channels([channel], partitions=3, replication=1)
    sub = transport.subscribe([channel], group=f"{unique_prefix}-order", on_assigned=_ignore)
    sent = [events.order_created(), events.order_created()]

    async def publish() -> None:
        nc = Client()
        await nc.connect(servers=[nats_url])
        try:
            js = nc.jetstream()
            for i, event in enumerate(sent):
                attributes = {
                    "specversion": "1.0",
                    "id": event.id,
                    "source": event.source,
                    "type": event.type,
                    "subject": event.subject,
                    "time": event.time,
                    "datacontenttype": "application/json",
                }
                body = ce_kafka.to_structured(CloudEvent(attributes, dict(event.data)), codec._FORMAT).value
                headers = {"Content-Type": "application/cloudevents+json"} if i == 0 else None
                await js.publish(f"{channel}.p.0", body, headers=headers)
        finally:
            await nc.close()

    asyncio.run(publish())
    got = _fetch(sub, 2)
    assert [codec.decode(key=m.key, value=m.value, headers=m.headers) for m in got] == sent


@pytest.mark.nats
def test_dead_letter_headers_round_trip_byte_for_byte(make_transport: MakeTransport, unique_prefix: str) -> None:
    transport = make_transport()
    channel = f"{unique_prefix}.order.dlq"
    headers = (
        ("ce_id", b'id with space, "quotes" and 100%'),
        ("ce_source", "/caf\u00e9".encode()),
        ("orderflow.dlq.reason", b"undecodable"),
        ("orderflow.dlq.detail", "line one\nline two: \u20ac 100%".encode()),
        ("orderflow.dlq.raw", b"\x00\xff\xfe binary"),
        ("orderflow.dlq.padded", b"  padded  "),
        ("X-Plain", b"100% as it is"),
    )
    record = Record(channel=channel, key=b"a key \xe2\x82\xac", value=b"\xff not json", headers=headers)
    transport.ensure_channels([channel], partitions=3, replication=1)
    sub = transport.subscribe([channel], group=f"{unique_prefix}-ops", on_assigned=_ignore)

    assert transport.publisher("dlq").publish([record]) == ([0], {})

    [message] = _fetch(sub, 1)
    assert (message.key, message.value, message.headers) == (record.key, record.value, list(record.headers))


def test_binding_percent_encoding_is_the_specs() -> None:
    """Binding 1.0.3 §3.1.3.2's own example, and quoted values from older senders."""
    assert binding.percent_encode("Euro \u20ac \U0001f600".encode()) == "Euro%20%E2%82%AC%20%F0%9F%98%80"
    assert binding.percent_decode("Euro%20%e2%82%ac%20%F0%9F%98%80") == "Euro \u20ac \U0001f600".encode()
    assert binding.percent_decode('"a \\"quoted\\" value"') == b'a "quoted" value'
    wire = binding.to_wire(key=b"k", headers=[("ce_partitionkey", b"k"), ("ce_id", b"1")])
    assert wire == {"ce-partitionkey": "k", "ce-id": "1", "Nats-Msg-Id": "1"}
    with pytest.raises(ValueError, match="cannot be carried"):
        binding.to_wire(key=b"k", headers=[("bad name", b"v")])


# -- at-least-once ------------------------------------------------------------------------------------------------


@pytest.mark.nats
def test_unsettled_message_is_redelivered_after_close(make_transport: MakeTransport, unique_prefix: str) -> None:
    transport = make_transport()
    channel, group = f"{unique_prefix}.orders", f"{unique_prefix}-order"
    transport.ensure_channels([channel], partitions=3, replication=1)
    first = transport.subscribe([channel], group=group, on_assigned=_ignore)
    transport.publisher("relay").publish([_raw(channel, "o1", 1)])
    [fetched] = _fetch(first, 1, settle=False)
    assert fetched.deliveries == 1

    first.close()  # without settling: nak'd, so it comes back at once rather than after ack_wait
    second = transport.subscribe([channel], group=group, on_assigned=_ignore)
    [again] = _fetch(second, 1, timeout=10)

    assert (again.offset, again.value, again.deliveries) == (fetched.offset, fetched.value, 2)


CRASHING_MEMBER = """
import sys
from orderflow.runtime.config import Settings
from orderflow.transport import nats
url, channel, group = sys.argv[1:]
settings = Settings(service="order", transport="nats", transport_url=url, transport_options={"ack_wait": "1"})
sub = nats.make(settings, client_id="doomed").subscribe([channel], group=group, on_assigned=lambda n: None)
while not (got := sub.fetch(10, 0.5)):
    pass
print(got[0].offset, flush=True)
sys.stdin.read()  # holds it, unsettled, until SIGKILLed
"""


@pytest.mark.nats
def test_messages_of_a_killed_member_come_back_after_ack_wait(
    make_transport: MakeTransport, nats_url: str, unique_prefix: str
) -> None:
    transport = make_transport(options={"ack_wait": "1"})
    channel, group = f"{unique_prefix}.orders", f"{unique_prefix}-order"
    transport.ensure_channels([channel], partitions=3, replication=1)
    survivor = transport.subscribe([channel], group=group, on_assigned=_ignore)
    until(survivor.joined.is_set, timeout=10, what="joined")
    doomed = subprocess.Popen(
        [sys.executable, "-c", CRASHING_MEMBER, nats_url, channel, group],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # Only the doomed member asks (the survivor does not fetch yet), so it is the one that gets the message.
        transport.publisher("relay").publish([_raw(channel, "o1", 1)])
        assert doomed.stdout is not None
        offset = int(doomed.stdout.readline())
    finally:
        doomed.kill()
        doomed.wait(10)
        if doomed.stdin is not None:
            doomed.stdin.close()
        if doomed.stdout is not None:
            doomed.stdout.close()

    [again] = _fetch(survivor, 1, timeout=15)
    assert (again.offset, again.deliveries) == (offset, 2)


@pytest.mark.nats
def test_a_message_being_worked_on_is_not_redelivered(make_transport: MakeTransport, unique_prefix: str) -> None:
    """Held unsettled for several ack_waits, a fetched message stays with its member (in-progress heartbeats)."""
    holder, other = make_transport(options={"ack_wait": "1"}), make_transport(options={"ack_wait": "1"})
    channel, group = f"{unique_prefix}.orders", f"{unique_prefix}-order"
    holder.ensure_channels([channel], partitions=3, replication=1)
    held = holder.subscribe([channel], group=group, on_assigned=_ignore)
    holder.publisher("relay").publish([_raw(channel, "o1", 1)])
    [message] = _fetch(held, 1, settle=False)
    waiting = other.subscribe([channel], group=group, on_assigned=_ignore)

    deadline = time.monotonic() + 3.5  # three and a half ack_waits, asking all the while
    while time.monotonic() < deadline:
        assert waiting.fetch(10, 0.5) == []

    held.settle([message])
    assert waiting.fetch(10, 1.5) == []  # settled: gone for the group


# -- channels, availability ---------------------------------------------------------------------------------------


@pytest.mark.nats
def test_ensure_channels_is_idempotent_with_two_callers(make_transport: MakeTransport, unique_prefix: str) -> None:
    channels = [f"{unique_prefix}.{name}" for name in ("orders", "inventory", "payments", "shipments")]
    callers = [make_transport(), make_transport()]
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def ensure(transport: NatsTransport) -> None:
        start.wait()
        try:
            transport.ensure_channels(channels, partitions=3, replication=1)
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=ensure, args=(t,)) for t in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert failures == []
    callers[0].ensure_channels(channels, partitions=3, replication=1)  # and once more, when all exist
    records = [_raw(channel, "o1", 1) for channel in channels]
    assert callers[1].publisher("relay").publish(records) == ([0, 1, 2, 3], {})


@pytest.mark.nats
def test_broker_down_then_restarted(make_transport: MakeTransport, unique_prefix: str, tmp_path: Path) -> None:
    """probe raises while the server is down; the subscription and publisher go on after it restarts."""
    with NatsServer(store_dir=tmp_path / "nats") as server:
        down = threading.Event()
        transport = make_transport(url=server.url, down=lambda reason: down.set())
        channel = f"{unique_prefix}.orders"
        transport.ensure_channels([channel], partitions=3, replication=1)
        sub = transport.subscribe([channel], group=f"{unique_prefix}-order", on_assigned=_ignore)
        publisher = transport.publisher("relay")
        assert publisher.publish([_raw(channel, "o1", 1)]) == ([0], {})
        assert [_seq(m) for m in _fetch(sub, 1)] == [1]

        server.stop()
        until(down.is_set, timeout=10, what="on_all_brokers_down")
        with pytest.raises(BrokerUnavailable):
            transport.probe()
        with pytest.raises(BrokerUnavailable):
            transport.ensure_channels([channel], partitions=3, replication=1)
        with pytest.raises(BrokerUnavailable):
            publisher.publish([_raw(channel, "o1", 2)])
        assert sub.fetch(10, 0.2) == []  # no error: it waits for the server

        server.start()  # same port, same store: the stream and the group's consumer are still there

        def published() -> bool:
            try:
                return publisher.publish([_raw(channel, "o1", 3)], timeout=2) == ([0], {})
            except BrokerUnavailable:
                return False

        until(published, timeout=20, what="a publish after the restart")
        transport.probe()
        assert [_seq(m) for m in _fetch(sub, 1, timeout=20)] == [3]


# -- groups and ordering ------------------------------------------------------------------------------------------


@pytest.mark.nats
def test_a_group_shares_the_work_and_every_group_gets_everything(
    make_transport: MakeTransport, unique_prefix: str
) -> None:
    channel = f"{unique_prefix}.orders"
    replicas, other = [make_transport(), make_transport()], make_transport()
    replicas[0].ensure_channels([channel], partitions=3, replication=1)
    group = f"{unique_prefix}-inventory"
    subs = [t.subscribe([channel], group=group, on_assigned=_ignore) for t in replicas]
    billing = other.subscribe([channel], group=f"{unique_prefix}-billing", on_assigned=_ignore)
    for sub in [*subs, billing]:
        until(sub.joined.is_set, timeout=10, what="joined")
    records = [_raw(channel, f"o{i % 50}", i) for i in range(400)]
    assert replicas[0].publisher("relay").publish(records)[0] == list(range(400))

    shares: list[list[int]] = [[], []]
    lock = threading.Lock()

    def work(i: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(shares[0]) + len(shares[1]) >= len(records):
                    return
            batch = subs[i].fetch(10, 0.2)
            subs[i].settle(batch)
            with lock:
                shares[i].extend(_seq(m) for m in batch)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    everything = [_seq(m) for m in _fetch(billing, len(records), timeout=30)]
    for thread in threads:
        thread.join(40)

    assert sorted(shares[0] + shares[1]) == list(range(400))  # each message once to the group
    assert shares[0] and shares[1], f"one replica got nothing: {len(shares[0])} / {len(shares[1])}"
    assert sorted(everything) == list(range(400))  # and every message to the other group


@pytest.mark.nats
def test_one_replica_receives_each_order_in_order(make_transport: MakeTransport, unique_prefix: str) -> None:
    transport = make_transport()
    channel = f"{unique_prefix}.orders"
    transport.ensure_channels([channel], partitions=3, replication=1)
    sub = transport.subscribe([channel], group=f"{unique_prefix}-order", on_assigned=_ignore)
    publisher = transport.publisher("relay")
    for start in range(0, 600, 200):  # three relay batches, each with several events of every order
        batch = [_raw(channel, f"o{i % 20}", i) for i in range(start, start + 200)]
        assert publisher.publish(batch) == (list(range(200)), {})

    got = _fetch(sub, 600)

    per_key: dict[bytes | None, list[int]] = {}
    for message in got:
        per_key.setdefault(message.key, []).append(_seq(message))
    assert len(per_key) == 20
    assert all(seqs == sorted(seqs) for seqs in per_key.values())
    assert all(m.deliveries == 1 for m in got)


# -- publish results, backlog -------------------------------------------------------------------------------------


@pytest.mark.nats
def test_publish_of_1000_records_acks_every_index(make_transport: MakeTransport, unique_prefix: str) -> None:
    transport = make_transport()
    channel = f"{unique_prefix}.orders"
    transport.ensure_channels([channel], partitions=3, replication=1)
    records = [_raw(channel, f"o{i % 300}", i) for i in range(1000)]

    started = time.monotonic()
    acked, errors = transport.publisher("relay").publish(records)
    elapsed = time.monotonic() - started

    assert (acked, errors) == (list(range(1000)), {})
    print(f"\n1000 records published and acknowledged in {elapsed * 1000:.0f} ms")
    # A group that has not started yet has all of them ahead of it.
    assert backlog.read(transport.url, {}, group=f"{unique_prefix}-new", channels=[channel]) == {channel: 1000}


@pytest.mark.nats
def test_publish_errors_are_per_index_and_keep_key_order(make_transport: MakeTransport, unique_prefix: str) -> None:
    transport = make_transport()
    good, missing = f"{unique_prefix}.orders", f"{unique_prefix}.nowhere"
    transport.ensure_channels([good], partitions=3, replication=1)
    bad_header = Record(channel=good, key=b"o3", value=b"x", headers=(("bad name", b"v"),))
    records = [_raw(good, "o1", 0), _raw(missing, "o2", 1), _raw(good, "o2", 2), bad_header, _raw(good, "o1", 4)]

    acked, errors = transport.publisher("relay").publish(records, timeout=5)

    assert acked == [0, 4]
    assert set(errors) == {1, 2, 3}
    assert "no stream" in errors[1]
    assert "earlier record of its key" in errors[2]  # o2's second record waits for its first
    assert "cannot be carried" in errors[3]


@pytest.mark.nats
def test_backlog_counts_what_the_group_has_not_settled(make_transport: MakeTransport, unique_prefix: str) -> None:
    transport = make_transport()
    channels = [f"{unique_prefix}.orders", f"{unique_prefix}.payments"]
    group = f"{unique_prefix}-billing"
    transport.ensure_channels(channels, partitions=3, replication=1)
    transport.publisher("relay").publish([_raw(channels[0], f"o{i}", i) for i in range(5)])

    def read() -> dict[str, int]:
        return backlog.read(transport.url, {}, group=group, channels=[*channels, f"{unique_prefix}.none"])

    assert read() == {channels[0]: 5, channels[1]: 0, f"{unique_prefix}.none": 0}
    sub = transport.subscribe(channels, group=group, on_assigned=_ignore)
    got = _fetch(sub, 5, settle=False)
    assert read()[channels[0]] == 5  # fetched is not settled
    sub.settle(got[:3])
    until(lambda: read()[channels[0]] == 2, timeout=10, what="backlog 2 after 3 settled")
    sub.settle(got[3:])
    until(lambda: read()[channels[0]] == 0, timeout=10, what="backlog 0 after all settled")


def test_backlog_raises_broker_unavailable() -> None:
    with pytest.raises(BrokerUnavailable):
        backlog.read(f"nats://127.0.0.1:{free_port()}", {}, group="g", channels=["c"], timeout=3)


# -- the dev command ------------------------------------------------------------------------------------------------


@pytest.mark.nats
def test_orderflow_nats_start_status_stop(tmp_path: Path) -> None:
    env = {**os.environ, "ORDERFLOW_STATE": str(tmp_path)}

    def orderflow(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "orderflow.cli", "nats", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    assert orderflow("status").returncode == 3
    port = free_port()
    started = orderflow("start", "--port", str(port))
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines()[0] == f"nats://127.0.0.1:{port}"
    try:
        status = orderflow("status")
        assert status.returncode == 0 and "answering" in status.stdout
    finally:
        assert orderflow("stop").returncode == 0
    assert orderflow("status").returncode == 3


@pytest.mark.nats
def test_a_services_channel_and_its_dead_letter_channel_below_it_are_two_streams(
    make_transport: MakeTransport, unique_prefix: str
) -> None:
    """``<prefix>.inventory`` and ``<prefix>.inventory.dlq``: with subjects ``<channel>.>`` JetStream refused the
    second stream (subjects overlap, err_code 10065) and inventory never became ready."""
    transport = make_transport()
    inventory = catalog.get(catalog.STOCK_RESERVED).topic(unique_prefix)
    dead = catalog.dlq_topic(unique_prefix, "inventory")
    assert dead.startswith(inventory + ".")
    transport.ensure_channels([inventory, dead], partitions=3, replication=1)
    publisher = transport.publisher("test")
    reserved = codec.encode(events.stock_reserved(new_order_id()), prefix=unique_prefix)
    letter = Record(dead, reserved.key, reserved.value, reserved.headers)
    acked, refused = publisher.publish([reserved, letter])
    assert acked == [0, 1] and not refused, refused
