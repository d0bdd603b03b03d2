"""The event catalog: the one place that says which event types exist, who produces them and on which topic.

Everything that must agree between services — type names, topics, JSON Schemas, who consumes what — is derived
from the table below, so the services, the contracts, the AsyncAPI document and the operator's example cannot
drift apart. A breaking change to an event is a new type (``...v2``), never an edit of an existing schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from orderflow.events import schemas

ORDER_CREATED: Final = "dev.orderflow.order.created.v1"
STOCK_RESERVED: Final = "dev.orderflow.stock.reserved.v1"
STOCK_REJECTED: Final = "dev.orderflow.stock.rejected.v1"
STOCK_RELEASED: Final = "dev.orderflow.stock.released.v1"
PAYMENT_CHARGED: Final = "dev.orderflow.payment.charged.v1"
PAYMENT_FAILED: Final = "dev.orderflow.payment.failed.v1"
PAYMENT_REFUNDED: Final = "dev.orderflow.payment.refunded.v1"
SHIPMENT_DISPATCHED: Final = "dev.orderflow.shipment.dispatched.v1"
SHIPMENT_CANCELLED: Final = "dev.orderflow.shipment.cancelled.v1"

SERVICES: Final = ("order", "inventory", "billing", "shipping")

# The stream each producer writes to; the real topic name is "<prefix>.<stream>".
STREAM_OF_PRODUCER: Final = {
    "order": "orders",
    "inventory": "inventory",
    "billing": "payments",
    "shipping": "shipments",
}


@dataclass(frozen=True, slots=True)
class EventType:
    """One row of the design brief's event table."""

    type: str
    name: str
    producer: str
    consumers: tuple[str, ...]

    @property
    def stream(self) -> str:
        return STREAM_OF_PRODUCER[self.producer]

    def topic(self, prefix: str) -> str:
        return f"{prefix}.{self.stream}"

    @property
    def source(self) -> str:
        return f"/orderflow/{self.producer}"

    @property
    def schema_uri(self) -> str:
        return f"https://orderflow.dev/schemas/{self.type}.json"

    @property
    def schema(self) -> Mapping[str, Any]:
        return schemas.SCHEMAS[self.type]


CATALOG: Final[Mapping[str, EventType]] = {
    e.type: e
    for e in (
        EventType(ORDER_CREATED, "OrderCreated", "order", ("inventory", "billing", "shipping")),
        EventType(STOCK_RESERVED, "StockReserved", "inventory", ("shipping", "order")),
        EventType(STOCK_REJECTED, "StockRejected", "inventory", ("billing", "shipping", "order")),
        EventType(STOCK_RELEASED, "StockReleased", "inventory", ("order",)),
        EventType(PAYMENT_CHARGED, "PaymentCharged", "billing", ("shipping", "order")),
        EventType(PAYMENT_FAILED, "PaymentFailed", "billing", ("inventory", "shipping", "order")),
        EventType(PAYMENT_REFUNDED, "PaymentRefunded", "billing", ("order",)),
        EventType(SHIPMENT_DISPATCHED, "ShipmentDispatched", "shipping", ("inventory", "order")),
        EventType(SHIPMENT_CANCELLED, "ShipmentCancelled", "shipping", ("inventory", "billing", "order")),
    )
}


def get(event_type: str) -> EventType:
    """The catalog entry for ``event_type``; ``KeyError`` when the catalog has no such type."""
    return CATALOG[event_type]


def consumed_by(service: str) -> tuple[EventType, ...]:
    return tuple(e for e in CATALOG.values() if service in e.consumers)


def produced_by(service: str) -> tuple[EventType, ...]:
    return tuple(e for e in CATALOG.values() if e.producer == service)


def topics_consumed_by(service: str, prefix: str) -> tuple[str, ...]:
    return tuple(sorted({e.topic(prefix) for e in consumed_by(service)}))


def all_topics(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}.{stream}" for stream in STREAM_OF_PRODUCER.values())


def dlq_topic(prefix: str, service: str) -> str:
    return f"{prefix}.{service}.dlq"
