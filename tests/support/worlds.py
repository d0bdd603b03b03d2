"""One order's flow as each consumer service can hear it, and what must hold afterwards whatever the order.

Shared by the hypothesis state-machine tests (in-process, the real apply path on SQLite) and the adversarial
arrival tests on the real broker, so both check the same thing. ``after[i] = j`` says event ``i`` can never
arrive before event ``j`` because the service itself caused it (e.g. inventory cannot hear ShipmentDispatched
before its own StockReserved), or because both travel on one topic and key (a refund follows its charge).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orderflow.events import Event, OrderId, catalog, new_order_id
from tests.support import events as ev

INVENTORY = ("shipped", "payment_failed", "deadline", "out_of_stock", "late_answer")
BILLING = ("shipped", "stock_rejected", "deadline", "declined", "late_answer")
SHIPPING = ("both_ok", "no_stock", "no_money", "nothing", "no_money_late_order")
ORDER = ("shipped", "out_of_stock", "declined", "deadline")


@dataclass
class Flow:
    world: str
    order_id: OrderId
    events: list[Event]
    after: dict[int, int] = field(default_factory=dict)

    def arrival(self, pick: Callable[[Sequence[int]], int]) -> list[Event]:
        """The events in an order chosen by ``pick`` among those allowed next."""
        remaining, chosen = list(range(len(self.events))), []
        while remaining:
            ready = [i for i in remaining if self.after.get(i) is None or self.after[i] in chosen]
            i = pick(ready)
            chosen.append(i)
            remaining.remove(i)
        return [self.events[i] for i in chosen]

    def shuffled(self, rng: random.Random) -> list[Event]:
        return self.arrival(rng.choice)

    def has(self, *types: str) -> bool:
        return any(e.type in types for e in self.events)


def _after_cause(events: list[Event], effect: str, cause: str) -> dict[int, int]:
    return {
        i: next(j for j, c in enumerate(events) if c.type == cause) for i, e in enumerate(events) if e.type == effect
    }


# -- inventory ---------------------------------------------------------------------------------------------------


def inventory(world: str, *, sku: str = "SKU-1", quantity: int = 2, stock: int = 4) -> Flow:
    created = ev.order_created(sku=sku, quantity=quantity)
    oid = created.subject
    flow = Flow(world, oid, [created])
    if world == "shipped" and stock >= quantity:
        flow.events.append(ev.shipment_dispatched(oid))
        flow.after = {1: 0}  # shipping dispatched only after inventory's own StockReserved
    elif world == "payment_failed":
        flow.events += [ev.payment_failed(oid), ev.shipment_cancelled(oid, reason="payment_declined")]
    elif world == "deadline":
        flow.events.append(ev.shipment_cancelled(oid, reason="deadline_exceeded"))
    elif world == "out_of_stock":
        flow.events.append(ev.shipment_cancelled(oid, reason="out_of_stock"))
        flow.after = {1: 0} if stock < quantity else {}
    elif world == "late_answer":  # billing heard the deadline cancellation before the order: it says so
        flow.events += [
            ev.shipment_cancelled(oid, reason="deadline_exceeded"),
            ev.payment_failed(oid, reason="order_cancelled"),
        ]
    return flow


def _compensation_reason(flow: Flow, emitted: Sequence[Event], compensation: str) -> None:
    """A release or refund names why the order was cancelled, never a late "order_cancelled" answer."""
    cancelled = [e.data["reason"] for e in flow.events if e.type == catalog.SHIPMENT_CANCELLED]
    for e in emitted:
        if e.type == compensation and flow.world == "late_answer":
            assert e.data["reason"] == cancelled[0], (e.data, cancelled)


def check_inventory(
    flow: Flow,
    *,
    stock: int,
    quantity: int,
    row: Mapping[str, int],
    emitted: Sequence[str],
    events: Sequence[Event] = (),
) -> None:
    assert row["available"] + row["reserved"] + row["shipped"] == stock, row  # conservation
    assert emitted.count(catalog.STOCK_RESERVED) + emitted.count(catalog.STOCK_REJECTED) == 1, emitted  # one answer
    assert emitted.count(catalog.STOCK_RELEASED) <= emitted.count(catalog.STOCK_RESERVED), emitted
    if flow.has(catalog.PAYMENT_FAILED, catalog.SHIPMENT_CANCELLED):
        assert (row["available"], row["reserved"], row["shipped"]) == (stock, 0, 0), row  # net zero
    elif flow.has(catalog.SHIPMENT_DISPATCHED):
        assert (row["reserved"], row["shipped"]) == (0, quantity), row
    _compensation_reason(flow, events, catalog.STOCK_RELEASED)


# -- billing -----------------------------------------------------------------------------------------------------


def billing(world: str, *, customer: str = "alice", amount: int = 1000) -> Flow:
    created = ev.order_created(customer=customer, unit_price=amount)
    oid = created.subject
    flow = Flow(world, oid, [created])
    if world == "stock_rejected":
        flow.events += [ev.stock_rejected(oid), ev.shipment_cancelled(oid, reason="out_of_stock")]
    elif world == "deadline":
        flow.events.append(ev.shipment_cancelled(oid, reason="deadline_exceeded"))
    elif world == "declined":
        flow.events.append(ev.shipment_cancelled(oid, reason="payment_declined"))
        flow.after = {1: 0}  # shipping cancelled for payment only after billing's own PaymentFailed
    elif world == "late_answer":  # inventory heard the deadline cancellation before the order: it says so
        flow.events += [
            ev.shipment_cancelled(oid, reason="deadline_exceeded"),
            ev.stock_rejected(oid, reason="order_cancelled"),
        ]
    return flow


def check_billing(
    flow: Flow, *, balance: int, amount: int, after: int, emitted: Sequence[str], events: Sequence[Event] = ()
) -> None:
    charged, refunded = emitted.count(catalog.PAYMENT_CHARGED), emitted.count(catalog.PAYMENT_REFUNDED)
    assert charged + emitted.count(catalog.PAYMENT_FAILED) == 1, emitted  # exactly one answer
    assert charged <= 1 and refunded <= charged, emitted
    kept = amount * (charged - refunded)
    assert after + kept == balance, (after, kept, balance)  # conservation
    if flow.has(catalog.STOCK_REJECTED, catalog.SHIPMENT_CANCELLED):
        assert kept == 0, emitted  # any cancellation: net zero, whatever arrived first
    _compensation_reason(flow, events, catalog.PAYMENT_REFUNDED)


# -- shipping ----------------------------------------------------------------------------------------------------


def shipping(world: str) -> Flow:
    created = ev.order_created(deadline_s=3600)
    oid = created.subject
    stock_ok = world in ("both_ok", "no_money", "no_money_late_order")
    paid = world in ("both_ok", "no_stock")
    flow = Flow(
        world,
        oid,
        [
            ev.stock_reserved(oid) if stock_ok else ev.stock_rejected(oid),
            ev.payment_charged(oid) if paid else ev.payment_failed(oid),
        ],
    )
    if world != "no_money_late_order":
        flow.events.append(created)
    if not paid:
        # inventory heard of the payment failure first and answers "order_cancelled": no news for the decision
        flow.events.append(ev.stock_rejected(oid, reason="order_cancelled"))
    return flow


def check_shipping(flow: Flow, *, decisions: Sequence[tuple[str, str | None]]) -> None:
    assert len(decisions) == 1, decisions  # exactly one outcome
    (kind, reason), world = decisions[0], flow.world
    if world == "both_ok":
        assert kind == catalog.SHIPMENT_DISPATCHED, decisions
    else:
        assert kind == catalog.SHIPMENT_CANCELLED, decisions
        possible = {"no_stock": {"out_of_stock"}, "nothing": {"out_of_stock", "payment_declined"}}.get(
            world, {"payment_declined"}
        )
        assert reason in possible, (world, decisions)


# -- order -------------------------------------------------------------------------------------------------------


def _refunded(oid: OrderId) -> Event:
    return Event(
        type=catalog.PAYMENT_REFUNDED,
        source="/orderflow/billing",
        subject=oid,
        data={
            "order_id": oid,
            "customer_id": "alice",
            "amount": {"amount_minor": 1000, "currency": "EUR"},
            "reason": "out_of_stock",
        },
    )


def _released(oid: OrderId, reason: str) -> Event:
    return Event(
        type=catalog.STOCK_RELEASED,
        source="/orderflow/inventory",
        subject=oid,
        data={"order_id": oid, "items": [{"sku": "SKU-1", "quantity": 1}], "reason": reason},
    )


def order(world: str, order_id: OrderId | None = None) -> Flow:
    oid = order_id or new_order_id()
    if world == "shipped":
        events = [ev.stock_reserved(oid), ev.payment_charged(oid), ev.shipment_dispatched(oid)]
    elif world == "out_of_stock":
        events = [
            ev.stock_rejected(oid),
            ev.payment_charged(oid),
            ev.shipment_cancelled(oid, reason="out_of_stock"),
            _refunded(oid),
        ]
    elif world == "declined":
        events = [
            ev.stock_reserved(oid),
            ev.payment_failed(oid),
            ev.shipment_cancelled(oid, reason="payment_declined"),
            _released(oid, "payment_declined"),
        ]
    else:  # billing heard of the order only after the cancellation: it answers "order_cancelled"
        events = [
            ev.stock_reserved(oid),
            ev.shipment_cancelled(oid, reason="deadline_exceeded"),
            _released(oid, "deadline_exceeded"),
            ev.payment_failed(oid, reason="order_cancelled"),
        ]
    after = {
        **_after_cause(events, catalog.STOCK_RELEASED, catalog.STOCK_RESERVED),
        **_after_cause(events, catalog.PAYMENT_REFUNDED, catalog.PAYMENT_CHARGED),
    }
    return Flow(world, oid, events, after)


ORDER_REASON = {"out_of_stock": "out_of_stock", "declined": "payment_declined", "deadline": "deadline_exceeded"}


def check_order(flow: Flow, *, row: Mapping[str, Any], timeline: int, compensated: bool | None) -> None:
    assert timeline == len(flow.events), (timeline, flow.events)  # each event on the timeline once
    if flow.world == "shipped":
        assert (row["status"], row["reason"]) == ("SHIPPED", None), row
    else:
        assert (row["status"], row["reason"]) == ("CANCELLED", ORDER_REASON[flow.world]), row
        assert compensated is True, row
