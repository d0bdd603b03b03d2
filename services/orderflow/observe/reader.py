"""Reading topics without joining a consumer group: partition counts, offsets, committed positions, and ranges.

The observing commands must not disturb what they observe: they assign partitions by hand (no group membership,
no rebalance of the services' groups, no offsets committed), read a bounded offset range and stop. Kafka's
errors become ``BrokerUnavailable`` here, in one place.
"""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, cast

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from orderflow.errors import BrokerUnavailable
from orderflow.runtime.config import KafkaConfig

TP = tuple[str, int]


def headers_of(m: Message) -> list[tuple[str, bytes]]:
    """A consumed message's headers with a value (librdkafka hands them back as (name, bytes-or-None) pairs)."""
    pairs = cast(list[tuple[str, bytes | None]], m.headers() or [])
    return [(k, v) for k, v in pairs if v is not None]
BATCH: Final = 5000
POLL_S: Final = 0.05


class Reader:
    """One consumer (never subscribed, never committing) and one admin client on the cluster of ``config``."""

    def __init__(self, config: KafkaConfig, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        base = {k: v for k, v in config.items() if k != "partitioner"}
        self.admin = AdminClient(dict(base))
        self.consumer = Consumer(
            {
                **base,
                # A group id librdkafka requires; nothing joins or commits under it.
                "group.id": f"orderflow-observe-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 10,
            }
        )

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def partitions(self, topics: Iterable[str]) -> dict[str, int]:
        """Partition counts of the topics that exist (a missing topic is simply absent)."""
        try:
            metadata = self.consumer.list_topics(timeout=self.timeout)
        except KafkaException as e:
            raise BrokerUnavailable(f"cannot read the cluster's metadata: {e}") from e
        found = {}
        for topic in topics:
            t = metadata.topics.get(topic)
            if t is not None and t.error is None and t.partitions:
                found[topic] = len(t.partitions)
        return found

    def watermarks(self, tps: Iterable[TP]) -> dict[TP, tuple[int, int]]:
        """(first offset, end offset) of each partition."""
        out = {}
        for topic, partition in tps:
            try:
                out[(topic, partition)] = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=self.timeout
                )
            except KafkaException as e:
                raise BrokerUnavailable(f"cannot read the offsets of {topic}[{partition}]: {e}") from e
        return out

    def offsets_at(self, tps: Iterable[TP], timestamp_ms: int) -> dict[TP, int]:
        """The first offset of each partition whose timestamp is at or after ``timestamp_ms`` (-1: none)."""
        asked = [TopicPartition(t, p, timestamp_ms) for t, p in tps]
        if not asked:
            return {}
        try:
            answered = self.consumer.offsets_for_times(asked, timeout=self.timeout)
        except KafkaException as e:
            raise BrokerUnavailable(f"cannot look offsets up by time: {e}") from e
        return {(tp.topic, tp.partition): tp.offset for tp in answered if tp.topic is not None}

    def committed(self, groups: Iterable[str], tps: Iterable[TP]) -> dict[tuple[str, str, int], int]:
        """Each group's committed offset on each partition it has committed (absent: never committed)."""
        wanted = [TopicPartition(t, p) for t, p in tps]
        if not wanted:
            return {}
        futures: dict[str, concurrent.futures.Future[Any]] = {}
        for group in groups:
            request = [ConsumerGroupTopicPartitions(group, wanted)]
            futures[group] = self.admin.list_consumer_group_offsets(request, request_timeout=self.timeout)[group]
        out: dict[tuple[str, str, int], int] = {}
        for group, future in futures.items():
            try:
                result = future.result(timeout=self.timeout + 2)
            except (KafkaException, concurrent.futures.TimeoutError) as e:
                raise BrokerUnavailable(f"cannot read the committed offsets of group {group}: {e}") from e
            for tp in result.topic_partitions or ():
                if tp.error is None and tp.offset >= 0 and tp.topic is not None:
                    out[(group, tp.topic, tp.partition)] = tp.offset
        return out

    def read(self, ranges: Mapping[TP, tuple[int, int]]) -> Iterator[Message]:
        """Every message of each partition from ``start`` up to (not including) ``end``."""
        todo = {tp: (start, end) for tp, (start, end) in ranges.items() if end > start >= 0}
        if not todo:
            return
        self.consumer.assign([TopicPartition(t, p, start) for (t, p), (start, _end) in todo.items()])
        try:
            last_progress = time.monotonic()
            while todo:
                # consume(n, timeout) waits for n messages or the timeout: a short timeout, so that a range
                # smaller than a batch costs no wait; the deadline only guards against a broker gone silent.
                messages = self.consumer.consume(num_messages=BATCH, timeout=POLL_S)
                if not messages:
                    if time.monotonic() - last_progress > self.timeout:
                        raise BrokerUnavailable(f"no messages within {self.timeout:g}s while reading {sorted(todo)}")
                    continue
                last_progress = time.monotonic()
                for m in messages:
                    tp = (m.topic() or "", m.partition() or 0)
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            todo.pop(tp, None)
                            continue
                        raise BrokerUnavailable(f"reading {tp[0]}[{tp[1]}]: {err.str()}")
                    bounds = todo.get(tp)
                    if bounds is None:
                        continue
                    offset = m.offset() or 0
                    if offset >= bounds[1]:
                        todo.pop(tp, None)
                        continue
                    yield m
                    if offset >= bounds[1] - 1:
                        todo.pop(tp, None)
        finally:
            self.consumer.unassign()
