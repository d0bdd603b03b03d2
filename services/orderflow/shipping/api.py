"""The shipping service's HTTP contract: the shipment decision's schema and its route's ``Doc`` (runtime/apidoc)."""

from __future__ import annotations

from typing import Final

from orderflow.events import schemas
from orderflow.runtime.apidoc import Doc, Reply, described, nullable, obj, path_param

_TIMESTAMP = {"type": "string", "format": "date-time"}
SHIPMENT: Final = obj(
    {
        "order_id": schemas.ORDER_ID,
        "outcome": described(
            nullable({"enum": ["DISPATCHED", "CANCELLED"]}), "The decision; null while shipping still waits."
        ),
        "reason": described(nullable(schemas.CANCEL_REASON), "Why CANCELLED; null otherwise."),
        "shipment_id": described(nullable({"type": "string"}), "Set when DISPATCHED."),
        "stock": described(
            nullable({"enum": ["RESERVED", "REJECTED"]}), "What shipping heard from inventory; null: nothing yet."
        ),
        "payment": described(
            nullable({"enum": ["CHARGED", "FAILED"]}), "What shipping heard from billing; null: nothing yet."
        ),
        "deadline": described(nullable(_TIMESTAMP), "The order's deadline; null until OrderCreated is heard."),
        "decided_at": described(nullable(_TIMESTAMP), "When the decision was taken; null while waiting."),
    },
    description="The decision point's view of an order: what it has heard and what it decided.",
)
GET_SHIPMENT = Doc(
    "get_shipment",
    "What shipping has heard of an order and what it decided",
    [Reply(200, "The shipment decision.", SHIPMENT)],
    errors=(400, 404, 503),
    params=(path_param("order_id", schemas.ORDER_ID, "The order id."),),
    description="404 until shipping has seen an event of the order.",
    tags=("shipments",),
)
