"""Each service's per-order state machine, over every arrival order and any number of repeats (hypothesis).

The events of one order's flow (``tests.support.worlds``) are fed to a service's REAL apply path (inbox,
handlers and outbox in one SQLite transaction per batch) in a random order that respects causality only where
the service itself caused an event, with random repeats and random batch splits. Whatever the order, the service
must end in a state that keeps the design's invariants, and repeats must change nothing compared with the same
order without them.
"""

from __future__ import annotations

import itertools
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

from orderflow import billing, inventory, order, shipping
from orderflow.events import Event, catalog, utcnow
from orderflow.runtime import Definition, Tx
from orderflow.runtime.consumer import apply
from orderflow.runtime.context import runtime_tables
from orderflow.runtime.db import Store
from tests.support import events as ev
from tests.support import worlds

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VOLATILE = {"updated_at", "decided_at", "shipment_id", "received_at", "recorded_at", "terminal_at"}


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
            _, tx = apply(self.store, definition=self.definition, tables=self.tables, prefix="prop", events=batch)
            self.emitted.extend(tx.emitted)

    def types(self) -> list[str]:
        return [e.type for e in self.emitted]

    def rows(self, table: str) -> list[dict[str, Any]]:
        if self.final is not None:
            return self.final[table]
        with self.store.read() as conn:
            t = self.definition.metadata.tables[table]
            return [dict(r._mapping) for r in conn.execute(sa.select(t))]

    def close(self) -> None:
        self.final = {t: self.rows(t) for t in self.definition.metadata.tables}
        self.store.dispose()


def _open(definition: Definition, path: Path, seed: Callable[[Tx], None] | None) -> Run:
    tables = runtime_tables(definition.metadata)
    run = Run(definition, Store(f"sqlite:///{path}", definition.metadata), tables, [])
    if seed is not None:
        with run.store.write() as conn:
            seed(Tx(conn, service=definition.name, prefix="prop"))
    return run


@st.composite
def arrivals(draw: st.DrawFn, flow: worlds.Flow) -> list[list[Event]]:
    """A causally possible order of ``flow``'s events, each repeated 1-3 times, split into random batches."""
    stream: list[Event] = []
    for event in flow.arrival(lambda ready: draw(st.sampled_from(list(ready)))):
        stream.extend([event] * draw(st.integers(1, 3)))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=4))))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _without_repeats(batches: list[list[Event]]) -> list[list[Event]]:
    seen: set[str] = set()
    out: list[list[Event]] = []
    for batch in batches:
        fresh = []
        for e in batch:
            if e.id not in seen:
                seen.add(e.id)
                fresh.append(e)
        if fresh:
            out.append(fresh)
    return out


def _comparable(run: Run, table: str) -> list[dict[str, Any]]:
    rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in run.rows(table)]
    return sorted(rows, key=lambda r: json.dumps(r, default=str, sort_keys=True))


def feed_twice(definition: Definition, batches: list[list[Event]], seed: Callable[[Tx], None] | None = None) -> Run:
    """Feed with repeats and without; assert both end identically; return the run with repeats."""
    with tempfile.TemporaryDirectory() as d:
        with_repeats = _open(definition, Path(d) / "a.db", seed)
        with_repeats.feed(batches)
        without = _open(definition, Path(d) / "b.db", seed)
        without.feed(_without_repeats(batches))
        with_repeats.close()
        without.close()
    assert with_repeats.types() == without.types()
    for table in definition.metadata.tables:
        if table not in ("inbox", "outbox", "outbox_lease"):
            assert _comparable(with_repeats, table) == _comparable(without, table), table
    return with_repeats


@SETTINGS
@given(data=st.data(), world=st.sampled_from(worlds.INVENTORY), stock=st.integers(0, 4))
def test_inventory_any_order(data: st.DataObject, world: str, stock: int) -> None:
    flow = worlds.inventory(world, stock=stock, quantity=2)

    def seed(tx: Tx) -> None:
        tx.conn.execute(inventory.service.stock.insert().values(sku="SKU-1", available=stock, reserved=0, shipped=0))

    run = feed_twice(inventory.definition, data.draw(arrivals(flow)), seed)
    (row,) = run.rows("stock")
    worlds.check_inventory(flow, stock=stock, quantity=2, row=row, emitted=run.types(), events=run.emitted)


@SETTINGS
@given(data=st.data(), world=st.sampled_from(worlds.BILLING), balance=st.integers(0, 3000))
def test_billing_any_order(data: st.DataObject, world: str, balance: int) -> None:
    flow = worlds.billing(world, amount=1000)

    def seed(tx: Tx) -> None:
        tx.conn.execute(
            billing.service.accounts.insert().values(customer_id="alice", balance_minor=balance, currency="EUR")
        )

    run = feed_twice(billing.definition, data.draw(arrivals(flow)), seed)
    (account,) = run.rows("accounts")
    worlds.check_billing(
        flow, balance=balance, amount=1000, after=account["balance_minor"], emitted=run.types(), events=run.emitted
    )


@SETTINGS
@given(data=st.data(), world=st.sampled_from(worlds.SHIPPING))
def test_shipping_decides_exactly_once(data: st.DataObject, world: str) -> None:
    flow = worlds.shipping(world)
    run = feed_twice(shipping.definition, data.draw(arrivals(flow)))
    worlds.check_shipping(flow, decisions=[(e.type, e.data.get("reason")) for e in run.emitted])
    (row,) = run.rows("shipments")
    assert row["outcome"] == ("DISPATCHED" if world == "both_ok" else "CANCELLED")


def test_shipping_cancels_an_order_whose_deadline_passed_before_it_could_decide() -> None:
    """A late success never ships an expired order: the decision point checks the deadline too."""
    expired = ev.order_created(deadline_s=-1)
    oid = expired.subject
    run = feed_twice(shipping.definition, [[expired, ev.stock_reserved(oid)], [ev.payment_charged(oid)]])
    assert [(e.type, e.data["reason"]) for e in run.emitted] == [(catalog.SHIPMENT_CANCELLED, "deadline_exceeded")]


@SETTINGS
@given(data=st.data(), world=st.sampled_from(worlds.ORDER))
def test_order_status_and_timeline_any_order(data: st.DataObject, world: str) -> None:
    flow = worlds.order(world)
    now = utcnow()

    def seed(tx: Tx) -> None:
        tx.conn.execute(
            order.service.orders.insert().values(
                order_id=flow.order_id,
                customer_id="alice",
                items="[]",
                total_minor=0,
                currency="EUR",
                status="PENDING",
                created_at=now,
                deadline=now,
            )
        )

    run = feed_twice(order.definition, data.draw(arrivals(flow)), seed)
    (row,) = run.rows("orders")
    worlds.check_order(
        flow, row=row, timeline=len(run.rows("timeline")), compensated=order.service.compensated(SimpleNamespace(**row))
    )
