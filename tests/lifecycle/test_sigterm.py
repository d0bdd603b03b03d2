"""SIGTERM loses nothing: a service finishes its batch, commits, relays its outbox and exits 0."""

from __future__ import annotations

import threading

import pytest

from orderflow_dev.stack import Stack
from orderflow_dev.wait import until
from tests.support import invariants

pytestmark = pytest.mark.kafka


def test_sigterm_mid_flow_loses_nothing(stack: Stack) -> None:
    skus = {"SKU-1": 60, "SKU-2": 40}
    balances = {"alice": 400_000, "bob": 3_000}
    for sku, n in skus.items():
        stack.put_stock(sku, n)
    for customer, n in balances.items():
        stack.put_account(customer, n)

    order_ids: list[str] = []

    def place(count: int) -> None:
        for i in range(count):
            customer = "bob" if i % 5 == 0 else "alice"
            sku = "SKU-1" if i % 2 else "SKU-2"
            order_ids.append(
                stack.place_order(customer, [{"sku": sku, "quantity": 1 + i % 3, "unit_price_minor": 1000}])["order_id"]
            )

    placing = threading.Thread(target=place, args=(120,))
    placing.start()
    until(lambda: len(order_ids) >= 30, timeout=30, what="orders in flight")
    for name in ("inventory", "billing", "shipping"):
        assert stack[name].terminate() == 0, stack[name].log_tail()
        assert f'"{name} stopped"' in stack[name].log_tail(5)
        stack[name].start()
        stack[name].wait_ready()
    placing.join(60)
    assert len(order_ids) == 120

    orders = invariants.settle(stack, order_ids)
    outcomes = invariants.check(stack, orders, initial_stock=skus, initial_balance=balances)
    assert outcomes["SHIPPED"] > 0 and sum(outcomes.values()) == 120
