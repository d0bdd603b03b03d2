"""Each service's per-order state machine, over every arrival order and any number of repeats (hypothesis).

The events of one order's flow are fed to a service's REAL apply path (inbox, handlers, outbox in one SQLite
transaction per batch) in a random order that respects causality only where the service itself caused an event
(e.g. inventory cannot see ShipmentDispatched before it reserved), with random repeats and random batch splits.
Whatever the order, the service must end in a state that keeps the design's invariants, and repeats must change
nothing at all compared with the same order without repeats.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services import billing, inventory, order, shipping
from services.events import Event, catalog, new_order_id, utcnow
from services.runtime import Tx
from services.runtime.consumer import apply
from services.runtime.db import Store
from services.runtime.service import Definition, runtime_tables
from tests.support import events as ev

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Run:
    """A service's store, fed batches through the real apply path, remembering what it emitted."""

    definition: Definition
    store: Store
    tables: dict[str, sa.Table]
    emitted: list[Event]
    final: dict[str, list[dict[str, Any]]] | None = None

    def feed(self, batches: Sequence[Sequence[Event]]) -> None:
        for batch in batches:
            _, tx = apply(
                self.store,
                inbox_table=self.tables["inbox"],
                outbox_table=self.tables["outbox"],
                handlers=self.definition.handlers,
                service=self.definition.name,
                prefix="prop",
                events=batch,
            )
            self.emitted.extend(tx.emitted)

    def types(self) -> list[str]:
        return [e.type for e in self.emitted]

    def rows(self, table: str) -> list[dict[str, Any]]:
        if self.final is not None:
            return self.final[table]
        with self.store.read() as conn:
            t = self.definition.metadata.tables[table]
            return [dict(r._mapping) for r in conn.execute(sa.select(t))]


def _run(definition: Definition, directory: Path, name: str, seed: Callable[[Tx], None] | None = None) -> Run:
    tables = runtime_tables(definition.metadata)
    run = Run(definition, Store(f"sqlite:///{directory / name}.db", definition.metadata), tables, [])
    store = run.store
    if seed is not None:
        with store.write() as conn:
            seed(Tx(conn, service=definition.name, prefix="prop"))
    return run


@st.composite
def arrivals(draw: st.DrawFn, flow: list[Event], *, after: dict[int, int] | None = None) -> list[list[Event]]:
    """A permutation of ``flow`` (event i never before event ``after[i]``), with repeats, split into batches."""
    after = after or {}
    remaining = list(range(len(flow)))
    order_: list[int] = []
    while remaining:
        ready = [i for i in remaining if after.get(i) is None or after[i] in order_]
        pick = draw(st.sampled_from(ready))
        order_.append(pick)
        remaining.remove(pick)
    stream: list[Event] = []
    for i in order_:
        stream.extend([flow[i]] * draw(st.integers(1, 3)))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=4))))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def _dedup(batches: list[list[Event]]) -> list[list[Event]]:
    seen: set[str] = set()
    out = []
    for batch in batches:
        out.append([e for e in batch if not (e.id in seen or seen.add(e.id))])  # type: ignore[func-returns-value]
    return [b for b in out if b]


def _comparable(run: Run, table: str) -> list[dict[str, Any]]:
    skip = {"updated_at", "decided_at", "shipment_id", "received_at", "recorded_at", "terminal_at"}
    rows = [{k: v for k, v in r.items() if k not in skip} for r in run.rows(table)]
    return sorted(rows, key=lambda r: json.dumps(r, default=str, sort_keys=True))


def _twice(definition: Definition, batches: list[list[Event]], seed: Callable[[Tx], None] | None,
           tables: Sequence[str]) -> Run:
    """Feed with repeats and without; assert both end identically; return the run with repeats."""
    with tempfile.TemporaryDirectory() as d:
        with_repeats = _run(definition, Path(d), "a", seed)
        with_repeats.feed(batches)
        without = _run(definition, Path(d), "b", seed)
        without.feed(_dedup(batches))
        assert [e.type for e in with_repeats.emitted] == [e.type for e in without.emitted]
        for table in tables:
            assert _comparable(with_repeats, table) == _comparable(without, table), table
        with_repeats.final = {t: with_repeats.rows(t) for t in definition.metadata.tables}
        with_repeats.store.dispose()
        without.store.dispose()
    return with_repeats


# -- inventory --------------------------------------------------------------------------------------------------

INVENTORY_WORLDS = ["shipped", "payment_failed", "deadline", "out_of_stock"]


@SETTINGS
@given(data=st.data(), world=st.sampled_from(INVENTORY_WORLDS), stock=st.integers(0, 4))
def test_inventory_any_order(data: st.DataObject, world: str, stock: int) -> None:
    created = ev.order_created(quantity=2)
    oid = created.subject
    flow, after = [created], {}
    if world == "shipped" and stock >= 2:
        flow.append(ev.shipment_dispatched(oid))
        after = {1: 0}  # shipping dispatched only after inventory's own StockReserved
    elif world == "payment_failed":
        flow += [ev.payment_failed(oid), ev.shipment_cancelled(oid, reason="payment_declined")]
    elif world == "deadline":
        flow.append(ev.shipment_cancelled(oid, reason="deadline_exceeded"))
    else:
        flow.append(ev.shipment_cancelled(oid, reason="out_of_stock"))
        after = {1: 0} if stock < 2 else {}

    def seed(tx: Tx) -> None:
        tx.conn.execute(inventory.service.stock.insert().values(sku="SKU-1", available=stock, reserved=0, shipped=0))

    run = _twice(inventory.definition, data.draw(arrivals(flow, after=after)), seed, ["stock", "reservations"])
    (row,) = run.rows("stock")
    types = run.types()
    assert row["available"] + row["reserved"] + row["shipped"] == stock  # conservation
    assert types.count(catalog.STOCK_RESERVED) + types.count(catalog.STOCK_REJECTED) <= 1
    assert types.count(catalog.STOCK_RELEASED) <= types.count(catalog.STOCK_RESERVED)
    cancelled = any(e.type in (catalog.PAYMENT_FAILED, catalog.SHIPMENT_CANCELLED) for e in flow)
    if cancelled:
        assert (row["available"], row["reserved"], row["shipped"]) == (stock, 0, 0)  # net zero
    elif len(flow) == 2:  # dispatched
        assert (row["reserved"], row["shipped"]) == (0, 2)


# -- billing ------------------------------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data(), world=st.sampled_from(["shipped", "stock_rejected", "deadline", "declined"]),
       balance=st.integers(0, 3000))
def test_billing_any_order(data: st.DataObject, world: str, balance: int) -> None:
    created = ev.order_created(unit_price=1000)
    oid = created.subject
    flow, after = [created], {}
    if world == "stock_rejected":
        flow += [ev.stock_rejected(oid), ev.shipment_cancelled(oid, reason="out_of_stock")]
    elif world == "deadline":
        flow.append(ev.shipment_cancelled(oid, reason="deadline_exceeded"))
    elif world == "declined":
        flow.append(ev.shipment_cancelled(oid, reason="payment_declined"))
        after = {1: 0}  # shipping cancelled for payment only after billing's own PaymentFailed

    def seed(tx: Tx) -> None:
        tx.conn.execute(billing.service.accounts.insert().values(customer_id="alice", balance_minor=balance,
                                                                  currency="EUR"))

    run = _twice(billing.definition, data.draw(arrivals(flow, after=after)), seed, ["accounts", "payments"])
    (account,) = run.rows("accounts")
    types = run.types()
    charged, refunded = types.count(catalog.PAYMENT_CHARGED), types.count(catalog.PAYMENT_REFUNDED)
    assert charged <= 1 and refunded <= charged
    assert types.count(catalog.PAYMENT_CHARGED) + types.count(catalog.PAYMENT_FAILED) <= 1
    kept = 1000 * (charged - refunded)
    assert account["balance_minor"] + kept == balance  # conservation
    if len(flow) > 1:
        assert kept == 0  # any cancellation: net zero, whatever arrived first


# -- shipping -----------------------------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data(), stock_ok=st.booleans(), paid=st.booleans(), with_created=st.booleans())
def test_shipping_decides_exactly_once(data: st.DataObject, stock_ok: bool, paid: bool, with_created: bool) -> None:
    created = ev.order_created(deadline_s=3600)
    oid = created.subject
    flow = [ev.stock_reserved(oid) if stock_ok else ev.stock_rejected(oid),
            ev.payment_charged(oid) if paid else ev.payment_failed(oid)]
    if with_created:
        flow.append(created)

    run = _twice(shipping.definition, data.draw(arrivals(flow)), None, ["shipments"])
    types = run.types()
    assert len(types) == 1, types  # exactly one outcome once both answers are in
    (row,) = run.rows("shipments")
    if stock_ok and paid:
        assert types == [catalog.SHIPMENT_DISPATCHED] and row["outcome"] == "DISPATCHED"
    else:
        assert types == [catalog.SHIPMENT_CANCELLED] and row["outcome"] == "CANCELLED"
        possible = ({"out_of_stock"} if not stock_ok else set()) | ({"payment_declined"} if not paid else set())
        assert run.emitted[0].data["reason"] in possible


def test_shipping_cancels_an_order_whose_deadline_passed_before_it_could_decide() -> None:
    """A late success never ships an expired order: the decision point checks the deadline too."""
    expired = ev.order_created(deadline_s=-1)
    oid = expired.subject
    with tempfile.TemporaryDirectory() as d:
        run = _run(shipping.definition, Path(d), "s")
        run.feed([[expired, ev.stock_reserved(oid)], [ev.payment_charged(oid)]])
        assert [(e.type, e.data["reason"]) for e in run.emitted] == [(catalog.SHIPMENT_CANCELLED, "deadline_exceeded")]
        run.store.dispose()


# -- order --------------------------------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data(), world=st.sampled_from(["shipped", "out_of_stock", "declined", "deadline"]))
def test_order_status_and_timeline_any_order(data: st.DataObject, world: str) -> None:
    oid = new_order_id()
    if world == "shipped":
        flow = [ev.stock_reserved(oid), ev.payment_charged(oid), ev.shipment_dispatched(oid)]
    elif world == "out_of_stock":
        flow = [ev.stock_rejected(oid), ev.payment_charged(oid), ev.shipment_cancelled(oid, reason="out_of_stock"),
                _refunded(oid)]
    elif world == "declined":
        flow = [ev.stock_reserved(oid), ev.payment_failed(oid), ev.shipment_cancelled(oid, reason="payment_declined"),
                _released(oid, "payment_declined")]
    else:
        flow = [ev.stock_reserved(oid), ev.shipment_cancelled(oid, reason="deadline_exceeded"),
                _released(oid, "deadline_exceeded")]
    # On one topic and key, a release/refund always follows the reservation/charge it undoes.
    after = {i: next(j for j, e in enumerate(flow) if e.type == _undoes(flow[i].type))
             for i, e in enumerate(flow) if e.type in (catalog.STOCK_RELEASED, catalog.PAYMENT_REFUNDED)}

    now = utcnow()

    def seed(tx: Tx) -> None:
        tx.conn.execute(order.service.orders.insert().values(
            order_id=oid, customer_id="alice", items="[]", total_minor=0, currency="EUR", status="PENDING",
            created_at=now, deadline=now))

    run = _twice(order.definition, data.draw(arrivals(flow, after=after)), seed, ["orders", "timeline"])
    (row,) = run.rows("orders")
    assert len(run.rows("timeline")) == len(flow)  # each event on the timeline once
    if world == "shipped":
        assert (row["status"], row["reason"]) == ("SHIPPED", None)
    else:
        reason = {"out_of_stock": "out_of_stock", "declined": "payment_declined", "deadline": "deadline_exceeded"}[world]
        assert (row["status"], row["reason"]) == ("CANCELLED", reason)
        assert order.service.compensated(SimpleNamespace(**row))


def _undoes(event_type: str) -> str:
    return {catalog.STOCK_RELEASED: catalog.STOCK_RESERVED, catalog.PAYMENT_REFUNDED: catalog.PAYMENT_CHARGED}[event_type]


def _refunded(oid: Any) -> Event:
    return Event(type=catalog.PAYMENT_REFUNDED, source="/orderflow/billing", subject=oid,
                 data={"order_id": oid, "customer_id": "alice", "amount": {"amount_minor": 1000, "currency": "EUR"},
                       "reason": "out_of_stock"})


def _released(oid: Any, reason: str) -> Event:
    return Event(type=catalog.STOCK_RELEASED, source="/orderflow/inventory", subject=oid,
                 data={"order_id": oid, "items": [{"sku": "SKU-1", "quantity": 1}], "reason": reason})

