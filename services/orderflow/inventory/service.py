"""Inventory's per-order state machine and its stock ledger.

Per SKU, ``available + reserved + shipped`` only changes through ``PUT /stock``: reserving moves units from
available to reserved, releasing moves them back, a dispatch moves them from reserved to shipped. Per order, the
state only moves forward (``RESERVED`` → ``RELEASED`` | ``SHIPPED``); a cancellation seen before the order itself
leaves a ``VOID`` marker so a late ``OrderCreated`` never reserves. Every transition is a conditional UPDATE, so two
replicas on one PostgreSQL can neither oversell a SKU nor release an order twice.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

import sqlalchemy as sa

from orderflow.events import Event, OrderId, catalog, schemas
from orderflow.inventory import api
from orderflow.runtime import Definition, Request, Response, Route, Runtime, Tx, db, endpoints, sql
from orderflow.runtime.http import body_validator, path_param

log = logging.getLogger(__name__)

metadata = sa.MetaData()
stock = sa.Table(
    "stock",
    metadata,
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("available", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("shipped", sa.BigInteger, nullable=False, server_default="0"),
    sa.CheckConstraint("available >= 0 AND reserved >= 0 AND shipped >= 0", name="stock_not_negative"),
)
reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("items", sa.Text, nullable=False),
    sa.Column("reason", sa.String(32)),
    sa.Column("updated_at", db.UtcDateTime(), nullable=False),
)

RESERVED: Final = "RESERVED"
REJECTED: Final = "REJECTED"
RELEASED: Final = "RELEASED"
SHIPPED: Final = "SHIPPED"
VOID: Final = "VOID"


def _lines(items: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Quantities per SKU, in SKU order (a fixed lock order: no deadlocks between replicas)."""
    totals: Counter[str] = Counter()
    for item in items:
        totals[str(item["sku"])] += int(item["quantity"])
    return dict(sorted(totals.items()))


def _as_items(lines: Mapping[str, int]) -> list[dict[str, Any]]:
    return [{"sku": sku, "quantity": q} for sku, q in lines.items()]


# Statements are built once with bind parameters and run on the driver (``sql.Prepared``): building and executing
# a SQLAlchemy expression per event cost more than the database's work (measured by `make bench-saga`).
_B = sa.bindparam
_STATE = sql.Prepared(sa.select(reservations).where(reservations.c.order_id == _B("p_order_id")))
_RESERVE = sql.Prepared(
    stock.update()
    .where(stock.c.sku == _B("p_sku"), stock.c.available >= _B("p_quantity"))
    .values(available=stock.c.available - _B("p_quantity"), reserved=stock.c.reserved + _B("p_quantity"))
)
_UNRESERVE = sql.Prepared(
    stock.update()
    .where(stock.c.sku == _B("p_sku"))
    .values(available=stock.c.available + _B("p_quantity"), reserved=stock.c.reserved - _B("p_quantity"))
)
_SHIP = sql.Prepared(
    stock.update()
    .where(stock.c.sku == _B("p_sku"))
    .values(reserved=stock.c.reserved - _B("p_quantity"), shipped=stock.c.shipped + _B("p_quantity"))
)
_AVAILABLE = sa.select(stock.c.sku, stock.c.available).where(stock.c.sku.in_(_B("p_skus", expanding=True)))
_INSERT = sql.Prepared(reservations.insert())
_TRANSITION = sql.Prepared(
    reservations.update()
    .where(reservations.c.order_id == _B("p_order_id"), reservations.c.state == _B("p_from"))
    .values(state=_B("p_to"), reason=_B("p_reason"), updated_at=_B("p_now"))
)


def _state(tx: Tx, order_id: str) -> sa.Row[Any] | None:
    return _STATE.run(tx.conn, {"p_order_id": order_id}).first()


def _move(tx: Tx, statement: sql.Prepared, lines: Mapping[str, int]) -> None:
    statement.run_many(tx.conn, [{"p_sku": sku, "p_quantity": q} for sku, q in lines.items()])


def on_order_created(tx: Tx, event: Event) -> None:
    order_id = event.subject
    row = _state(tx, order_id)
    if row is not None:
        # Cancelled before it arrived (VOID): never reserve, but answer, so the order knows nothing is held.
        if row.state == VOID and _transition(tx, order_id, frm=VOID, to=REJECTED, reason=schemas.ORDER_CANCELLED):
            tx.emit(
                catalog.STOCK_REJECTED,
                {"order_id": order_id, "reason": schemas.ORDER_CANCELLED, "missing": []},
                subject=order_id,
            )
        return
    lines = _lines(event.data["items"])
    taken: dict[str, int] = {}
    for sku, quantity in lines.items():
        if not _RESERVE.run(tx.conn, {"p_sku": sku, "p_quantity": quantity}).rowcount:
            break
        taken[sku] = quantity
    if len(taken) == len(lines):
        _insert(tx, order_id, RESERVED, lines, None)
        tx.emit(catalog.STOCK_RESERVED, {"order_id": order_id, "items": _as_items(lines)}, subject=order_id)
        return
    _move(tx, _UNRESERVE, taken)  # all or nothing: give back what this order took
    have = {r.sku: r.available for r in tx.conn.execute(_AVAILABLE, {"p_skus": list(lines)})}
    missing = [
        {"sku": sku, "requested": q, "available": int(have.get(sku, 0))}
        for sku, q in lines.items()
        if have.get(sku, 0) < q
    ]
    reason = "unknown_sku" if any(m["sku"] not in have for m in missing) else "out_of_stock"
    _insert(tx, order_id, REJECTED, lines, reason)
    tx.emit(catalog.STOCK_REJECTED, {"order_id": order_id, "reason": reason, "missing": missing}, subject=order_id)


def _insert(tx: Tx, order_id: str, state: str, lines: Mapping[str, int], reason: str | None) -> None:
    _INSERT.run(
        tx.conn,
        {"order_id": order_id, "state": state, "items": json.dumps(lines), "reason": reason, "updated_at": tx.now},
    )


def _transition(tx: Tx, order_id: str, *, frm: str, to: str, reason: str | None) -> bool:
    params = {"p_order_id": order_id, "p_from": frm, "p_to": to, "p_reason": reason, "p_now": tx.now}
    return bool(_TRANSITION.run(tx.conn, params).rowcount)


def release(tx: Tx, order_id: OrderId, reason: str) -> None:
    """Compensate: give a reservation back; remember the cancellation if the order has not been seen yet."""
    row = _state(tx, order_id)
    if row is None:
        _insert(tx, order_id, VOID, {}, reason)
        return
    if row.state != RESERVED or not _transition(tx, order_id, frm=RESERVED, to=RELEASED, reason=reason):
        return
    lines: dict[str, int] = json.loads(row.items)
    _move(tx, _UNRESERVE, lines)
    tx.emit(
        catalog.STOCK_RELEASED, {"order_id": order_id, "items": _as_items(lines), "reason": reason}, subject=order_id
    )


def on_payment_failed(tx: Tx, event: Event) -> None:
    if event.data["reason"] == schemas.ORDER_CANCELLED:
        return  # billing answering a cancellation: the ShipmentCancelled it answers reaches inventory too
    release(tx, event.subject, "payment_declined")


def on_shipment_cancelled(tx: Tx, event: Event) -> None:
    release(tx, event.subject, str(event.data["reason"]))


def on_shipment_dispatched(tx: Tx, event: Event) -> None:
    row = _state(tx, event.subject)
    if row is None or not _transition(tx, event.subject, frm=RESERVED, to=SHIPPED, reason=None):
        if row is None or row.state != SHIPPED:
            log.error("dispatched without a reservation", extra={"order_id": event.subject, "event_id": event.id})
        return
    _move(tx, _SHIP, json.loads(row.items))


def prepare(tx: Tx, events: Sequence[Event]) -> None:
    """Lock every SKU the batch will touch, in SKU order, before any handler runs (no deadlocks between replicas)."""
    skus = {str(line["sku"]) for e in events if e.type == catalog.ORDER_CREATED for line in e.data["items"]}
    undo = [e.subject for e in events if e.type != catalog.ORDER_CREATED]
    if undo and tx.conn.dialect.name == "postgresql":
        held = tx.conn.execute(
            sa.select(reservations.c["items"]).where(
                reservations.c.order_id.in_(undo), reservations.c.state == RESERVED
            )
        ).scalars()
        skus.update(sku for items in held for sku in json.loads(items))
    db.lock_in_order(tx.conn, stock.c.sku, skus)


HANDLERS: Final = {
    catalog.ORDER_CREATED: on_order_created,
    catalog.PAYMENT_FAILED: on_payment_failed,
    catalog.SHIPMENT_CANCELLED: on_shipment_cancelled,
    catalog.SHIPMENT_DISPATCHED: on_shipment_dispatched,
}

# -- HTTP ------------------------------------------------------------------------------------------------------

_SKU = re.compile(schemas.SKU["pattern"])
_PUT_STOCK = body_validator(api.PUT_STOCK)


def _stock_json(row: sa.Row[Any]) -> dict[str, Any]:
    return {"sku": row.sku, "available": row.available, "reserved": row.reserved, "shipped": row.shipped}


def get_stock(rt: Runtime, request: Request) -> Response:
    sku = path_param(request, "sku", _SKU, "SKU")
    missing = f"no stock record for SKU {sku!r}; create it with PUT /stock/{sku}"
    return 200, _stock_json(endpoints.one_or_404(rt.store, stock.c.sku, sku, missing=missing))


def put_stock(rt: Runtime, request: Request) -> Response:
    sku = path_param(request, "sku", _SKU, "SKU")
    body = _PUT_STOCK(request.json())
    row = endpoints.upsert(
        rt.store, stock.c.sku, sku, {"available": body["available"]}, on_insert={"reserved": 0, "shipped": 0}
    )
    return 200, _stock_json(row)


def list_stock(rt: Runtime, _request: Request) -> Response:
    with rt.store.read() as conn:
        rows = conn.execute(sa.select(stock).order_by(stock.c.sku)).all()
    return 200, {"stock": [_stock_json(r) for r in rows]}


def get_reservation(rt: Runtime, request: Request) -> Response:
    row = endpoints.order_row(rt.store, reservations.c.order_id, request, service="inventory")
    return 200, {
        "order_id": row.order_id,
        "state": row.state,
        "reason": row.reason,
        "items": _as_items(json.loads(row.items)),
    }


def routes(rt: Runtime) -> list[Route]:
    return [
        Route("GET", "/stock", functools.partial(list_stock, rt), api.LIST_STOCK),
        Route("GET", "/stock/{sku}", functools.partial(get_stock, rt), api.GET_STOCK),
        Route("PUT", "/stock/{sku}", functools.partial(put_stock, rt), api.PUT_STOCK_DOC),
        Route("GET", "/reservations/{order_id}", functools.partial(get_reservation, rt), api.GET_RESERVATION),
    ]


definition = Definition(name="inventory", metadata=metadata, handlers=HANDLERS, routes=routes, prepare=prepare)
