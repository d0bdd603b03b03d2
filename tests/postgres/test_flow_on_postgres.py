"""The saga on PostgreSQL, the database Kubernetes runs: one good order ships, both direct failures compensate.

The same outcomes the SQLite suite checks (tests/flow), on real PostgreSQL databases, one per service.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orderflow_dev.stack import Stack
from tests.support import invariants

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]

LINE = {"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1250}


def test_good_order_ships_and_both_failures_compensate(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(database="postgres")
    for service in stack.services.values():
        assert service.env["ORDERFLOW_DATABASE_URL"].startswith("postgresql://"), service.name
    stack.put_stock("SKU-1", 3)
    stack.put_stock("SKU-2", 10)
    stack.put_stock("SKU-3", 1)
    stack.put_account("alice", 10_000)
    stack.put_account("bob", 100)

    good = stack.place_order("alice", [LINE])["order_id"]
    # Two units of a SKU with one in stock: rejected, and alice's charge (if it came first) refunded.
    no_stock = stack.place_order("alice", [{**LINE, "sku": "SKU-3"}])["order_id"]
    declined = stack.place_order("bob", [{"sku": "SKU-2", "quantity": 1, "unit_price_minor": 999}])["order_id"]
    orders = invariants.settle(stack, [good, no_stock, declined], timeout=60)

    assert (orders[good]["status"], orders[good]["reason"]) == ("SHIPPED", None)
    assert (orders[no_stock]["status"], orders[no_stock]["reason"]) == ("CANCELLED", "out_of_stock")
    assert (orders[declined]["status"], orders[declined]["reason"]) == ("CANCELLED", "payment_declined")
    outcomes = invariants.check(
        stack,
        orders,
        initial_stock={"SKU-1": 3, "SKU-2": 10, "SKU-3": 1},
        initial_balance={"alice": 10_000, "bob": 100},
    )
    assert outcomes == {"SHIPPED": 1, "CANCELLED/out_of_stock": 1, "CANCELLED/payment_declined": 1}
    assert stack["inventory"].get("/stock/SKU-1") == {"sku": "SKU-1", "available": 1, "reserved": 0, "shipped": 2}
    assert stack["billing"].get("/accounts/alice")["balance_minor"] == 10_000 - 2500
    assert stack["billing"].get(f"/payments/{no_stock}")["state"] in ("REFUNDED", "FAILED")
    assert stack["inventory"].get(f"/reservations/{declined}")["state"] in ("RELEASED", "REJECTED")
    names = [step["name"] for step in stack.order(good)["timeline"]]
    assert names[0] == "OrderCreated" and names[-1] == "ShipmentDispatched"
