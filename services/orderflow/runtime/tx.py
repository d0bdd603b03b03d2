"""A unit of work: one database transaction and the events it decides to publish.

Handlers receive a ``Tx``. What they ``emit`` is validated at once and written to the outbox in the same
transaction as their state change, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from orderflow.events import Event, OrderId, codec, utcnow
from orderflow.runtime import tracing
from orderflow.transport import Record


class Tx:
    def __init__(self, conn: Connection, *, service: str, prefix: str, now: datetime | None = None) -> None:
        self.conn = conn
        self.service = service
        self.prefix = prefix
        self.now = now or utcnow()
        self.pending: list[Record] = []
        self.emitted: list[Event] = []
        self.traceparent: str | None = None

    def emit(self, event_type: str, data: Mapping[str, Any], *, subject: OrderId) -> Event:
        """Publish an event of this service once the transaction commits (raises ``SchemaViolation`` if invalid)."""
        event = Event(
            type=event_type,
            source=f"/orderflow/{self.service}",
            subject=subject,
            data=dict(data),
            # Distinct, increasing times for the events of one transaction keep a timeline in causal order.
            time=self.now + timedelta(microseconds=len(self.emitted)),
            traceparent=tracing.create(self.traceparent, service=self.service, event_type=event_type, subject=subject),
        )
        self.pending.append(codec.encode(event, prefix=self.prefix))
        self.emitted.append(event)
        return event
