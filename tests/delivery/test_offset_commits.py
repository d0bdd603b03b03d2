"""Settled offsets reach the broker in few commits, and none is lost: not in a quiet spell, not in a rebalance.

The Kafka subscription commits what was settled at most every ``COMMIT_INTERVAL_S`` (one commit per batch cost the
broker more than the events when orders trickle in). Each test drives a real consumer group through the transport
seam, as the runtime does, and reads the group's committed offsets from the broker. The interval is raised for the
tests, so that which commit carried an offset is not a matter of how fast this machine runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition

from orderflow.events import codec
from orderflow.runtime import config
from orderflow.transport import Received, Subscription
from orderflow.transport import kafka as kafka_transport
from orderflow_dev.wait import until
from tests.support import events

pytestmark = pytest.mark.kafka

PARTITIONS = 2


class CountingConsumer:
    """The subscription's consumer, with its commits counted."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self.commits = 0

    def commit(self, *args: object, **kwargs: object) -> object:
        self.commits += 1
        return self._consumer.commit(*args, **kwargs)  # type: ignore[call-overload]

    def __getattr__(self, name: str) -> object:
        return getattr(self._consumer, name)


@pytest.fixture
def link(kafka_bootstrap: str, unique_prefix: str) -> Iterator[kafka_transport.KafkaTransport]:
    settings = config.load(
        "inventory", {"ORDERFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap, "ORDERFLOW_TOPIC_PREFIX": unique_prefix}
    )
    made = kafka_transport.KafkaTransport(settings, client_id=f"{unique_prefix}-test")
    made.ensure_channels([_topic(unique_prefix)], partitions=PARTITIONS, replication=1)
    yield made
    made.close()


def _topic(prefix: str) -> str:
    return f"{prefix}.orders"


def _publish(link: kafka_transport.KafkaTransport, prefix: str, count: int) -> None:
    publisher = link.publisher("relay")
    try:
        acked, refused = publisher.publish([codec.encode(events.order_created(), prefix=prefix) for _ in range(count)])
    finally:
        publisher.close()
    assert (len(acked), refused) == (count, {})


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition, as the broker has it (-1001: none)."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        positions = reader.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        reader.close()
    return {tp.partition: tp.offset for tp in positions}


def _join(link: kafka_transport.KafkaTransport, topic: str, group: str) -> Subscription:
    return link.subscribe([topic], group=group, on_assigned=lambda _count: None)


def _fetch(*members: Subscription) -> list[Received]:
    """One short fetch from each member: all must poll for their group to rebalance."""
    return [m for member in members for m in member.fetch(10, 0.1)]


def _take(subscription: Subscription, count: int) -> list[Received]:
    """Fetch ``count`` messages, settling each alone: one batch per message, as when orders trickle in."""
    taken: list[Received] = []

    def more() -> bool:
        for message in subscription.fetch(1, 0.2):
            subscription.settle([message])
            taken.append(message)
        return len(taken) >= count

    until(more, timeout=30, what=f"{count} messages fetched", interval=0)
    assert len(taken) == count
    return taken


def _next_offsets(messages: list[Received]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for m in messages:
        ends[m.partition] = max(ends.get(m.partition, 0), m.offset + 1)
    return ends


def test_batches_settled_one_by_one_are_committed_together_and_the_last_ones_in_a_quiet_spell(
    link: kafka_transport.KafkaTransport, kafka_bootstrap: str, unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka_transport, "COMMIT_INTERVAL_S", 3.0)
    group, topic = f"{unique_prefix}-quiet", _topic(unique_prefix)
    _publish(link, unique_prefix, 20)
    subscription = _join(link, topic, group)
    assert isinstance(subscription, kafka_transport.KafkaSubscription)
    counting = CountingConsumer(subscription.consumer)
    subscription.consumer = counting  # type: ignore[assignment]
    try:
        taken = _take(subscription, 20)
        # Nothing more arrives; fetching on (as the consumer loop does) is what sends the last settled offsets.
        expected = _next_offsets(taken)
        until(
            lambda: subscription.fetch(1, 0.1) == [] and _committed(kafka_bootstrap, group, topic) == expected,
            timeout=30,
            what="every settled offset committed while the consumer only waits",
            interval=0,
        )
        assert 1 < counting.commits < len(taken), f"{counting.commits} commits for {len(taken)} batches"
    finally:
        subscription.close()


def test_a_rebalance_hands_the_partitions_over_with_what_was_settled_so_nothing_is_delivered_twice(
    link: kafka_transport.KafkaTransport, unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the first settle commits by the clock; the rest can reach the broker only through the handover.
    monkeypatch.setattr(kafka_transport, "COMMIT_INTERVAL_S", 600.0)
    group, topic = f"{unique_prefix}-handover", _topic(unique_prefix)
    _publish(link, unique_prefix, 12)
    first = _join(link, topic, group)
    second: Subscription | None = None
    late: list[Received] = []
    try:
        settled = _take(first, 12)
        assert {m.partition for m in settled} == set(range(PARTITIONS)), "the orders should span both partitions"
        second = _join(link, topic, group)
        joined = second

        def rebalanced() -> bool:
            late.extend(_fetch(first, joined))
            return first.assigned() == joined.assigned() == 1

        until(rebalanced, timeout=60, what="the group to split the partitions between two members", interval=0)
        _publish(link, unique_prefix, 6)  # after the handover: the only messages either member may see now
        fresh: list[Received] = []

        def drained() -> bool:
            fresh.extend(_fetch(first, joined))
            return len(late) + len(fresh) >= 6

        until(drained, timeout=30, what="the 6 new messages fetched", interval=0)
        again = [(m.partition, m.offset) for m in late + fresh if m.offset < _next_offsets(settled)[m.partition]]
        assert again == [], f"settled messages delivered again after the rebalance: {again}"
        assert len(late) + len(fresh) == 6
    finally:
        first.close()
        if second is not None:
            second.close()
