"""JSON Schemas (draft 2020-12) for the ``data`` of every event type, built from shared fragments.

Written in Python rather than as loose JSON files so that a fragment (money, an order line) is defined once and
every type that carries it agrees. Consumers are tolerant readers: unknown properties are allowed, so adding an
optional field is not a breaking change; removing or retyping a required one is, and needs a new event type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from orderflow.events.event import ORDER_ID_PATTERN

Schema = Mapping[str, Any]

ORDER_ID: Final[Schema] = {
    "type": "string",
    "pattern": ORDER_ID_PATTERN.pattern,
    "description": "Order id; also the CloudEvent subject, partitionkey and Kafka key.",
}
CUSTOMER_ID: Final[Schema] = {"type": "string", "minLength": 1, "maxLength": 64}
SKU: Final[Schema] = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
QUANTITY: Final[Schema] = {"type": "integer", "minimum": 1, "maximum": 1_000_000}
TIMESTAMP: Final[Schema] = {"type": "string", "format": "date-time", "minLength": 20}
MONEY: Final[Schema] = {
    "type": "object",
    "description": "An amount in integer minor units (cents) with its ISO 4217 currency code. Never a float.",
    "required": ["amount_minor", "currency"],
    "properties": {
        "amount_minor": {"type": "integer", "minimum": 0},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    },
}
STOCK_LINES: Final[Schema] = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["sku", "quantity"],
        "properties": {"sku": SKU, "quantity": QUANTITY},
    },
}
ORDER_LINES: Final[Schema] = {
    "type": "array",
    "minItems": 1,
    "maxItems": 100,
    "items": {
        "type": "object",
        "required": ["sku", "quantity", "unit_price_minor"],
        "properties": {"sku": SKU, "quantity": QUANTITY, "unit_price_minor": {"type": "integer", "minimum": 0}},
    },
}
CANCEL_REASON: Final[Schema] = {"enum": ["out_of_stock", "payment_declined", "deadline_exceeded"]}
# The answer of a service that heard of an order only after it was cancelled: it took nothing, and says so, so
# that the order service can tell "compensation complete" from "not answered yet".
ORDER_CANCELLED: Final = "order_cancelled"


def _object(title: str, description: str, properties: Mapping[str, Schema]) -> Schema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "description": description,
        "type": "object",
        "required": sorted(properties),
        "properties": dict(properties),
    }


SCHEMAS: Final[Mapping[str, Schema]] = {
    "dev.orderflow.order.created.v1": _object(
        "OrderCreated",
        "An order was accepted; stock and payment are now to be taken.",
        {
            "order_id": ORDER_ID,
            "customer_id": CUSTOMER_ID,
            "items": ORDER_LINES,
            "total": MONEY,
            "deadline": TIMESTAMP,
            "created_at": TIMESTAMP,
        },
    ),
    "dev.orderflow.stock.reserved.v1": _object(
        "StockReserved",
        "Every line of the order is reserved (all or nothing).",
        {"order_id": ORDER_ID, "items": STOCK_LINES},
    ),
    "dev.orderflow.stock.rejected.v1": _object(
        "StockRejected",
        "The order could not be reserved, or was cancelled before inventory saw it (reason order_cancelled); "
        "nothing was taken.",
        {
            "order_id": ORDER_ID,
            "reason": {"enum": ["out_of_stock", "unknown_sku", ORDER_CANCELLED]},
            "missing": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["sku", "requested", "available"],
                    "properties": {
                        "sku": SKU,
                        "requested": QUANTITY,
                        "available": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    ),
    "dev.orderflow.stock.released.v1": _object(
        "StockReleased",
        "A reservation was given back (compensation): the stock is available again.",
        {"order_id": ORDER_ID, "items": STOCK_LINES, "reason": CANCEL_REASON},
    ),
    "dev.orderflow.payment.charged.v1": _object(
        "PaymentCharged",
        "The customer's account was charged the order total.",
        {"order_id": ORDER_ID, "customer_id": CUSTOMER_ID, "amount": MONEY},
    ),
    "dev.orderflow.payment.failed.v1": _object(
        "PaymentFailed",
        "The customer's account could not be charged, or the order was cancelled before billing saw it "
        "(reason order_cancelled); nothing was taken.",
        {
            "order_id": ORDER_ID,
            "customer_id": CUSTOMER_ID,
            "reason": {"enum": ["insufficient_funds", "unknown_account", "currency_mismatch", ORDER_CANCELLED]},
        },
    ),
    "dev.orderflow.payment.refunded.v1": _object(
        "PaymentRefunded",
        "A charge was paid back (compensation).",
        {"order_id": ORDER_ID, "customer_id": CUSTOMER_ID, "amount": MONEY, "reason": CANCEL_REASON},
    ),
    "dev.orderflow.shipment.dispatched.v1": _object(
        "ShipmentDispatched",
        "The order shipped: the single terminal success outcome.",
        {"order_id": ORDER_ID, "shipment_id": {"type": "string", "minLength": 1}, "dispatched_at": TIMESTAMP},
    ),
    "dev.orderflow.shipment.cancelled.v1": _object(
        "ShipmentCancelled",
        "The order will never ship: the single terminal failure outcome; others compensate.",
        {"order_id": ORDER_ID, "reason": CANCEL_REASON},
    ),
}
