"""The dead-letter channel ``<prefix>.<service>.dlq``: poison messages go here, byte for byte, with why and whence.

The original key, value and headers are kept so a fixed consumer can replay the message; ``orderflow.dlq.*``
headers add the reason code, a human-readable detail and the original topic, partition and offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from orderflow.errors import BrokerUnavailable
from orderflow.events import isoformat, utcnow
from orderflow.runtime import tracing
from orderflow.transport import Publisher, Record

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
    def __init__(self, *, publisher: Publisher, topic: str, service: str) -> None:
        self.publisher = publisher
        self.topic = topic
        self.service = service

    def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Publish ``letters`` and wait for the broker's acknowledgement; ``BrokerUnavailable`` if any is not acked."""
        if not letters:
            return
        now = isoformat(utcnow()).encode()
        records: list[Record] = []
        for letter in letters:
            headers: list[tuple[str, bytes]] = [
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
            records.append(Record(self.topic, letter.key or b"", letter.value, tuple(headers)))
        delivered, errors = self.publisher.publish(records)
        if errors or len(delivered) < len(records):
            first = next(iter(errors.values()), f"{len(records) - len(delivered)} not acknowledged")
            raise BrokerUnavailable(f"dead-letter publish to {self.topic} not acknowledged: {first}")
