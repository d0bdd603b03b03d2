"""Billing's per-order state machine and the customers' balances.

Per customer, ``initial balance = balance + charges not refunded``. Per order the state only moves forward
(``CHARGED`` → ``REFUNDED``); a failure seen before the order (``StockRejected`` arriving before ``OrderCreated``
— they travel on different topics) leaves a ``VOID`` marker so the order is never charged. The charge itself is a
conditional UPDATE on the balance: two replicas can never overdraw an account or charge an order twice.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa

from orderflow.billing import api
from orderflow.events import Event, OrderId, catalog, schemas
from orderflow.runtime import Definition, Request, Response, Route, Runtime, Tx, db, endpoints, sql
from orderflow.runtime.http import body_validator, path_param

log = logging.getLogger(__name__)

metadata = sa.MetaData()
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("customer_id", sa.String(64), primary_key=True),
    sa.Column("balance_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.CheckConstraint("balance_minor >= 0", name="balance_not_negative"),
)
payments = sa.Table(
    "payments",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(32)),
    sa.Column("updated_at", db.UtcDateTime(), nullable=False),
)

CHARGED: Final = "CHARGED"
FAILED: Final = "FAILED"
REFUNDED: Final = "REFUNDED"
VOID: Final = "VOID"


# Statements are built once with bind parameters and run on the driver (``sql.Prepared``): building and executing
# a SQLAlchemy expression per event cost more than the database's work (measured by `make bench-saga`).
_B = sa.bindparam
_PAYMENT = sql.Prepared(sa.select(payments).where(payments.c.order_id == _B("p_order_id")))
_ANSWER_VOID = sql.Prepared(
    payments.update()
    .where(payments.c.order_id == _B("p_order_id"), payments.c.state == VOID)
    .values(
        state=FAILED,
        reason=schemas.ORDER_CANCELLED,
        customer_id=_B("p_customer_id"),
        amount_minor=_B("p_amount_minor"),
        currency=_B("p_currency"),
        updated_at=_B("p_now"),
    )
)
_CHARGE = sql.Prepared(
    accounts.update()
    .where(
        accounts.c.customer_id == _B("p_customer_id"),
        accounts.c.currency == _B("p_currency"),
        accounts.c.balance_minor >= _B("p_amount_minor"),
    )
    .values(balance_minor=accounts.c.balance_minor - _B("p_amount_minor"))
)
_ACCOUNT_CURRENCY = sql.Prepared(sa.select(accounts.c.currency).where(accounts.c.customer_id == _B("p_customer_id")))
_INSERT_PAYMENT = sql.Prepared(payments.insert())
_REFUND = sql.Prepared(
    payments.update()
    .where(payments.c.order_id == _B("p_order_id"), payments.c.state == CHARGED)
    .values(state=REFUNDED, reason=_B("p_reason"), updated_at=_B("p_now"))
)
_CREDIT = sql.Prepared(
    accounts.update()
    .where(accounts.c.customer_id == _B("p_customer_id"))
    .values(balance_minor=accounts.c.balance_minor + _B("p_amount_minor"))
)


def _payment(tx: Tx, order_id: str) -> sa.Row[Any] | None:
    return _PAYMENT.run(tx.conn, {"p_order_id": order_id}).first()


def on_order_created(tx: Tx, event: Event) -> None:
    order_id, data = event.subject, event.data
    customer, amount, currency = str(data["customer_id"]), int(data["total"]["amount_minor"]), data["total"]["currency"]
    row = {"order_id": order_id, "customer_id": customer, "amount_minor": amount, "currency": currency}
    params = {f"p_{k}": v for k, v in row.items()}
    if _payment(tx, order_id) is not None:
        # Cancelled before the order arrived (VOID): never charge, but answer, so the order knows nothing is kept.
        if _ANSWER_VOID.run(tx.conn, {**params, "p_now": tx.now}).rowcount:
            tx.emit(
                catalog.PAYMENT_FAILED,
                {"order_id": order_id, "customer_id": customer, "reason": schemas.ORDER_CANCELLED},
                subject=order_id,
            )
        return
    if _CHARGE.run(tx.conn, params).rowcount:
        _INSERT_PAYMENT.run(tx.conn, {**row, "state": CHARGED, "reason": None, "updated_at": tx.now})
        money = {"amount_minor": amount, "currency": currency}
        tx.emit(
            catalog.PAYMENT_CHARGED, {"order_id": order_id, "customer_id": customer, "amount": money}, subject=order_id
        )
        return
    account = _ACCOUNT_CURRENCY.run(tx.conn, {"p_customer_id": customer}).first()
    reason = (
        "unknown_account"
        if account is None
        else "currency_mismatch"
        if account.currency != currency
        else "insufficient_funds"
    )
    _INSERT_PAYMENT.run(tx.conn, {**row, "state": FAILED, "reason": reason, "updated_at": tx.now})
    tx.emit(catalog.PAYMENT_FAILED, {"order_id": order_id, "customer_id": customer, "reason": reason}, subject=order_id)


def refund(tx: Tx, order_id: OrderId, reason: str) -> None:
    """Compensate: pay a charge back; remember the cancellation if the order has not been seen yet."""
    row = _payment(tx, order_id)
    if row is None:
        void = {"order_id": order_id, "customer_id": "", "amount_minor": 0, "currency": "XXX"}
        _INSERT_PAYMENT.run(tx.conn, {**void, "state": VOID, "reason": reason, "updated_at": tx.now})
        return
    if (
        row.state != CHARGED
        or not _REFUND.run(tx.conn, {"p_order_id": order_id, "p_reason": reason, "p_now": tx.now}).rowcount
    ):
        return
    _CREDIT.run(tx.conn, {"p_customer_id": row.customer_id, "p_amount_minor": row.amount_minor})
    money = {"amount_minor": row.amount_minor, "currency": row.currency}
    tx.emit(
        catalog.PAYMENT_REFUNDED,
        {"order_id": order_id, "customer_id": row.customer_id, "amount": money, "reason": reason},
        subject=order_id,
    )


def on_stock_rejected(tx: Tx, event: Event) -> None:
    if event.data["reason"] == schemas.ORDER_CANCELLED:
        return  # inventory answering a cancellation: the ShipmentCancelled it answers reaches billing too
    refund(tx, event.subject, "out_of_stock")


def on_shipment_cancelled(tx: Tx, event: Event) -> None:
    refund(tx, event.subject, str(event.data["reason"]))


def prepare(tx: Tx, events: Sequence[Event]) -> None:
    """Lock every account the batch will touch, in id order, before any handler runs (no deadlocks)."""
    customers = {str(e.data["customer_id"]) for e in events if e.type == catalog.ORDER_CREATED}
    undo = [e.subject for e in events if e.type != catalog.ORDER_CREATED]
    if undo and tx.conn.dialect.name == "postgresql":
        customers.update(
            tx.conn.execute(
                sa.select(payments.c.customer_id).where(payments.c.order_id.in_(undo), payments.c.state == CHARGED)
            ).scalars()
        )
    db.lock_in_order(tx.conn, accounts.c.customer_id, customers)


HANDLERS: Final = {
    catalog.ORDER_CREATED: on_order_created,
    catalog.STOCK_REJECTED: on_stock_rejected,
    catalog.SHIPMENT_CANCELLED: on_shipment_cancelled,
}

# -- HTTP ------------------------------------------------------------------------------------------------------

_CUSTOMER = re.compile(api.CUSTOMER_ID["pattern"])
_PUT_ACCOUNT = body_validator(api.PUT_ACCOUNT)


def _account_json(row: sa.Row[Any]) -> dict[str, Any]:
    return {"customer_id": row.customer_id, "balance_minor": row.balance_minor, "currency": row.currency}


def get_account(rt: Runtime, request: Request) -> Response:
    customer = path_param(request, "customer_id", _CUSTOMER, "customer id")
    missing = f"no account for customer {customer!r}; create it with PUT /accounts/{customer}"
    return 200, _account_json(endpoints.one_or_404(rt.store, accounts.c.customer_id, customer, missing=missing))


def put_account(rt: Runtime, request: Request) -> Response:
    customer = path_param(request, "customer_id", _CUSTOMER, "customer id")
    body = _PUT_ACCOUNT(request.json())
    values = {"balance_minor": body["balance_minor"], "currency": body["currency"]}
    return 200, _account_json(endpoints.upsert(rt.store, accounts.c.customer_id, customer, values))


def get_payment(rt: Runtime, request: Request) -> Response:
    row = endpoints.order_row(rt.store, payments.c.order_id, request, service="billing")
    return 200, {
        "order_id": row.order_id,
        "customer_id": row.customer_id,
        "state": row.state,
        "reason": row.reason,
        "amount": {"amount_minor": row.amount_minor, "currency": row.currency},
    }


def routes(rt: Runtime) -> list[Route]:
    return [
        Route("GET", "/accounts/{customer_id}", functools.partial(get_account, rt), api.GET_ACCOUNT),
        Route("PUT", "/accounts/{customer_id}", functools.partial(put_account, rt), api.PUT_ACCOUNT_DOC),
        Route("GET", "/payments/{order_id}", functools.partial(get_payment, rt), api.GET_PAYMENT),
    ]


definition = Definition(name="billing", metadata=metadata, handlers=HANDLERS, routes=routes, prepare=prepare)
