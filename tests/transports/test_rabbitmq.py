"""The RabbitMQ transport against a real RabbitMQ node: the seam's promises, one test each.

Every test uses its own prefix (channels, groups), so the tests share the session's node and never each
other's queues. The restart test runs a node of its own: it stops it.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
from cloudevents.core.bindings import rabbitmq as ce_rabbitmq

from orderflow.errors import BrokerUnavailable
from orderflow.events import Event, catalog, codec, new_order_id
from orderflow.runtime.config import Settings
from orderflow.transport import Received, Record
from orderflow.transport import rabbitmq as rmq
from orderflow.transport.rabbitmq import backlog, binding, topology
from orderflow.transport.rabbitmq.subscription import RabbitMQSubscription
from orderflow_dev.rabbitmq import MANAGEMENT_ENV, RabbitMQServer
from orderflow_dev.wait import until
from tests.support import events

pytestmark = pytest.mark.rabbitmq

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _settings(url: str, prefix: str, **options: str) -> Settings:
    management = os.environ.get(MANAGEMENT_ENV, "")
    return Settings(
        service="inventory",
        transport="rabbitmq",
        transport_url=url,
        transport_options={**({"management_url": management} if management else {}), **options},
        topic_prefix=prefix,
        topic_partitions=3,
        batch_size=50,
    )


@pytest.fixture
def settings(rabbitmq_url: str, unique_prefix: str) -> Settings:
    return _settings(rabbitmq_url, unique_prefix)


@pytest.fixture
def transport(settings: Settings) -> Iterator[rmq.RabbitMQTransport]:
    t = rmq.make(settings, client_id="test")
    yield t
    t.close()


@pytest.fixture
def subscribe(transport: rmq.RabbitMQTransport) -> Iterator[Callable[..., RabbitMQSubscription]]:
    made: list[RabbitMQSubscription] = []

    def make(channels: list[str], group: str, on_assigned: Callable[[int], None] = lambda n: None) -> Any:
        s = transport.subscribe(channels, group=group, on_assigned=on_assigned)
        assert isinstance(s, RabbitMQSubscription)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _record(event: Event, prefix: str) -> Record:
    return codec.encode(event, prefix=prefix)  # already the seam's Record


def _orders(prefix: str) -> str:
    return catalog.get(catalog.ORDER_CREATED).topic(prefix)


def _drain(sub: RabbitMQSubscription, want: int, *, timeout: float = 15, settle: bool = True) -> list[Received]:
    got: list[Received] = []

    def more() -> bool:
        batch = sub.fetch(100, 0.2)
        if settle:
            sub.settle(batch)
        got.extend(batch)
        return len(got) >= want

    until(more, timeout=timeout, what=f"{want} messages")
    return got


def _publish(transport: rmq.RabbitMQTransport, records: list[Record]) -> None:
    publisher = transport.publisher("relay")
    try:
        acked, errors = publisher.publish(records)
    finally:
        publisher.close()
    assert errors == {} and acked == list(range(len(records)))


def test_round_trip_carries_every_attribute(
    transport: rmq.RabbitMQTransport, subscribe: Callable[..., RabbitMQSubscription], unique_prefix: str
) -> None:
    orders = _orders(unique_prefix)
    transport.ensure_channels([orders], partitions=3, replication=1)
    sub = subscribe([orders], f"{unique_prefix}-inventory")
    event = dataclasses.replace(events.order_created(), traceparent=TRACEPARENT)
    record = _record(event, unique_prefix)
    _publish(transport, [record])

    (got,) = _drain(sub, 1)
    assert got.channel == orders and got.key == record.key and got.value == record.value
    assert sorted(got.headers) == sorted(record.headers)  # every ce_* attribute and content-type, as sent
    assert got.deliveries == 1
    assert codec.decode(key=got.key, value=got.value, headers=got.headers) == event


def test_wire_is_the_cloudevents_rabbitmq_binding(
    transport: rmq.RabbitMQTransport, subscribe: Callable[..., RabbitMQSubscription], unique_prefix: str
) -> None:
    """Read with plain pika: ``ce-`` headers, ``content_type`` property, data as the body; the SDK reads it."""
    orders = _orders(unique_prefix)
    transport.ensure_channels([orders], partitions=3, replication=1)
    connection = pika.BlockingConnection(pika.URLParameters(transport.url))
    try:
        ch = connection.channel()
        spy = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(spy, orders)
        event = dataclasses.replace(events.order_created(), traceparent=TRACEPARENT)
        record = _record(event, unique_prefix)
        _publish(transport, [record])
        method, props, body = until(lambda: _get(ch, spy), timeout=10, what="the raw message")

        assert body == record.value and props.content_type == "application/json" and props.delivery_mode == 2
        assert method.routing_key == event.subject
        attributes = {n.removeprefix("ce_"): v.decode() for n, v in record.headers if n.startswith("ce_")}
        assert set(attributes) >= {"specversion", "id", "source", "type", "subject", "time", "dataschema"}
        assert {"partitionkey", "traceparent"} <= set(attributes)
        assert props.headers == {f"ce-{name}": value for name, value in attributes.items()}
        sdk = ce_rabbitmq.from_binary(
            ce_rabbitmq.RabbitMQMessage(headers=props.headers, content_type=props.content_type, body=body),
            codec.FastJSONFormat(),
        )
        assert sdk.get_id() == event.id and sdk.get_subject() == event.subject and sdk.get_time() == event.time
        assert codec.decode(key=method.routing_key.encode(), value=body, headers=binding.headers(props)) == event

        # structured mode, as another producer might send it, decodes to the same event
        sub = subscribe([orders], f"{unique_prefix}-inventory")
        cloud_event = ce_rabbitmq.from_binary(
            ce_rabbitmq.RabbitMQMessage(headers=props.headers, content_type=props.content_type, body=body),
            codec.FastJSONFormat(),
        )
        structured = ce_rabbitmq.to_structured(cloud_event, codec.FastJSONFormat())
        ch.basic_publish(
            orders,
            event.subject,
            structured.body,
            pika.BasicProperties(content_type=structured.content_type, headers={"x-other": "kept"}),
        )
        # ensure_channels declared the group's queues: it has the binary one from before it subscribed, then this
        binary, got = _drain(sub, 2)
        assert ("x-other", b"kept") in got.headers and ("x-other", b"kept") not in binary.headers
        assert codec.decode(key=got.key, value=got.value, headers=got.headers) == event
        assert codec.decode(key=binary.key, value=binary.value, headers=binary.headers) == event
    finally:
        connection.close()


def _get(ch: Any, queue: str) -> Any:
    method, props, body = ch.basic_get(queue, auto_ack=True)
    return (method, props, body) if method is not None else None


def test_unsettled_messages_are_redelivered_after_close(
    transport: rmq.RabbitMQTransport, subscribe: Callable[..., RabbitMQSubscription], unique_prefix: str
) -> None:
    orders, group = _orders(unique_prefix), f"{unique_prefix}-inventory"
    first = subscribe([orders], group)
    sent = [_record(events.order_created(), unique_prefix) for _ in range(5)]
    _publish(transport, sent)
    fetched = _drain(first, 5, settle=False)
    first.settle(fetched[:2])
    first.close()

    again = _drain(subscribe([orders], group), 3)
    assert {r.value for r in again} == {r.value for r in fetched[2:]}
    assert all(r.deliveries >= 2 for r in again)


def test_ensure_channels_is_idempotent_and_concurrent(settings: Settings, unique_prefix: str) -> None:
    channels = [*catalog.all_topics(unique_prefix), catalog.dlq_topic(unique_prefix, "inventory")]
    errors: list[BaseException] = []

    def declare() -> None:
        try:
            rmq.make(settings, client_id="racer").ensure_channels(channels, partitions=3, replication=1)
        except BaseException as e:
            errors.append(e)

    racers = [threading.Thread(target=declare) for _ in range(4)]
    for t in racers:
        t.start()
    for t in racers:
        t.join(60)
    declare()
    assert errors == []
    connection = pika.BlockingConnection(pika.URLParameters(settings.transport_url))
    try:
        ch = connection.channel()
        for channel in channels:
            ch.exchange_declare(channel, passive=True)
        ch.queue_declare(catalog.dlq_topic(unique_prefix, "inventory"), passive=True)
    finally:
        connection.close()


def test_every_group_gets_every_message(
    transport: rmq.RabbitMQTransport, subscribe: Callable[..., RabbitMQSubscription], unique_prefix: str
) -> None:
    orders = _orders(unique_prefix)
    inventory = subscribe([orders], f"{unique_prefix}-inventory")
    billing = subscribe([orders], f"{unique_prefix}-billing")
    sent = [_record(events.order_created(), unique_prefix) for _ in range(20)]
    _publish(transport, sent)
    for sub in (inventory, billing):
        assert sorted(r.value or b"" for r in _drain(sub, 20)) == sorted(r.value or b"" for r in sent)


def _ordered_record(prefix: str, key: str, seq: int) -> Record:
    return Record(channel=_orders(prefix), key=key.encode(), value=str(seq).encode(), headers=(("ce_id", b"x"),))


def test_two_members_share_the_queues_and_keep_each_order(
    transport: rmq.RabbitMQTransport, subscribe: Callable[..., RabbitMQSubscription], unique_prefix: str
) -> None:
    """Both members get work (the later one within a rebalance); per key, arrival order is publish order, also
    across the hand-overs and when one member leaves with messages it had not passed on."""
    orders, group = _orders(unique_prefix), f"{unique_prefix}-inventory"
    a = subscribe([orders], group)
    b = subscribe([orders], group)
    keys = [new_order_id() for _ in range(30)]
    arrivals: list[tuple[str, str, int]] = []  # member, key, seq
    next_seq = dict.fromkeys(keys, 0)
    publisher = transport.publisher("relay")

    def wave(n: int) -> None:
        batch = []
        for key in keys:
            for _ in range(n):
                batch.append(_ordered_record(unique_prefix, key, next_seq[key]))
                next_seq[key] += 1
        acked, errors = publisher.publish(batch)
        assert not errors and len(acked) == len(batch)

    def pull(member: str, sub: RabbitMQSubscription) -> None:
        batch = sub.fetch(20, 0.05)
        arrivals.extend((member, (r.key or b"").decode(), int(r.value or b"0")) for r in batch)
        sub.settle(batch)

    def both_worked() -> bool:
        wave(1)
        for _ in range(5):
            pull("a", a)
            pull("b", b)
        recent = {m for m, _, _ in arrivals[-200:]}
        return recent == {"a", "b"}

    until(both_worked, timeout=30, what="both members receiving work", interval=0.2)
    assert a.assigned() + b.assigned() == 3 and a.assigned() > 0 and b.assigned() > 0

    wave(5)
    for _ in range(3):
        pull("a", a)  # a holds some of its queues' messages unsettled in its buffer, or none yet
    a.close()
    total = sum(next_seq.values())

    def b_has_rest() -> bool:
        pull("b", b)
        return len({(k, s) for _, k, s in arrivals}) >= total

    until(b_has_rest, timeout=30, what="the rest, at b")
    publisher.close()

    for key in keys:
        seen: list[int] = []
        for _, k, seq in arrivals:
            if k == key and seq not in seen:  # a redelivery repeats what was already seen: allowed
                seen.append(seq)
        assert seen == sorted(seen) == list(range(next_seq[key])), f"order of {key}: {seen}"


def test_delivery_limit_dead_letters_into_the_dlq_channel(
    rabbitmq_url: str, unique_prefix: str, subscribe: Callable[..., RabbitMQSubscription]
) -> None:
    transport = rmq.make(_settings(rabbitmq_url, unique_prefix, delivery_limit="1"), client_id="limit")
    orders, group = _orders(unique_prefix), f"{unique_prefix}-inventory"
    dlq = catalog.dlq_topic(unique_prefix, "inventory")
    event = events.order_created()
    record = _record(event, unique_prefix)
    transport.subscribe([orders], group=group, on_assigned=lambda n: None).close()  # the queues exist
    _publish(transport, [record])
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    ch = connection.channel()

    def crash_once() -> Any:
        sub = transport.subscribe([orders], group=group, on_assigned=lambda n: None)
        try:
            sub.fetch(10, 0.5)  # and never settle: like a consumer that dies on it
        finally:
            sub.close()
        return _get(ch, dlq)

    try:
        method, props, body = until(crash_once, timeout=30, what="the dead letter", interval=0)
        assert body == record.value and method.routing_key == event.subject
        assert props.headers["x-first-death-reason"] == "delivery_limit"
        letter = binding.headers(props)
        assert codec.decode(key=method.routing_key.encode(), value=body, headers=letter) == event
    finally:
        connection.close()


def test_backlog_counts_ready_and_unacked_until_settled(
    transport: rmq.RabbitMQTransport,
    subscribe: Callable[..., RabbitMQSubscription],
    unique_prefix: str,
    settings: Settings,
) -> None:
    orders, payments, group = _orders(unique_prefix), f"{unique_prefix}.payments", f"{unique_prefix}-inventory"
    sub = subscribe([orders, payments], group)
    _publish(transport, [_record(events.order_created(), unique_prefix) for _ in range(5)])

    def reads(n: int) -> Callable[[], bool]:
        def check() -> bool:
            url, options = settings.transport_url, settings.transport_options
            got = backlog.read(url, options, group=group, channels=[payments, orders])
            return got == {orders: n, payments: 0}

        return check

    until(reads(5), timeout=15, what="backlog 5 (ready)")
    fetched = _drain(sub, 5, settle=False)
    until(reads(5), timeout=15, what="backlog 5 (unacknowledged)")
    sub.settle(fetched)
    until(reads(0), timeout=15, what="backlog 0 after settle")


def test_publish_confirms_a_thousand_and_reports_what_no_queue_takes(
    transport: rmq.RabbitMQTransport, subscribe: Callable[..., RabbitMQSubscription], unique_prefix: str
) -> None:
    orders, lonely = _orders(unique_prefix), f"{unique_prefix}.lonely"  # no service consumes it
    subscribe([orders], f"{unique_prefix}-inventory")
    transport.ensure_channels([lonely], partitions=3, replication=1)  # an exchange no queue is bound to
    publisher = transport.publisher("relay")
    try:
        records = [_ordered_record(unique_prefix, f"k{i % 50}", i) for i in range(1000)]
        began = time.monotonic()
        acked, errors = publisher.publish(records)
        elapsed = time.monotonic() - began
        assert errors == {} and acked == list(range(1000)), errors
        print(f"1000 records confirmed in {elapsed:.2f}s")

        mixed = [records[0], dataclasses.replace(records[1], channel=lonely), records[2]]
        acked, errors = publisher.publish(mixed)
        assert acked == [0, 2] and list(errors) == [1] and "unroutable" in errors[1]

        acked, errors = publisher.publish([dataclasses.replace(records[3], channel=f"{unique_prefix}.nowhere")])
        assert acked == [] and "NOT_FOUND" in errors[0]
        acked, errors = publisher.publish([records[4]])  # a new channel after the broker closed that one
        assert acked == [0] and errors == {}
    finally:
        publisher.close()


def test_broker_restart_probe_fails_then_subscription_and_publisher_resume(unique_prefix: str) -> None:
    downs: list[str] = []
    with RabbitMQServer() as server:
        settings = _settings(server.url, unique_prefix)
        transport = rmq.make(settings, client_id="restart", on_all_brokers_down=downs.append)
        transport.probe()
        orders = _orders(unique_prefix)
        sub = transport.subscribe([orders], group=f"{unique_prefix}-inventory", on_assigned=lambda n: None)
        publisher = transport.publisher("relay")
        try:
            first = _record(events.order_created(), unique_prefix)
            assert publisher.publish([first])[0] == [0]
            _drain(sub, 1)

            server.halt(crash=True)
            with pytest.raises(BrokerUnavailable):
                transport.probe()
            with pytest.raises(BrokerUnavailable):
                sub.fetch(10, 0.5)
                sub.fetch(10, 0.5)  # the first may only find the connection gone; the second cannot reconnect
            assert downs, "on_all_brokers_down was not called"

            server.resume()
            transport.probe()
            record = _record(events.order_created(), unique_prefix)

            def published() -> bool:
                try:
                    return publisher.publish([record])[0] == [0]
                except BrokerUnavailable:
                    return False

            until(published, timeout=30, what="a publish after the restart")

            values: list[bytes | None] = []

            def fetched() -> bool:
                try:
                    batch = sub.fetch(10, 0.5)
                except BrokerUnavailable:
                    return False
                sub.settle(batch)
                values.extend(r.value for r in batch)
                return record.value in values

            # the node was killed: an ack it had not written yet is lost, so the first record may come again
            until(fetched, timeout=30, what="a fetch after the restart")
            assert set(values) <= {first.value, record.value}
        finally:
            sub.close()
            publisher.close()
            print(f"private node: started in {server.start_seconds:.1f}s (last start)")


def test_topology_names() -> None:
    assert topology.queue_name("p-inventory", 2) == "p-inventory.2"
    assert topology.is_dlq("p.inventory.dlq") and not topology.is_dlq("p.orders")


def test_what_the_order_service_publishes_before_inventory_ever_started_waits_for_it(
    rabbitmq_url: str, unique_prefix: str, subscribe: Callable[..., RabbitMQSubscription]
) -> None:
    """A fanout exchange drops what no queue is bound to: the producer's set-up declares the queues of every group
    the catalog says consumes its channels, so a first deployment loses nothing to start-up order."""
    order = rmq.make(dataclasses.replace(_settings(rabbitmq_url, unique_prefix), service="order"), client_id="order")
    orders = catalog.get(catalog.ORDER_CREATED).topic(unique_prefix)
    produced = [e.topic(unique_prefix) for e in catalog.produced_by("order")]
    order.ensure_channels(produced, partitions=3, replication=1)
    created = events.order_created(unit_price=5)
    publisher = order.publisher("relay")
    acked, refused = publisher.publish([_record(created, unique_prefix)])
    publisher.close()
    assert acked == [0] and not refused

    inventory = subscribe([orders], f"{unique_prefix}-inventory")  # the first time inventory ever starts
    got: list[Received] = []
    until(lambda: got.extend(inventory.fetch(10, 0.5)) or got, timeout=30, what="the order published before")
    assert [r.key for r in got] == [created.subject.encode()]
