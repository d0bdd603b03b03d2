"""Bad HTTP input is answered 4xx with a message that says what is wrong, and changes nothing."""

from __future__ import annotations

import pytest

from orderflow_dev import client
from orderflow_dev.stack import Stack

GOOD = {"customer_id": "alice", "currency": "EUR", "items": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 5}]}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"currency": "EUR", "items": GOOD["items"]}, 422, "customer_id"),
        ({**GOOD, "items": []}, 422, "body.items"),
        ({**GOOD, "items": [{"sku": "SKU-1", "quantity": 0, "unit_price_minor": 5}]}, 422, "quantity"),
        ({**GOOD, "items": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 1.5}]}, 422, "unit_price_minor"),
        ({**GOOD, "currency": "euro"}, 422, "currency"),
        ({**GOOD, "colour": "red"}, 422, "colour"),
        ({**GOOD, "items": GOOD["items"] * 2}, 422, "SKU may appear once"),
        ({**GOOD, "deadline_seconds": -1}, 422, "deadline_seconds"),
        ([1, 2], 422, "object"),
    ],
)
def test_invalid_orders_are_rejected_with_the_field_named(
    stack: Stack, body: object, status: int, fragment: str
) -> None:
    code, answer = client.call("POST", f"{stack.url('order')}/orders", body)
    assert code == status, answer
    assert fragment in answer["error"] or fragment in str(answer.get("details")), answer
    assert client.ok("GET", f"{stack.url('order')}/orders")["orders"] == 0


def test_malformed_requests(stack: Stack) -> None:
    order = stack.url("order")
    code, answer = client.call(
        "POST", f"{order}/orders", raw=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert code == 400 and "not valid JSON" in answer["error"]
    code, answer = client.call("POST", f"{order}/orders", raw=b"customer=alice", headers={"Content-Type": "text/plain"})
    assert code == 415 and "Content-Type: application/json" in answer["error"]
    code, answer = client.call("GET", f"{order}/orders/not-an-id")
    assert code == 400 and "not a valid order id" in answer["error"]
    code, answer = client.call("GET", f"{order}/orders/ord_{'0' * 32}")
    assert code == 404 and "no order" in answer["error"]
    code, answer = client.call("DELETE", f"{order}/orders")
    assert code == 405 and "GET" in answer["error"] and "POST" in answer["error"]
    code, answer = client.call("GET", f"{order}/nothing-here")
    assert code == 404
    code, answer = client.call("GET", f"{order}/flow?stuck_after_seconds=soon")
    assert code == 400 and "stuck_after_seconds" in answer["error"]


def test_bad_stock_and_account_writes(stack: Stack) -> None:
    inventory, billing = stack.url("inventory"), stack.url("billing")
    assert client.call("PUT", f"{inventory}/stock/SKU-1", {"available": -1})[0] == 422
    assert client.call("PUT", f"{inventory}/stock/SKU-1", {"available": "ten"})[0] == 422
    assert client.call("PUT", f"{inventory}/stock/bad%20sku", {"available": 1})[0] == 400
    code, answer = client.call("GET", f"{inventory}/stock/SKU-404")
    assert code == 404 and "PUT /stock/SKU-404" in answer["error"]
    assert client.call("PUT", f"{billing}/accounts/alice", {"balance_minor": 10.5, "currency": "EUR"})[0] == 422
    code, answer = client.call("PUT", f"{billing}/accounts/alice", {"balance_minor": 10, "currency": "eur"})
    assert code == 422 and "currency" in answer["error"]
    assert client.call("GET", f"{billing}/accounts/alice")[0] == 404  # nothing was written
    assert client.call("GET", f"{billing}/payments/ord_{'1' * 32}")[0] == 404
    assert client.call("GET", f"{stack.url('shipping')}/shipments/nope")[0] == 400


def test_idempotency_key_returns_the_same_order_and_refuses_a_different_body(stack: Stack) -> None:
    order = stack.url("order")
    first = client.call("POST", f"{order}/orders", GOOD, headers={"Idempotency-Key": "k-1"})
    again = client.call("POST", f"{order}/orders", GOOD, headers={"Idempotency-Key": "k-1"})
    assert first[0] == 201 and again[0] == 200
    assert first[1]["order_id"] == again[1]["order_id"]
    other = client.call("POST", f"{order}/orders", {**GOOD, "customer_id": "bob"}, headers={"Idempotency-Key": "k-1"})
    assert other[0] == 422 and "different request" in other[1]["error"]
    assert client.ok("GET", f"{order}/orders")["orders"] == 1
