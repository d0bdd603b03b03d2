"""Reading, writing and watching topics directly: to play a producer the services never met, to read what they
said, and to know when a consumer group has applied everything (tests, benchmarks)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from orderflow.events import Event, codec
from orderflow.transport import Record
from orderflow.transport.kafka import received
from orderflow_dev.wait import until

Headers: TypeAlias = list[tuple[str, str | bytes | None]]
"""Headers as ``Producer.produce`` takes them."""
RawRecord: TypeAlias = tuple[str, bytes | None, bytes | None, Headers]
"""``(topic, key, value, headers)``: a record the services' codec did not make (a copy, or poison)."""


@dataclass(frozen=True)
class Read:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    def event(self) -> Event:
        return codec.decode(key=self.key, value=self.value, headers=list(self.headers.items()))

    @property
    def type(self) -> str | None:
        raw = self.headers.get("ce_type")
        return raw.decode() if raw else None


def publish(bootstrap: str, records: Iterable[Record | RawRecord]) -> None:
    """Produce records (``Record``, or raw ``(topic, key, value, headers)``) in order and wait for the acks."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    errors: list[object] = []
    for record in records:
        key: bytes | None
        value: bytes | None
        headers: Headers
        if isinstance(record, Record):
            topic, key, value, headers = record.topic, record.key, record.value, list(record.headers)
        else:
            topic, key, value, headers = record
        producer.produce(
            topic,
            value=value,
            key=key,
            headers=headers,
            on_delivery=lambda err, _m: errors.append(err) if err else None,
        )
        producer.poll(0)
    assert producer.flush(30) == 0, "messages not delivered"
    assert not errors, errors


def publish_events(bootstrap: str, prefix: str, events: Sequence[Event]) -> None:
    publish(bootstrap, [codec.encode(e, prefix=prefix) for e in events])


def read_all(bootstrap: str, topic: str, *, timeout: float = 30, at_least: int = 0) -> list[Read]:
    """Everything on ``topic`` from the beginning up to its current end (waiting until ``at_least`` are there)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
        reads: list[Read] = []

        def caught_up() -> bool:
            ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in partitions}
            if sum(ends.values()) < at_least:
                return False
            reads.clear()
            consumer.assign([TopicPartition(topic, p, 0) for p in ends])
            remaining = {p: end for p, end in ends.items() if end > 0}
            while remaining:
                for m in consumer.consume(500, timeout=1.0):
                    if m.error():
                        continue
                    at = received(m)
                    reads.append(
                        Read(
                            at.channel,
                            at.partition,
                            at.offset,
                            at.key,
                            at.value,
                            {k: v for k, v in at.headers if v is not None},
                        )
                    )
                    if at.offset + 1 >= remaining.get(at.partition, 0):
                        remaining.pop(at.partition, None)
            return True

        until(caught_up, timeout=timeout, what=f"{at_least} message(s) on {topic}", interval=0.1)
        return sorted(reads, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def events_of(reads: Iterable[Read], event_type: str | None = None) -> list[Event]:
    return [r.event() for r in reads if event_type is None or r.type == event_type]


def wait_caught_up(bootstrap: str, group: str, topics: Iterable[str], *, timeout: float = 30) -> None:
    """Wait until ``group`` has committed every message currently on ``topics`` (so it has applied them)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    watcher = Consumer({"bootstrap.servers": bootstrap, "group.id": f"watcher-{uuid.uuid4().hex}"})
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            for p in watcher.list_topics(topic, timeout=10).topics[topic].partitions:
                ends[(topic, p)] = watcher.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]

        def caught_up() -> bool:
            result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
            committed = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []}
            return all(committed.get(k, -1) >= end for k, end in ends.items() if end > 0)

        until(caught_up, timeout=timeout, what=f"{group} to consume everything on {sorted(set(topics))}", interval=0.05)
    finally:
        watcher.close()
