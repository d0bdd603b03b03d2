"""The design brief's invariants, checked against what the four services say over HTTP (tests, chaos benchmark).

- every accepted order reaches exactly one terminal status (SHIPPED, or CANCELLED with a known reason);
- a shipped order took its stock once and its payment once, with no refund;
- a cancelled order has net stock change 0 and net charge 0, and no shipment;
- conservation: per SKU, initial = available + reserved + shipped; per customer, initial = balance + charges kept.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from orderflow_dev.stack import Stack
from orderflow_dev.wait import Timeout, until

REASONS = {"out_of_stock", "payment_declined", "deadline_exceeded"}


def settle(stack: Stack, order_ids: Iterable[str], *, timeout: float = 120) -> dict[str, dict[str, Any]]:
    """Wait until every order is terminal and every cancelled one is compensated; return the orders."""
    ids = list(order_ids)
    orders = stack.wait_terminal(ids, timeout=timeout)

    def compensated() -> bool:
        try:
            for order_id, order in orders.items():
                if order["status"] == "CANCELLED" and not order["compensated"]:
                    orders[order_id] = stack.order(order_id)
        except OSError:
            return False  # the order service is restarting; ask again
        return all(o["compensated"] for o in orders.values() if o["status"] == "CANCELLED")

    until(compensated, timeout=timeout, what="every cancelled order to be compensated", interval=0.2)
    return orders


def _check_order(stack: Stack, order_id: str, order: Mapping[str, Any]) -> None:
    """One order's invariants as the four services report them (raises AssertionError)."""
    status, reason = order["status"], order["reason"]
    assert status in ("SHIPPED", "CANCELLED"), (order_id, status)
    shipment = stack["shipping"].get(f"/shipments/{order_id}")
    payment = stack["billing"].find(f"/payments/{order_id}")
    reservation = stack["inventory"].find(f"/reservations/{order_id}")
    if status == "SHIPPED":
        assert reason is None
        assert shipment["outcome"] == "DISPATCHED", (order_id, shipment)
        assert payment is not None and payment["state"] == "CHARGED", (order_id, payment)
        assert reservation is not None and reservation["state"] == "SHIPPED", (order_id, reservation)
    else:
        assert reason in REASONS, (order_id, reason)
        assert shipment["outcome"] == "CANCELLED" and shipment["reason"] == reason, (order_id, shipment)
        # settled: both have answered, and given back whatever they had taken
        assert payment is not None and payment["state"] in ("FAILED", "REFUNDED"), (order_id, payment)
        assert reservation is not None and reservation["state"] in ("REJECTED", "RELEASED"), (order_id, reservation)


def _eventually(check: Callable[[], None], *, timeout: float) -> None:
    """Wait until ``check`` passes; after ``timeout`` its own AssertionError says what never became true.

    The services converge asynchronously (inventory may still be moving a shipped order's units from reserved to
    shipped when the order service already says SHIPPED, e.g. right after a crash); an invariant is about the
    settled state.
    """

    def passes() -> bool:
        try:
            check()
        except (AssertionError, OSError):
            return False
        return True

    try:
        until(passes, timeout=timeout, what="the invariant", interval=0.2)
    except Timeout:
        check()


def check(
    stack: Stack,
    orders: Mapping[str, Mapping[str, Any]],
    *,
    initial_stock: Mapping[str, int],
    initial_balance: Mapping[str, int],
    timeout: float = 60,
) -> Counter[str]:
    """Assert every invariant (waiting for in-flight effects to land); return outcome counts."""
    outcomes: Counter[str] = Counter()
    shipped_units: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    for order_id, order in orders.items():
        _eventually(
            functools.partial(_check_order, stack, order_id, order), timeout=max(1.0, deadline - time.monotonic())
        )
        if order["status"] == "SHIPPED":
            for line in order["items"]:
                shipped_units[line["sku"]] += line["quantity"]
            kept[order["customer_id"]] += order["total"]["amount_minor"]
            outcomes["SHIPPED"] += 1
        else:
            outcomes[f"CANCELLED/{order['reason']}"] += 1

    def conserved() -> bool:
        for sku, initial in initial_stock.items():
            s = stack["inventory"].get(f"/stock/{sku}")
            if (s["available"] + s["reserved"] + s["shipped"], s["reserved"], s["shipped"]) != (
                initial,
                0,
                shipped_units[sku],
            ):
                return False
        for customer, initial in initial_balance.items():
            if stack["billing"].get(f"/accounts/{customer}")["balance_minor"] + kept[customer] != initial:
                return False
        return True

    try:
        until(conserved, timeout=timeout, what="stock and money to be conserved", interval=0.2)
    except AssertionError:
        stock = {sku: stack["inventory"].get(f"/stock/{sku}") for sku in initial_stock}
        money = {c: stack["billing"].get(f"/accounts/{c}") for c in initial_balance}
        raise AssertionError(
            f"conservation broken: stock={stock} shipped={dict(shipped_units)} "
            f"balances={money} kept={dict(kept)} initial={dict(initial_stock)}/{dict(initial_balance)}"
        ) from None
    return outcomes
