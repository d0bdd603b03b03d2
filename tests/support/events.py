"""Events as another service would have published them, for tests that play that service on the topics."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orderflow.events import Event, OrderId, catalog, isoformat, new_order_id, utcnow


def _event(event_type: str, order_id: OrderId, data: dict[str, Any]) -> Event:
    return Event(
        type=event_type, source=catalog.get(event_type).source, subject=order_id, data={"order_id": order_id, **data}
    )


def order_created(
    order_id: OrderId | None = None,
    *,
    customer: str = "alice",
    sku: str = "SKU-1",
    quantity: int = 1,
    unit_price: int = 1000,
    deadline_s: float = 30,
) -> Event:
    order_id = order_id or new_order_id()
    now = utcnow()
    return _event(
        catalog.ORDER_CREATED,
        order_id,
        {
            "customer_id": customer,
            "items": [{"sku": sku, "quantity": quantity, "unit_price_minor": unit_price}],
            "total": {"amount_minor": quantity * unit_price, "currency": "EUR"},
            "deadline": isoformat(now + timedelta(seconds=deadline_s)),
            "created_at": isoformat(now),
        },
    )


def stock_reserved(order_id: OrderId, *, sku: str = "SKU-1", quantity: int = 1) -> Event:
    return _event(catalog.STOCK_RESERVED, order_id, {"items": [{"sku": sku, "quantity": quantity}]})


def stock_rejected(order_id: OrderId, *, sku: str = "SKU-1", quantity: int = 1, reason: str = "out_of_stock") -> Event:
    missing = [] if reason == "order_cancelled" else [{"sku": sku, "requested": quantity, "available": 0}]
    return _event(catalog.STOCK_REJECTED, order_id, {"reason": reason, "missing": missing})


def payment_charged(order_id: OrderId, *, customer: str = "alice", amount: int = 1000) -> Event:
    return _event(
        catalog.PAYMENT_CHARGED,
        order_id,
        {"customer_id": customer, "amount": {"amount_minor": amount, "currency": "EUR"}},
    )


def payment_failed(order_id: OrderId, *, customer: str = "alice", reason: str = "insufficient_funds") -> Event:
    return _event(catalog.PAYMENT_FAILED, order_id, {"customer_id": customer, "reason": reason})


def shipment_cancelled(order_id: OrderId, *, reason: str = "deadline_exceeded") -> Event:
    return _event(catalog.SHIPMENT_CANCELLED, order_id, {"reason": reason})


def shipment_dispatched(order_id: OrderId) -> Event:
    return _event(
        catalog.SHIPMENT_DISPATCHED, order_id, {"shipment_id": "shp_test", "dispatched_at": isoformat(utcnow())}
    )
