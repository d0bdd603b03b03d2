"""What a consumer may expect of an event, as Pact matchers: derived from the schema its decoder enforces.

Every consumer decodes with ``codec.decode``, which validates ``data`` against the catalog's JSON Schema and
dead-letters what fails. So a consumer relies on exactly the schema's *constraints* (required fields, types, id
patterns, enums, integer minor units, ISO timestamps, non-empty item lists) and on no particular value: the body
matchers below are derived from the schema, and the example values only make the consumer test concrete.

The CloudEvent attributes and the Kafka topic and key travel as message metadata (one entry per Kafka header,
plus ``topic`` and ``key``), matched exactly where a consumer depends on the value (``ce_type``,
``ce_specversion``, ``content-type``, ``topic``) and by pattern or type elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from pact import match

from orderflow.events import catalog, schemas

PREFIX: Final = "orderflow"  # the default ORDERFLOW_TOPIC_PREFIX: contracts name the default topics

# RFC 3339 as ``datetime.fromisoformat`` (what the consumers' schema check uses for "date-time") accepts it.
TIMESTAMP_PATTERN: Final = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"

# Example values: one order of 2 units of SKU-1 at 12.50 EUR. Ids are fixed so that regenerated pacts are identical.
ORDER_ID: Final = "ord_0b5c5e1f6a7d4c3b9e8f7a6b5c4d3e2f"
EVENT_ID: Final = "5f0c6a52-8d1e-4c7b-9a3f-2e6d8b4c1a70"
CUSTOMER: Final = "cust-1"
SKU: Final = "SKU-1"
QUANTITY: Final = 2
UNIT_PRICE: Final = 1250
TOTAL: Final = QUANTITY * UNIT_PRICE
CURRENCY: Final = "EUR"
CREATED_AT: Final = "2025-06-01T12:00:00.000Z"
DEADLINE: Final = "2025-06-01T12:00:30.000Z"
EVENT_TIME: Final = "2025-06-01T12:00:01.000Z"

_MONEY: Final = {"amount_minor": TOTAL, "currency": CURRENCY}
_LINES: Final = [{"sku": SKU, "quantity": QUANTITY}]

EXAMPLES: Final[Mapping[str, Mapping[str, Any]]] = {
    catalog.ORDER_CREATED: {
        "order_id": ORDER_ID,
        "customer_id": CUSTOMER,
        "items": [{"sku": SKU, "quantity": QUANTITY, "unit_price_minor": UNIT_PRICE}],
        "total": _MONEY,
        "deadline": DEADLINE,
        "created_at": CREATED_AT,
    },
    catalog.STOCK_RESERVED: {"order_id": ORDER_ID, "items": _LINES},
    catalog.STOCK_REJECTED: {
        "order_id": ORDER_ID,
        "reason": "out_of_stock",
        "missing": [{"sku": SKU, "requested": QUANTITY, "available": 1}],
    },
    catalog.STOCK_RELEASED: {"order_id": ORDER_ID, "items": _LINES, "reason": "payment_declined"},
    catalog.PAYMENT_CHARGED: {"order_id": ORDER_ID, "customer_id": CUSTOMER, "amount": _MONEY},
    catalog.PAYMENT_FAILED: {"order_id": ORDER_ID, "customer_id": CUSTOMER, "reason": "insufficient_funds"},
    catalog.PAYMENT_REFUNDED: {
        "order_id": ORDER_ID,
        "customer_id": CUSTOMER,
        "amount": _MONEY,
        "reason": "out_of_stock",
    },
    catalog.SHIPMENT_DISPATCHED: {
        "order_id": ORDER_ID,
        "shipment_id": "shp_0123456789abcdef",
        "dispatched_at": "2025-06-01T12:00:02.000Z",
    },
    catalog.SHIPMENT_CANCELLED: {"order_id": ORDER_ID, "reason": "deadline_exceeded"},
}


class UnsupportedSchema(ValueError):
    """A schema construct this module cannot turn into a matcher: extend ``from_schema`` rather than guess."""


def example(event_type: str, **changes: Any) -> dict[str, Any]:
    """The example ``data`` of ``event_type``, with top-level ``changes``."""
    return {**EXAMPLES[event_type], **changes}


def from_schema(schema: Mapping[str, Any], value: Any) -> Any:
    """A matcher tree for ``value`` that accepts what ``schema`` accepts (as far as Pact can say it)."""
    if "enum" in schema:
        choices = "|".join(re.escape(str(v)) for v in schema["enum"])
        return match.regex(value, regex=f"^({choices})$")
    kind = schema.get("type")
    if kind == "object":
        required = schema.get("required", [])
        return {name: from_schema(schema["properties"][name], value[name]) for name in required}
    if kind == "array":
        item = from_schema(schema["items"], value[0])
        minimum = int(schema.get("minItems", 0))
        return match.each_like(item, min=minimum) if minimum else match.each_like(item)
    if kind == "string":
        if "pattern" in schema:
            return match.regex(value, regex=schema["pattern"])
        if schema.get("format") == "date-time":
            return match.regex(value, regex=TIMESTAMP_PATTERN)
        if "minLength" in schema or "maxLength" in schema:
            low, high = schema.get("minLength", 0), schema.get("maxLength", "")
            return match.regex(value, regex=f"^[\\s\\S]{{{low},{high}}}$")
        return match.str(value)
    if kind == "integer":
        return match.int(value)
    if kind == "boolean":
        return match.bool(value)
    raise UnsupportedSchema(f"no matcher for schema {dict(schema)!r}")


def body(event_type: str, data: Mapping[str, Any], *, pins: tuple[str, ...] = ()) -> Any:
    """The body a consumer of ``event_type`` expects: ``data``'s shape under the type's schema.

    ``pins`` names top-level fields whose exact value the consumer branches on: those are matched literally.
    """
    shape = from_schema(catalog.get(event_type).schema, data)
    return {**shape, **{name: data[name] for name in pins}}


def metadata(event_type: str, *, keeps: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Kafka topic, key and the CloudEvent headers (binary content mode) a consumer of ``event_type`` needs.

    ``keeps`` names attributes the consumer stores or shows, which it therefore pins harder: ``source`` (matched
    exactly instead of as any string) and ``time`` (required, as an ISO timestamp).
    """
    entry = catalog.get(event_type)
    order_id = match.regex(ORDER_ID, regex=schemas.ORDER_ID["pattern"])
    meta: dict[str, Any] = {
        "topic": entry.topic(PREFIX),
        "key": order_id,
        "content-type": "application/json",
        "ce_specversion": "1.0",
        "ce_type": entry.type,
        "ce_id": match.str(EVENT_ID),
        "ce_source": entry.source if "source" in keeps else match.str(entry.source),
        "ce_subject": order_id,
    }
    if "time" in keeps:
        meta["ce_time"] = match.regex(EVENT_TIME, regex=TIMESTAMP_PATTERN)
    return meta
