"""Shipping, the pivot of the saga: the one place where an order's terminal outcome is decided.

It remembers what it has heard per order (stock reserved or rejected, payment charged or failed, the deadline)
in any arrival order, and decides as soon as the outcome is known: dispatch when stock and payment are both in and
the deadline has not passed, cancel on the first failure or when the deadline passes first. The decision is a
conditional UPDATE (``outcome IS NULL``), so the deadline scan and the last success event can race, on one
replica or several, and still only one of them wins and publishes.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from orderflow.events import Event, OrderId, catalog, isoformat, schemas, utcnow
from orderflow.runtime import Definition, Request, Response, Route, Runtime, Ticker, Tx, db, endpoints, sql
from orderflow.shipping import api

log = logging.getLogger(__name__)

metadata = sa.MetaData()
shipments = sa.Table(
    "shipments",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("deadline", db.UtcDateTime()),
    sa.Column("stock", sa.String(16)),
    sa.Column("payment", sa.String(16)),
    sa.Column("outcome", sa.String(16)),
    sa.Column("reason", sa.String(32)),
    sa.Column("shipment_id", sa.String(64)),
    sa.Column("decided_at", db.UtcDateTime()),
    sa.Index("ix_shipments_open_deadline", "outcome", "deadline"),
)

DISPATCHED: Final = "DISPATCHED"
CANCELLED: Final = "CANCELLED"


# Statements are built once with bind parameters and run on the driver (``sql.Prepared``): building and executing
# a SQLAlchemy expression per event cost more than the database's work (measured by `make bench-saga`).
_B = sa.bindparam
# Remembering a fact returns the order's row as it now is (RETURNING), so deciding needs no SELECT of its own.
_INSERT = sql.Prepared(shipments.insert().returning(*shipments.c))
_REMEMBER = {
    column: sql.Prepared(
        shipments.update()
        .where(shipments.c.order_id == _B("p_order_id"))
        .values({column: _B("p_value")})
        .returning(*shipments.c)
    )
    for column in ("deadline", "stock", "payment")
}
_CONCLUDE = sql.Prepared(
    shipments.update()
    .where(shipments.c.order_id == _B("p_order_id"), shipments.c.outcome.is_(None))
    .values(outcome=_B("p_outcome"), reason=_B("p_reason"), shipment_id=_B("p_shipment_id"), decided_at=_B("p_now"))
)


def _remember(tx: Tx, order_id: OrderId, column: str, value: Any) -> Any:
    """Record one fact about the order; return its row with the fact in."""
    row = _REMEMBER[column].run(tx.conn, {"p_order_id": order_id, "p_value": value}).first()
    if row is None:
        row = _INSERT.run(tx.conn, {"order_id": order_id, column: value}).one()
    return row


def _decide(tx: Tx, order_id: OrderId, row: Any) -> None:
    """Conclude the order if ``row`` (its state in this transaction) says how it ends."""
    if row.outcome is not None:
        return
    if row.stock == "REJECTED":
        cancel(tx, order_id, "out_of_stock")
    elif row.payment == "FAILED":
        cancel(tx, order_id, "payment_declined")
    elif row.stock == "RESERVED" and row.payment == "CHARGED":
        if row.deadline is not None and row.deadline <= tx.now:
            cancel(tx, order_id, "deadline_exceeded")
        else:
            dispatch(tx, order_id)


def _conclude(
    tx: Tx, order_id: OrderId, *, outcome: str, reason: str | None = None, shipment_id: str | None = None
) -> bool:
    """The decision point: true for exactly one caller per order, whoever races it."""
    params = {
        "p_order_id": order_id,
        "p_outcome": outcome,
        "p_reason": reason,
        "p_shipment_id": shipment_id,
        "p_now": tx.now,
    }
    return bool(_CONCLUDE.run(tx.conn, params).rowcount)


def dispatch(tx: Tx, order_id: OrderId) -> None:
    shipment_id = f"shp_{uuid.uuid4().hex[:16]}"
    if _conclude(tx, order_id, outcome=DISPATCHED, shipment_id=shipment_id):
        tx.emit(
            catalog.SHIPMENT_DISPATCHED,
            {"order_id": order_id, "shipment_id": shipment_id, "dispatched_at": isoformat(tx.now)},
            subject=order_id,
        )


def cancel(tx: Tx, order_id: OrderId, reason: str) -> None:
    if _conclude(tx, order_id, outcome=CANCELLED, reason=reason):
        tx.emit(catalog.SHIPMENT_CANCELLED, {"order_id": order_id, "reason": reason}, subject=order_id)


def on_order_created(tx: Tx, event: Event) -> None:
    _decide(tx, event.subject, _remember(tx, event.subject, "deadline", datetime.fromisoformat(event.data["deadline"])))


def _fact(column: str, value: str) -> Any:
    def handle(tx: Tx, event: Event) -> None:
        if event.data.get("reason") == schemas.ORDER_CANCELLED:
            return  # an answer to a cancellation that was already decided: no news for the decision point
        _decide(tx, event.subject, _remember(tx, event.subject, column, value))

    handle.__name__ = f"on_{column}_{value.lower()}"
    return handle


def prepare(tx: Tx, events: Sequence[Event]) -> None:
    """Lock the batch's orders in id order; the deadline scan skips locked ones (no deadlocks between them)."""
    db.lock_in_order(tx.conn, shipments.c.order_id, {e.subject for e in events})


HANDLERS: Final = {
    catalog.ORDER_CREATED: on_order_created,
    catalog.STOCK_RESERVED: _fact("stock", "RESERVED"),
    catalog.STOCK_REJECTED: _fact("stock", "REJECTED"),
    catalog.PAYMENT_CHARGED: _fact("payment", "CHARGED"),
    catalog.PAYMENT_FAILED: _fact("payment", "FAILED"),
}

SCAN_LIMIT: Final = 500
_ANY_DUE = (
    sa.select(shipments.c.order_id)
    .where(shipments.c.outcome.is_(None), shipments.c.deadline <= sa.bindparam("p_now"))
    .limit(1)
)


def expire(rt: Runtime) -> int:
    """Cancel every open order whose deadline has passed; return how many this call cancelled."""
    # A read first: most scans find nothing, and a write transaction would take SQLite's write lock from the
    # consumer four times a second for nothing.
    with rt.store.read() as conn:
        if conn.execute(_ANY_DUE, {"p_now": utcnow()}).first() is None:
            return 0
    with rt.transaction() as tx:
        due = (
            tx.conn.execute(
                sa.select(shipments.c.order_id)
                .where(shipments.c.outcome.is_(None), shipments.c.deadline <= tx.now)
                .order_by(shipments.c.order_id)
                .limit(SCAN_LIMIT)
                # rows a consumer batch holds are decided there, or on the next scan
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        for order_id in due:
            cancel(tx, OrderId(order_id), "deadline_exceeded")
        cancelled = len(tx.emitted)
    for event in tx.emitted:
        log.info(
            "deadline passed: cancelled",
            extra={"order_id": event.subject, "event_id": event.id, "reason": "deadline_exceeded"},
        )
    return cancelled


# -- HTTP ------------------------------------------------------------------------------------------------------


def get_shipment(rt: Runtime, request: Request) -> Response:
    row = endpoints.order_row(rt.store, shipments.c.order_id, request, service="shipping")
    return 200, {
        "order_id": row.order_id,
        "outcome": row.outcome,
        "reason": row.reason,
        "shipment_id": row.shipment_id,
        "stock": row.stock,
        "payment": row.payment,
        "deadline": row.deadline and isoformat(row.deadline),
        "decided_at": row.decided_at and isoformat(row.decided_at),
    }


def routes(rt: Runtime) -> list[Route]:
    return [Route("GET", "/shipments/{order_id}", functools.partial(get_shipment, rt), api.GET_SHIPMENT)]


definition = Definition(
    name="shipping",
    metadata=metadata,
    handlers=HANDLERS,
    routes=routes,
    tickers=(Ticker("deadline-scan", lambda s: s.deadline_scan_ms / 1000, expire),),
    prepare=prepare,
)
