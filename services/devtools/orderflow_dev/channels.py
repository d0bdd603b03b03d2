"""Playing a producer, or reading a channel, on whichever broker a stack runs on, through the transport seam.

``orderflow_dev.topics`` does this for Kafka with the Kafka client; this module does it for any transport with the
product's own transport packages, so the flow suite can publish a duplicate or a poison message and read the
dead-letter channel on Kafka, NATS and RabbitMQ alike. (Each transport's binding test reads its wire with the
broker's own client; here the point is the flow, not the wire.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from orderflow import transport as transports
from orderflow.events import Event, codec
from orderflow.runtime.config import Settings
from orderflow.transport import Received, Record
from orderflow_dev.stack import Stack


def connect(stack: Stack, *, client_id: str = "orderflow-test") -> transports.Transport:
    """A transport client on ``stack``'s broker and prefix."""
    kafka = stack.transport == "kafka"
    settings = Settings(
        service="test",
        kafka_bootstrap=stack.transport_url if kafka else "",
        transport=stack.transport,
        transport_url="" if kafka else stack.transport_url,
        topic_prefix=stack.prefix,
    )
    return transports.connect(settings, client_id=client_id)


def publish(stack: Stack, records: Sequence[Record]) -> None:
    """Publish ``records`` in order and wait until the broker has acknowledged every one."""
    transport = connect(stack)
    try:
        publisher = transport.publisher("test")
        acked, refused = publisher.publish(records)
        publisher.close()
        assert not refused and len(acked) == len(records), f"not acknowledged: {refused or len(records) - len(acked)}"
    finally:
        transport.close()


def publish_events(stack: Stack, events: Sequence[Event]) -> None:
    publish(stack, [codec.encode(e, prefix=stack.prefix) for e in events])


class Reader:
    """A consumer group of its own on one channel, joined at once (so that on RabbitMQ its queues exist before
    what it is to read is published); ``wait`` reads until enough has arrived."""

    def __init__(self, stack: Stack, channel: str) -> None:
        self.transport = connect(stack, client_id=f"reader-{uuid.uuid4().hex[:8]}")
        self.transport.ensure_channels([channel], partitions=3, replication=1)
        self.subscription = self.transport.subscribe(
            [channel], group=f"reader-{uuid.uuid4().hex}", on_assigned=lambda _n: None
        )
        self.read: list[Received] = []

    def wait(self, at_least: int, *, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.read) < at_least:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"read {len(self.read)} message(s) in {timeout}s, expected {at_least}")
            batch = self.subscription.fetch(100, min(remaining, 1.0))
            self.subscription.settle(batch)
            self.read += batch
        return self.read

    def close(self) -> None:
        self.subscription.close()
        self.transport.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
