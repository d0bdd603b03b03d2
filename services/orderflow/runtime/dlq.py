"""The dead-letter topic ``<prefix>.<service>.dlq``: poison messages go here, byte for byte, with why and whence.

The original key, value and headers are kept so a fixed consumer can replay the message; ``orderflow.dlq.*``
headers add the reason code, a human-readable detail and the original topic, partition and offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Producer

from orderflow.errors import BrokerUnavailable
from orderflow.events import isoformat, utcnow
from orderflow.runtime import tracing

HEADER_REASON: Final = "orderflow.dlq.reason"
HEADER_DETAIL: Final = "orderflow.dlq.detail"
HEADER_TOPIC: Final = "orderflow.dlq.topic"
HEADER_PARTITION: Final = "orderflow.dlq.partition"
HEADER_OFFSET: Final = "orderflow.dlq.offset"
HEADER_SERVICE: Final = "orderflow.dlq.service"
HEADER_TIME: Final = "orderflow.dlq.time"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


class DeadLetterPublisher:
    def __init__(self, *, producer: Producer, topic: str, service: str) -> None:
        self.producer = producer
        self.topic = topic
        self.service = service

    def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Publish ``letters`` and wait for Kafka's acknowledgement; ``BrokerUnavailable`` if any is not acked."""
        if not letters:
            return
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                failures.append(err)

        now = isoformat(utcnow()).encode()
        for letter in letters:
            headers: list[tuple[str, str | bytes | None]] = [
                (k, v) for k, v in letter.headers if v is not None and not k.startswith("orderflow.dlq.")
            ]
            headers += [
                (HEADER_REASON, letter.reason.encode()),
                (HEADER_DETAIL, letter.detail.encode("utf-8", "replace")[:2000]),
                (HEADER_TOPIC, letter.topic.encode()),
                (HEADER_PARTITION, str(letter.partition).encode()),
                (HEADER_OFFSET, str(letter.offset).encode()),
                (HEADER_SERVICE, self.service.encode()),
                (HEADER_TIME, now),
            ]
            tracing.dead_lettered(
                service=self.service,
                dlq_topic=self.topic,
                reason=letter.reason,
                detail=letter.detail,
                topic=letter.topic,
                partition=letter.partition,
                offset=letter.offset,
                headers=letter.headers,
            )
            try:
                self.producer.produce(
                    self.topic, value=letter.value, key=letter.key, headers=headers, on_delivery=on_delivery
                )
            except (KafkaException, BufferError) as e:
                raise BrokerUnavailable(f"cannot produce to {self.topic}: {e}") from e
        remaining = self.producer.flush(30)
        if failures or remaining:
            raise BrokerUnavailable(
                f"dead-letter publish to {self.topic} not acknowledged: {failures[:1] or remaining}"
            )
