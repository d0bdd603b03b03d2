"""Nothing waits forever: an order not shipped by its deadline is cancelled and compensated, exactly once."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from orderflow.events import catalog
from orderflow_dev import topics as kafka
from orderflow_dev.stack import Stack
from tests.support import invariants

pytestmark = pytest.mark.kafka


def test_deadline_with_billing_stopped_cancels_and_compensates(make_stack: Callable[..., Stack]) -> None:
    """Billing is down, so no order can complete: shipping gives up at the deadline, inventory releases; billing,
    restarted afterwards, reads OrderCreated and ShipmentCancelled in whatever order and keeps nothing."""
    stack = make_stack()
    stack.put_stock("SKU-1", 20)
    stack.put_account("alice", 50_000)
    assert stack["billing"].terminate() == 0
    ids = [
        stack.place_order("alice", [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 700}], deadline_seconds=1.5)[
            "order_id"
        ]
        for _ in range(5)
    ]

    orders = stack.wait_terminal(ids, timeout=30)
    assert {(o["status"], o["reason"]) for o in orders.values()} == {("CANCELLED", "deadline_exceeded")}
    stack["billing"].start()
    stack["billing"].wait_ready()

    orders = invariants.settle(stack, ids)
    invariants.check(stack, orders, initial_stock={"SKU-1": 20}, initial_balance={"alice": 50_000})
    assert all(o["stock"] == "RELEASED" for o in orders.values())


def test_deadline_racing_the_last_success_has_one_winner(
    stack: Stack, kafka_bootstrap: str, unique_prefix: str
) -> None:
    """Deadlines that expire while the flow is completing: each order ships or cancels, never both."""
    stack.put_stock("SKU-1", 10_000)
    stack.put_account("alice", 10_000_000)
    rng = random.Random(11)
    ids = [
        stack.place_order(
            "alice",
            [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 100}],
            deadline_seconds=rng.choice([0.02, 0.05, 0.1, 0.2, 0.4, 5]),
        )["order_id"]
        for _ in range(150)
    ]

    orders = invariants.settle(stack, ids)
    outcomes = invariants.check(stack, orders, initial_stock={"SKU-1": 10_000}, initial_balance={"alice": 10_000_000})
    assert outcomes["SHIPPED"] > 0 and outcomes["CANCELLED/deadline_exceeded"] > 0, outcomes
    decisions = kafka.read_all(kafka_bootstrap, f"{unique_prefix}.shipments", at_least=len(ids))
    per_order = Counter(
        r.event().subject for r in decisions if r.type in (catalog.SHIPMENT_DISPATCHED, catalog.SHIPMENT_CANCELLED)
    )
    assert set(per_order) == set(ids) and set(per_order.values()) == {1}
