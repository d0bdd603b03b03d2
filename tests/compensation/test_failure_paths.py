"""Every failure path and its compensation, against the real broker: nothing compensated twice, nothing kept."""

from __future__ import annotations

import pytest

from orderflow_dev.stack import Stack
from tests.support import invariants

pytestmark = pytest.mark.kafka


def test_every_failure_path_compensates_exactly_what_was_taken(stack: Stack) -> None:
    stack.put_stock("SKU-1", 3)
    stack.put_stock("SKU-2", 100)
    stack.put_account("rich", 1_000_000)
    stack.put_account("poor", 10)
    line = {"quantity": 2, "unit_price_minor": 1000}
    placed = {
        "ships": stack.place_order("rich", [{"sku": "SKU-2", **line}]),
        "out_of_stock_refund": stack.place_order("rich", [{"sku": "SKU-1", "quantity": 5, "unit_price_minor": 10}]),
        "declined_release": stack.place_order("poor", [{"sku": "SKU-2", **line}]),
        "both_fail": stack.place_order("poor", [{"sku": "SKU-1", "quantity": 50, "unit_price_minor": 10}]),
        "multi_line_partial_stock": stack.place_order(
            "rich",
            [
                {"sku": "SKU-2", "quantity": 1, "unit_price_minor": 5},
                {"sku": "SKU-1", "quantity": 4, "unit_price_minor": 5},
            ],
        ),
    }
    ids = {k: v["order_id"] for k, v in placed.items()}
    orders = invariants.settle(stack, ids.values())
    by_name = {k: orders[i] for k, i in ids.items()}

    assert by_name["ships"]["status"] == "SHIPPED"
    assert by_name["out_of_stock_refund"]["reason"] == "out_of_stock"
    assert by_name["declined_release"]["reason"] == "payment_declined"
    assert by_name["both_fail"]["reason"] in ("out_of_stock", "payment_declined")
    assert by_name["multi_line_partial_stock"]["reason"] == "out_of_stock"
    # all or nothing: the SKU-2 line of the partial order was never taken, or was given back
    assert stack["inventory"].get(f"/reservations/{ids['multi_line_partial_stock']}")["state"] == "REJECTED"
    # What was taken was given back, once; what was never taken (the cancellation won the race) needs nothing.
    timelines = {k: [e["name"] for e in stack.order(i)["timeline"]] for k, i in ids.items()}
    for name in ("out_of_stock_refund", "declined_release", "both_fail", "multi_line_partial_stock"):
        names = timelines[name]
        assert names.count("PaymentRefunded") == names.count("PaymentCharged") <= 1, (name, names)
        assert names.count("StockReleased") == names.count("StockReserved") <= 1, (name, names)
        assert by_name[name]["compensated"] is True
    assert timelines["ships"].count("PaymentCharged") == timelines["ships"].count("StockReserved") == 1
    both = stack.order(ids["both_fail"])
    assert both["stock"] in ("NONE", "REJECTED") and both["payment"] in ("NONE", "FAILED")  # nothing to undo
    invariants.check(
        stack,
        {i: stack.order(i) for i in ids.values()},
        initial_stock={"SKU-1": 3, "SKU-2": 100},
        initial_balance={"rich": 1_000_000, "poor": 10},
    )
