"""The order service's HTTP contract: request and response schemas and each route's ``Doc`` (see runtime/apidoc).

The request schema is the one ``POST /orders`` validates with; the response schemas describe exactly what the
endpoints build, and the fuzz tests hold them to it.
"""

from __future__ import annotations

from typing import Final

from orderflow.events import schemas
from orderflow.runtime.apidoc import Doc, Param, Reply, described, nullable, obj, path_param

MAX_DEADLINE_S: Final = 7 * 24 * 3600
STATUS: Final = ("PENDING", "SHIPPED", "CANCELLED")
MAX_STUCK_AFTER_S: Final = 10**9
# Bounds that keep an order total within a 64-bit integer (and within what an account can hold).
MAX_PRICE_MINOR: Final = 10**12
MAX_TOTAL_MINOR: Final = 10**15

NEW_ORDER: Final = {
    "type": "object",
    "required": ["customer_id", "currency", "items"],
    "additionalProperties": False,
    "properties": {
        "customer_id": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code of every price"},
        "items": described(
            {
                **schemas.ORDER_LINES,
                "items": {
                    **schemas.ORDER_LINES["items"],
                    "properties": {
                        **schemas.ORDER_LINES["items"]["properties"],
                        "unit_price_minor": {"type": "integer", "minimum": 0, "maximum": MAX_PRICE_MINOR},
                    },
                },
            },
            f"Order lines; each SKU at most once; the total (quantity x unit price) at most {MAX_TOTAL_MINOR}.",
        ),
        "deadline_seconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_DEADLINE_S,
            "description": "Cancel the order (deadline_exceeded) unless shipped within this many seconds; "
            "default ORDERFLOW_ORDER_DEADLINE_S.",
        },
    },
}

_TIMESTAMP = {"type": "string", "format": "date-time"}
ORDER: Final = obj(
    {
        "order_id": schemas.ORDER_ID,
        "status": described({"enum": list(STATUS)}, "PENDING until shipping decides; then SHIPPED or CANCELLED."),
        "reason": described(
            nullable(schemas.CANCEL_REASON), "Why a CANCELLED order was cancelled; null otherwise."
        ),
        "customer_id": {"type": "string"},
        "items": schemas.ORDER_LINES,
        "total": schemas.MONEY,
        "created_at": _TIMESTAMP,
        "deadline": described(_TIMESTAMP, "When the order is cancelled unless shipped by then."),
        "terminal_at": described(nullable(_TIMESTAMP), "When the order service heard the outcome; null while PENDING."),
        "stock": described(
            {"enum": ["NONE", "RESERVED", "REJECTED", "RELEASED"]},
            "What inventory last said: NONE (nothing yet), RESERVED, REJECTED (nothing taken), RELEASED (given back).",
        ),
        "payment": described(
            {"enum": ["NONE", "CHARGED", "FAILED", "REFUNDED"]},
            "What billing last said: NONE (nothing yet), CHARGED, FAILED (nothing taken), REFUNDED (paid back).",
        ),
        "compensated": described(
            {"type": ["boolean", "null"]},
            "Only for CANCELLED orders (null otherwise): true once inventory and billing both hold nothing of the "
            "order (stock REJECTED or RELEASED, and payment FAILED or REFUNDED); false while a reservation or a "
            "charge is still to be given back.",
        ),
        "timeline": described(
            {
                "type": "array",
                "items": obj(
                    {
                        "type": described({"type": "string"}, "CloudEvent type"),
                        "name": described({"type": "string"}, "Event name, e.g. StockReserved"),
                        "source": described({"type": "string"}, "CloudEvent source, /orderflow/<service>"),
                        "service": described({"type": "string"}, "The producing service"),
                        "time": described(_TIMESTAMP, "CloudEvent time"),
                    }
                ),
            },
            "Every event of the order the order service has heard, in event-time order.",
        ),
    }
)
COUNTS: Final = obj(
    {
        "orders": described({"type": "integer", "minimum": 0}, "Orders this service has accepted."),
        "by_status": described(
            {
                "type": "object",
                "propertyNames": {"pattern": "^(PENDING|SHIPPED|CANCELLED)(/[a-z_]+)?$"},
                "additionalProperties": {"type": "integer", "minimum": 1},
            },
            "Counts by `STATUS` or `CANCELLED/<reason>`, e.g. {\"SHIPPED\": 90, \"CANCELLED/out_of_stock\": 3}.",
        ),
    },
    description="The `/orders` summary.",
)
FLOW: Final = obj(
    {
        "in_flight": described({"type": "integer", "minimum": 0}, "Orders accepted and not yet SHIPPED or CANCELLED."),
        "oldest_in_flight_age_seconds": described(
            {"type": ["number", "null"], "minimum": 0}, "Age of the oldest in-flight order; null when none."
        ),
        "stuck": described({"type": "integer", "minimum": 0}, "In-flight orders older than stuck_after_seconds."),
        "stuck_after_seconds": {"type": "number", "exclusiveMinimum": 0},
        "stuck_order_ids": described(
            {"type": "array", "maxItems": 20, "items": schemas.ORDER_ID}, "Up to 20 stuck orders, oldest first."
        ),
    },
    description="Flow health, as the operator reads it into the OrderFlow status.",
)

ORDER_ID_PARAM: Final = path_param("order_id", schemas.ORDER_ID, "The order id (ord_ followed by 32 hex digits).")

CREATE = Doc(
    "create_order",
    "Place an order: stored with its OrderCreated in one transaction",
    [
        Reply(201, "Accepted: the new order, PENDING.", ORDER),
        Reply(200, "Same Idempotency-Key and same body as an earlier request: that request's order.", ORDER),
    ],
    errors=(400, 413, 415, 422, 503),
    params=(
        Param(
            "Idempotency-Key",
            "header",
            {"type": "string", "minLength": 1, "maxLength": 200},
            "Retry safely: the same key with the same body answers the first order (200); with another body, 422.",
        ),
        Param("traceparent", "header", {"type": "string"}, "W3C trace context, carried through every event."),
    ),
    body=NEW_ORDER,
    tags=("orders",),
)
GET = Doc(
    "get_order",
    "One order: status, reason, compensation, stock and payment state, timeline",
    [Reply(200, "The order.", ORDER)],
    errors=(400, 404, 503),
    params=(ORDER_ID_PARAM,),
    tags=("orders",),
)
LIST = Doc(
    "order_counts",
    "Counts of orders per status and cancellation reason",
    [Reply(200, "The summary.", COUNTS)],
    errors=(503,),
    tags=("orders",),
)
FLOW_HEALTH = Doc(
    "flow_health",
    "Orders in flight, the oldest one's age, stuck orders",
    [Reply(200, "Flow health.", FLOW)],
    errors=(400, 503),
    params=(
        Param(
            "stuck_after_seconds",
            "query",
            {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_STUCK_AFTER_S},
            "An in-flight order older than this counts as stuck (default ORDERFLOW_STUCK_AFTER_S).",
        ),
    ),
    tags=("flow",),
)
