"""The saga end to end on a real broker: one good order ships, the two direct failures cancel and compensate."""

from __future__ import annotations

import pytest

from orderflow_dev.stack import Stack
from orderflow_dev.wait import until

pytestmark = pytest.mark.kafka

LINE = {"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1250}


def _types(order: dict) -> list[str]:
    return [e["name"] for e in order["timeline"]]


def test_a_good_order_ships_taking_stock_and_money_once(stack: Stack) -> None:
    stack.put_stock("SKU-1", 10)
    stack.put_account("alice", 10_000)

    placed = stack.place_order("alice", [LINE])
    assert placed["status"] == "PENDING"
    order = stack.wait_terminal([placed["order_id"]])[placed["order_id"]]

    assert order["status"] == "SHIPPED" and order["reason"] is None
    assert stack["inventory"].get("/stock/SKU-1") == {"sku": "SKU-1", "available": 8, "reserved": 0, "shipped": 2}
    assert stack["billing"].get("/accounts/alice")["balance_minor"] == 10_000 - 2500
    assert stack["billing"].get(f"/payments/{order['order_id']}")["state"] == "CHARGED"
    assert stack["shipping"].get(f"/shipments/{order['order_id']}")["outcome"] == "DISPATCHED"
    assert _types(order)[0] == "OrderCreated" and _types(order)[-1] == "ShipmentDispatched"
    assert {"StockReserved", "PaymentCharged"} <= set(_types(order))
    assert order["total"] == {"amount_minor": 2500, "currency": "EUR"}


def test_out_of_stock_cancels_and_refunds_the_charge(stack: Stack) -> None:
    stack.put_stock("SKU-1", 1)
    stack.put_account("alice", 10_000)

    placed = stack.place_order("alice", [LINE])
    order = stack.wait_terminal([placed["order_id"]])[placed["order_id"]]

    assert (order["status"], order["reason"]) == ("CANCELLED", "out_of_stock")
    compensated = until(
        lambda: (o := stack.order(placed["order_id"]))["compensated"] and o, timeout=30, what="the refund"
    )
    assert stack["billing"].get("/accounts/alice")["balance_minor"] == 10_000
    assert stack["inventory"].get("/stock/SKU-1") == {"sku": "SKU-1", "available": 1, "reserved": 0, "shipped": 0}
    payment = stack["billing"].get(f"/payments/{placed['order_id']}")
    # charged then refunded, or never charged because the rejection reached billing first
    assert (payment["state"], payment["reason"]) in (("REFUNDED", "out_of_stock"), ("FAILED", "order_cancelled"))
    assert "StockRejected" in _types(compensated)


def test_payment_declined_cancels_and_releases_the_stock(stack: Stack) -> None:
    stack.put_stock("SKU-1", 10)
    stack.put_account("bob", 100)

    placed = stack.place_order("bob", [LINE])
    order = stack.wait_terminal([placed["order_id"]])[placed["order_id"]]

    assert (order["status"], order["reason"]) == ("CANCELLED", "payment_declined")
    until(lambda: stack.order(placed["order_id"])["compensated"], timeout=30, what="the stock release")
    until(lambda: stack["inventory"].get("/stock/SKU-1")["available"] == 10, timeout=30, what="stock back")
    assert stack["inventory"].get("/stock/SKU-1") == {"sku": "SKU-1", "available": 10, "reserved": 0, "shipped": 0}
    assert stack["billing"].get("/accounts/bob")["balance_minor"] == 100
    assert "PaymentFailed" in _types(stack.order(placed["order_id"]))


def test_an_unknown_account_or_sku_is_a_clean_cancellation(stack: Stack) -> None:
    stack.put_stock("SKU-1", 10)
    stack.put_account("carol", 10_000)
    nobody = stack.place_order("nobody", [LINE])
    ghost = stack.place_order("carol", [{"sku": "NO-SUCH-SKU", "quantity": 1, "unit_price_minor": 5}])

    done = stack.wait_terminal([nobody["order_id"], ghost["order_id"]])

    assert done[nobody["order_id"]]["reason"] == "payment_declined"
    assert done[ghost["order_id"]]["reason"] == "out_of_stock"
    until(lambda: stack["billing"].get("/accounts/carol")["balance_minor"] == 10_000, timeout=30, what="refund")
