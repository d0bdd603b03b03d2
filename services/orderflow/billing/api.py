"""The billing service's HTTP contract: request and response schemas and each route's ``Doc`` (runtime/apidoc)."""

from __future__ import annotations

from typing import Final

from orderflow.events import schemas
from orderflow.runtime.apidoc import Doc, Reply, described, nullable, obj, path_param

CUSTOMER_ID: Final = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
_CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code"}
PUT_ACCOUNT: Final = {
    "type": "object",
    "required": ["balance_minor", "currency"],
    "additionalProperties": False,
    "properties": {
        "balance_minor": {"type": "integer", "minimum": 0, "maximum": 10**15, "description": "In minor units"},
        "currency": _CURRENCY,
    },
}
ACCOUNT: Final = obj(
    {
        "customer_id": CUSTOMER_ID,
        "balance_minor": described({"type": "integer", "minimum": 0}, "Balance in minor units (cents)."),
        "currency": _CURRENCY,
    }
)
PAYMENT_STATES: Final = ("CHARGED", "FAILED", "REFUNDED", "VOID")
PAYMENT: Final = obj(
    {
        "order_id": schemas.ORDER_ID,
        "customer_id": described({"type": "string"}, "The charged customer; empty for VOID."),
        "state": described(
            {"enum": list(PAYMENT_STATES)},
            "CHARGED (the order total was taken), FAILED (nothing taken: insufficient funds, unknown account, "
            "currency mismatch, or cancelled before billing saw the order), REFUNDED (paid back: compensation), "
            "VOID (a cancellation arrived before the order: it will never be charged).",
        ),
        "reason": described(
            nullable(
                {
                    "enum": [
                        "insufficient_funds",
                        "unknown_account",
                        "currency_mismatch",
                        schemas.ORDER_CANCELLED,
                        "out_of_stock",
                        "payment_declined",
                        "deadline_exceeded",
                    ]
                }
            ),
            "Why FAILED, REFUNDED or VOID; null for CHARGED.",
        ),
        "amount": described(schemas.MONEY, "The order total (0 XXX for VOID)."),
    }
)

_CUSTOMER_PARAM = path_param("customer_id", CUSTOMER_ID, "The customer id.")

GET_ACCOUNT = Doc(
    "get_account", "A customer's balance", [Reply(200, "The account.", ACCOUNT)], errors=(400, 404, 503),
    params=(_CUSTOMER_PARAM,), tags=("accounts",),
)
PUT_ACCOUNT_DOC = Doc(
    "put_account",
    "Set a customer's balance and currency (creating the account)",
    [Reply(200, "The account as written.", ACCOUNT)],
    errors=(400, 413, 415, 422, 503),
    params=(_CUSTOMER_PARAM,),
    body=PUT_ACCOUNT,
    tags=("accounts",),
)
GET_PAYMENT = Doc(
    "get_payment",
    "What billing did with an order",
    [Reply(200, "The payment.", PAYMENT)],
    errors=(400, 404, 503),
    params=(path_param("order_id", schemas.ORDER_ID, "The order id."),),
    description="404 until billing has seen an event of the order.",
    tags=("payments",),
)
