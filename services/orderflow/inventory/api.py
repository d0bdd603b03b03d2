"""The inventory service's HTTP contract: request and response schemas and each route's ``Doc`` (runtime/apidoc)."""

from __future__ import annotations

from typing import Final

from orderflow.events import schemas
from orderflow.runtime.apidoc import Doc, Reply, described, nullable, obj, path_param

PUT_STOCK: Final = {
    "type": "object",
    "required": ["available"],
    "additionalProperties": False,
    "properties": {
        "available": {
            "type": "integer",
            "minimum": 0,
            "maximum": 10**12,
            "description": "Units available to reserve; reserved and shipped units are kept as they are.",
        }
    },
}

_COUNT = {"type": "integer", "minimum": 0}
STOCK: Final = obj(
    {
        "sku": schemas.SKU,
        "available": described(_COUNT, "Units free to reserve."),
        "reserved": described(_COUNT, "Units held for orders not yet shipped or released."),
        "shipped": described(_COUNT, "Units gone with dispatched orders."),
    },
    description="One SKU's ledger: available + reserved + shipped changes only through PUT /stock/{sku}.",
)
STOCK_LIST: Final = obj({"stock": {"type": "array", "items": STOCK}})
RESERVATION_STATES: Final = ("RESERVED", "REJECTED", "RELEASED", "SHIPPED", "VOID")
RESERVATION: Final = obj(
    {
        "order_id": schemas.ORDER_ID,
        "state": described(
            {"enum": list(RESERVATION_STATES)},
            "RESERVED (every line held), REJECTED (nothing taken: out of stock, unknown SKU, or cancelled before "
            "inventory saw the order), RELEASED (given back: compensation), SHIPPED (taken by the dispatch), "
            "VOID (a cancellation arrived before the order: it will never be reserved).",
        ),
        "reason": described(
            nullable(
                {
                    "enum": [
                        "out_of_stock",
                        "unknown_sku",
                        schemas.ORDER_CANCELLED,
                        "payment_declined",
                        "deadline_exceeded",
                    ]
                }
            ),
            "Why REJECTED, RELEASED or VOID; null for RESERVED and SHIPPED.",
        ),
        "items": described(
            {"type": "array", "items": obj({"sku": schemas.SKU, "quantity": schemas.QUANTITY})},
            "The quantities per SKU it concerns (empty for VOID).",
        ),
    }
)

_SKU_PARAM = path_param("sku", schemas.SKU, "The SKU.")

LIST_STOCK = Doc("list_stock", "Every SKU's ledger", [Reply(200, "All SKUs, by SKU.", STOCK_LIST)], errors=(503,),
                 tags=("stock",))
GET_STOCK = Doc(
    "get_stock", "One SKU's ledger", [Reply(200, "The ledger.", STOCK)], errors=(400, 404, 503),
    params=(_SKU_PARAM,), tags=("stock",),
)
PUT_STOCK_DOC = Doc(
    "put_stock",
    "Set a SKU's available units (creating the SKU)",
    [Reply(200, "The ledger as written.", STOCK)],
    errors=(400, 413, 415, 422, 503),
    params=(_SKU_PARAM,),
    body=PUT_STOCK,
    tags=("stock",),
)
GET_RESERVATION = Doc(
    "get_reservation",
    "What inventory holds for an order",
    [Reply(200, "The reservation.", RESERVATION)],
    errors=(400, 404, 503),
    params=(path_param("order_id", schemas.ORDER_ID, "The order id."),),
    description="404 until inventory has seen an event of the order.",
    tags=("reservations",),
)
