"""The in-process shape of an OrderFlow event, independent of any transport or CloudEvents SDK.

Handlers and tests speak in these values; only ``codec`` knows how they look on Kafka. Keeping the SDK out of the
handlers is what lets the transport be swapped (NATS JetStream, RabbitMQ) behind the same events.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NewType

OrderId = NewType("OrderId", str)
EventId = NewType("EventId", str)

# The one definition of an order id's form (the event schemas and the HTTP endpoints use it).
ORDER_ID_PATTERN: Final = re.compile(r"^ord_[0-9a-f]{32}$")


def new_order_id() -> OrderId:
    return OrderId(f"ord_{uuid.uuid4().hex}")


def new_event_id() -> EventId:
    return EventId(str(uuid.uuid4()))


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, the form every timestamp in event data takes."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def child_traceparent(parent: str | None) -> str:
    """A W3C ``traceparent`` for a new span: same trace as ``parent`` when it is valid, else a new trace."""
    if parent:
        parts = parent.split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16 and parts[1] != "0" * 32:
            return f"00-{parts[1]}-{secrets.token_hex(8)}-{parts[3]}"
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


@dataclass(frozen=True, slots=True)
class Event:
    """A CloudEvent as the services see it: attributes plus JSON ``data``."""

    type: str
    source: str
    subject: OrderId
    data: Mapping[str, Any]
    id: EventId = field(default_factory=new_event_id)
    time: datetime = field(default_factory=utcnow)
    traceparent: str | None = None

    @property
    def order_id(self) -> OrderId:
        return self.subject


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a consumed event came from, for dead-lettering and logs."""

    topic: str
    partition: int
    offset: int
