"""The order service: the saga's entry point and its memory.

``POST /orders`` stores the order and its ``OrderCreated`` in one transaction (honouring ``Idempotency-Key``).
It then only listens: the status becomes terminal when shipping, the single decision point, says
``ShipmentDispatched`` or ``ShipmentCancelled``; the stock and payment events track whether compensation has
finished; every event lands on the order's timeline so ``GET /orders/{id}`` shows where an order stopped.
``GET /flow`` summarises in-flight and stuck orders for the operator.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from orderflow.errors import WriteConflict
from orderflow.events import Event, catalog, isoformat, new_order_id
from orderflow.order import api
from orderflow.runtime import Definition, Request, RequestError, Response, Route, Runtime, Tx, db, endpoints, logs, sql
from orderflow.runtime.http import body_validator

log = logging.getLogger(__name__)

metadata = sa.MetaData()
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("items", sa.Text, nullable=False),
    sa.Column("total_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(32)),
    sa.Column("stock", sa.String(16), nullable=False, server_default="NONE"),
    sa.Column("payment", sa.String(16), nullable=False, server_default="NONE"),
    sa.Column("created_at", db.UtcDateTime(), nullable=False),
    sa.Column("deadline", db.UtcDateTime(), nullable=False),
    sa.Column("terminal_at", db.UtcDateTime()),
    sa.Index("ix_orders_status_created", "status", "created_at"),
)
timeline = sa.Table(
    "timeline",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("event_type", sa.String(200), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("time", db.UtcDateTime(), nullable=False),
    sa.Column("recorded_at", db.UtcDateTime(), nullable=False),
)
idempotency = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(64), nullable=False),
    sa.Column("created_at", db.UtcDateTime(), nullable=False),
)

PENDING: Final = "PENDING"
SHIPPED: Final = "SHIPPED"
CANCELLED: Final = "CANCELLED"

# What each consumed event says about the order's stock and payment. Ranks only grow, so a duplicate or a late
# event can never move an order backwards (e.g. RELEASED back to RESERVED).
_STOCK: Final = {
    catalog.STOCK_RESERVED: "RESERVED",
    catalog.STOCK_REJECTED: "REJECTED",
    catalog.STOCK_RELEASED: "RELEASED",
}
_PAYMENT: Final = {
    catalog.PAYMENT_CHARGED: "CHARGED",
    catalog.PAYMENT_FAILED: "FAILED",
    catalog.PAYMENT_REFUNDED: "REFUNDED",
}
_RANK: Final = {"NONE": 0, "RESERVED": 1, "REJECTED": 1, "CHARGED": 1, "FAILED": 1, "RELEASED": 2, "REFUNDED": 2}


def compensated(row: Any) -> bool:
    """Both inventory and billing have answered, and neither still holds anything of the order.

    Every accepted order gets an answer from each (reserved or rejected; charged or failed — including the
    ``order_cancelled`` answer of one that heard of the order only after its cancellation), so "not answered
    yet" is never mistaken for "nothing to give back".
    """
    return row.stock in ("REJECTED", "RELEASED") and row.payment in ("FAILED", "REFUNDED")


# Statements are built once with bind parameters and run on the driver (``sql.Prepared``): building and executing
# a SQLAlchemy expression per event cost more than the database's work (measured by `make bench-saga`).
_B = sa.bindparam
_TIMELINE = sql.Prepared(timeline.insert())
_KNOWN = sql.Prepared(sa.select(orders.c.order_id).where(orders.c.order_id == _B("p_order_id")))
# One statement per (column, new value): the ranks below it are fixed, so no IN list is bound per event.
_PROGRESS = {
    value: sql.Prepared(
        orders.update()
        .where(
            orders.c.order_id == _B("p_order_id"),
            sa.or_(*(orders.c[column] == k for k, rank in _RANK.items() if rank < _RANK[value])),
        )
        .values({column: value})
    )
    for column, values in (("stock", _STOCK.values()), ("payment", _PAYMENT.values()))
    for value in values
}
_CONCLUDE = sql.Prepared(
    orders.update()
    .where(orders.c.order_id == _B("p_order_id"), orders.c.status == PENDING)
    .values(status=_B("p_status"), reason=_B("p_reason"), terminal_at=_B("p_now"))
)
_STATUS = sql.Prepared(sa.select(orders.c.status).where(orders.c.order_id == _B("p_order_id")))
_ORDER = sql.Prepared(sa.select(orders).where(orders.c.order_id == _B("p_order_id")))
_TIMELINE_OF = sql.Prepared(
    sa.select(timeline)
    .where(timeline.c.order_id == _B("p_order_id"))
    .order_by(timeline.c.time, timeline.c.recorded_at)
)
_INSERT_ORDER = sql.Prepared(orders.insert())


# Events for orders placed elsewhere (published straight to the topic, another deployment's) come in floods: one
# line per event type per window says so and counts the rest (a line per event cost a fifth of the service's time
# in such a burst).
UNKNOWN_ORDER_LOG_WINDOW_S: Final = 10.0
_UNKNOWN_ORDERS: Final = logs.Throttle(UNKNOWN_ORDER_LOG_WINDOW_S)


def _record(tx: Tx, event: Event) -> bool:
    """Put ``event`` on the order's timeline; false when the order is unknown here."""
    _TIMELINE.run(
        tx.conn,
        {
            "order_id": event.subject,
            "event_id": event.id,
            "event_type": event.type,
            "source": event.source,
            "time": event.time,
            "recorded_at": tx.now,
        },
    )
    known = _KNOWN.run(tx.conn, {"p_order_id": event.subject}).first()
    if known is None and (admitted := _UNKNOWN_ORDERS.admit(event.type)) is not None:
        held, suffix = admitted
        log.warning(
            "event for an order this service never created%s",
            suffix,
            extra={
                "order_id": event.subject,
                "event_id": event.id,
                "event_type": event.type,
                "suppressed": held or None,
            },
        )
    return known is not None


def on_progress(tx: Tx, event: Event) -> None:
    if not _record(tx, event):
        return
    value = _STOCK[event.type] if event.type in _STOCK else _PAYMENT[event.type]
    _PROGRESS[value].run(tx.conn, {"p_order_id": event.subject})


def on_outcome(tx: Tx, event: Event) -> None:
    if not _record(tx, event):
        return
    status, reason = (SHIPPED, None) if event.type == catalog.SHIPMENT_DISPATCHED else (CANCELLED, event.data["reason"])
    params = {"p_order_id": event.subject, "p_status": status, "p_reason": reason, "p_now": tx.now}
    if _CONCLUDE.run(tx.conn, params).rowcount:
        log.info("order %s", status.lower(), extra={"order_id": event.subject, "event_id": event.id, "reason": reason})
        return
    current = _STATUS.run(tx.conn, {"p_order_id": event.subject}).scalar_one()
    if current != status:
        log.error(
            "conflicting outcome %s for a %s order",
            event.type,
            current,
            extra={"order_id": event.subject, "event_id": event.id},
        )


HANDLERS: Final = {
    **{t: on_progress for t in (*_STOCK, *_PAYMENT)},
    catalog.SHIPMENT_DISPATCHED: on_outcome,
    catalog.SHIPMENT_CANCELLED: on_outcome,
}

# -- HTTP ------------------------------------------------------------------------------------------------------

_NEW_ORDER = body_validator(api.NEW_ORDER)


def _order_json(row: Any, events: Sequence[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": row.order_id,
        "status": row.status,
        "reason": row.reason,
        "customer_id": row.customer_id,
        "items": json.loads(row.items),
        "total": {"amount_minor": row.total_minor, "currency": row.currency},
        "created_at": isoformat(row.created_at),
        "deadline": isoformat(row.deadline),
        "terminal_at": row.terminal_at and isoformat(row.terminal_at),
        "stock": row.stock,
        "payment": row.payment,
        "compensated": compensated(row) if row.status == CANCELLED else None,
    }
    if events is not None:
        body["timeline"] = [
            {
                "type": e.event_type,
                "name": catalog.get(e.event_type).name if e.event_type in catalog.CATALOG else e.event_type,
                "source": e.source,
                "service": e.source.rsplit("/", 1)[-1],
                "time": isoformat(e.time),
            }
            for e in events
        ]
    return body


def _request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _load(conn: sa.Connection, order_id: str) -> dict[str, Any] | None:
    """The order's JSON with its timeline, or None when there is no such order."""
    row = _ORDER.run(conn, {"p_order_id": order_id}).first()
    if row is None:
        return None
    return _order_json(row, _TIMELINE_OF.run(conn, {"p_order_id": order_id}).rows)


def _new_order_request(request: Request) -> tuple[dict[str, Any], str | None]:
    """The validated body of ``POST /orders`` and its Idempotency-Key, or a 4xx saying what is wrong."""
    body = _NEW_ORDER(request.json())
    skus = [line["sku"] for line in body["items"]]
    if len(set(skus)) != len(skus):
        raise RequestError(
            422, "each SKU may appear once in items; add up the quantities", details={"field": "body.items"}
        )
    if sum(line["quantity"] * line["unit_price_minor"] for line in body["items"]) > api.MAX_TOTAL_MINOR:
        # Bounded: a larger total overflowed the database's 64-bit integer (a 500, found by fuzzing).
        raise RequestError(
            422, f"the order total exceeds {api.MAX_TOTAL_MINOR} minor units", details={"field": "body.items"}
        )
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 200:
        raise RequestError(400, "Idempotency-Key must be 1 to 200 characters")
    return body, key


def _replayed(tx: Tx, key: str, digest: str) -> dict[str, Any] | None:
    """The order an earlier request with this Idempotency-Key created; 422 if that request was a different one."""
    seen = tx.conn.execute(sa.select(idempotency).where(idempotency.c.key == key)).first()
    if seen is None:
        return None
    if seen.request_hash != digest:
        raise RequestError(
            422,
            "this Idempotency-Key was used for a different request; use a new key",
            details={"order_id": seen.order_id},
        )
    return _load(tx.conn, seen.order_id)


def _place(tx: Tx, body: dict[str, Any], *, deadline_s: float) -> Event:
    """Store a new order and emit its OrderCreated, in the caller's transaction."""
    order_id = new_order_id()
    deadline = tx.now + timedelta(seconds=float(body.get("deadline_seconds", deadline_s)))
    total = sum(int(line["quantity"]) * int(line["unit_price_minor"]) for line in body["items"])
    _INSERT_ORDER.run(
        tx.conn,
        {
            "order_id": order_id,
            "customer_id": body["customer_id"],
            "items": json.dumps(body["items"]),
            "total_minor": total,
            "currency": body["currency"],
            "status": PENDING,
            "created_at": tx.now,
            "deadline": deadline,
        },
    )
    event = tx.emit(
        catalog.ORDER_CREATED,
        {
            "order_id": order_id,
            "customer_id": body["customer_id"],
            "items": body["items"],
            "total": {"amount_minor": total, "currency": body["currency"]},
            "deadline": isoformat(deadline),
            "created_at": isoformat(tx.now),
        },
        subject=order_id,
    )
    _record(tx, event)
    return event


def create_order(rt: Runtime, request: Request) -> Response:
    """``POST /orders``, honouring ``Idempotency-Key``."""
    try:
        return _create_once(rt, request)
    except WriteConflict:
        # Two requests with one new Idempotency-Key raced (PostgreSQL); the loser now finds the winner's order.
        return _create_once(rt, request)


def _create_once(rt: Runtime, request: Request) -> Response:
    body, key = _new_order_request(request)
    digest = _request_hash(body)
    with rt.transaction() as tx:
        if key is not None and (existing := _replayed(tx, key, digest)) is not None:
            return 200, existing
        tx.traceparent = request.headers.get("traceparent")
        event = _place(tx, body, deadline_s=rt.settings.order_deadline_s)
        if key is not None:
            tx.conn.execute(
                idempotency.insert().values(key=key, request_hash=digest, order_id=event.subject, created_at=tx.now)
            )
        created = _load(tx.conn, event.subject)
    log.info("order accepted", extra={"order_id": event.subject, "event_id": event.id})
    return 201, created


def get_order(rt: Runtime, request: Request) -> Response:
    order_id = endpoints.order_id(request)
    with rt.store.read() as conn:
        body = _load(conn, order_id)
    if body is None:
        raise RequestError(404, f"no order {order_id}")
    return 200, body


def order_counts(rt: Runtime, _request: Request) -> Response:
    with rt.store.read() as conn:
        rows = conn.execute(
            sa.select(orders.c.status, orders.c.reason, sa.func.count()).group_by(orders.c.status, orders.c.reason)
        ).all()
    counts: dict[str, int] = {}
    for status, reason, n in rows:
        counts[f"{status}/{reason}" if reason else status] = int(n)
    return 200, {"orders": sum(counts.values()), "by_status": dict(sorted(counts.items()))}


def _stuck_after(rt: Runtime, request: Request) -> float:
    raw = request.query.get("stuck_after_seconds", str(rt.settings.stuck_after_s))
    try:
        stuck_after = float(raw)
    except ValueError:
        raise RequestError(400, f"stuck_after_seconds={raw!r} is not a number") from None
    if not 0 < stuck_after <= api.MAX_STUCK_AFTER_S:
        # Bounded: a huge value would overflow the datetime arithmetic below (a 500).
        raise RequestError(400, f"stuck_after_seconds must be > 0 and <= {api.MAX_STUCK_AFTER_S}")
    return stuck_after


def flow_health(rt: Runtime, request: Request) -> Response:
    """``GET /flow``: orders in flight, the oldest one's age, stuck orders (for the operator)."""
    stuck_after = _stuck_after(rt, request)
    now = datetime.now(UTC)
    with rt.store.read() as conn:
        pending = orders.c.status == PENDING
        in_flight, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(orders.c.created_at)).where(pending)
        ).one()
        threshold = now - timedelta(seconds=stuck_after)
        stuck_q = sa.select(orders.c.order_id).where(pending, orders.c.created_at <= threshold)
        stuck = conn.execute(sa.select(sa.func.count()).select_from(stuck_q.subquery())).scalar_one()
        stuck_ids = conn.execute(stuck_q.order_by(orders.c.created_at).limit(20)).scalars().all()
    return 200, {
        "in_flight": int(in_flight),
        "oldest_in_flight_age_seconds": (now - oldest).total_seconds() if oldest else None,
        "stuck": int(stuck),
        "stuck_after_seconds": stuck_after,
        "stuck_order_ids": list(stuck_ids),
    }


def routes(rt: Runtime) -> list[Route]:
    return [
        Route("POST", "/orders", functools.partial(create_order, rt), api.CREATE),
        Route("GET", "/orders", functools.partial(order_counts, rt), api.LIST),
        Route("GET", "/orders/{order_id}", functools.partial(get_order, rt), api.GET),
        Route("GET", "/flow", functools.partial(flow_health, rt), api.FLOW_HEALTH),
    ]


definition = Definition(
    name="order", metadata=metadata, handlers=HANDLERS, routes=routes, ready_without_broker=True
)

