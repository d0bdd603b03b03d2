"""Bad HTTP input is answered 4xx with a message that says what is wrong, and changes nothing.

Request validation belongs to the routes and endpoints, so it is tested in-process (``orderflow_dev.inprocess``:
each service's real router on its own SQLite file), without service processes or a broker.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from orderflow.events import catalog
from orderflow_dev.inprocess import App


@pytest.fixture
def api(tmp_path: Path) -> Iterator[dict[str, App]]:
    """The four services' HTTP APIs, in-process, each on a fresh database."""
    apps = {s: App(importlib.import_module(f"orderflow.{s}").definition, directory=tmp_path / s)
            for s in catalog.SERVICES}
    yield apps
    for app in apps.values():
        app.close()


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
    api: dict[str, App], body: object, status: int, fragment: str
) -> None:
    code, answer = api["order"].call("POST", "/orders", body)
    assert code == status, answer
    assert fragment in answer["error"] or fragment in str(answer.get("details")), answer
    assert api["order"].ok("GET", "/orders")["orders"] == 0


def test_malformed_requests(api: dict[str, App]) -> None:
    order = api["order"]
    code, answer = order.call("POST", "/orders", raw=b"{not json", headers={"Content-Type": "application/json"})
    assert code == 400 and "not valid JSON" in answer["error"]
    code, answer = order.call("POST", "/orders", raw=b"customer=alice", headers={"Content-Type": "text/plain"})
    assert code == 415 and "Content-Type: application/json" in answer["error"]
    code, answer = order.call("GET", "/orders/not-an-id")
    assert code == 400 and "not a valid order id" in answer["error"]
    code, answer = order.call("GET", f"/orders/ord_{'0' * 32}")
    assert code == 404 and "no order" in answer["error"]
    code, answer = order.call("DELETE", "/orders")
    assert code == 405 and "GET" in answer["error"] and "POST" in answer["error"]
    code, answer = order.call("GET", "/nothing-here")
    assert code == 404
    code, answer = order.call("GET", "/flow?stuck_after_seconds=soon")
    assert code == 400 and "stuck_after_seconds" in answer["error"]


def test_bad_stock_and_account_writes(api: dict[str, App]) -> None:
    inventory, billing = api["inventory"], api["billing"]
    assert inventory.call("PUT", "/stock/SKU-1", {"available": -1})[0] == 422
    assert inventory.call("PUT", "/stock/SKU-1", {"available": "ten"})[0] == 422
    assert inventory.call("PUT", "/stock/bad%20sku", {"available": 1})[0] == 400
    code, answer = inventory.call("GET", "/stock/SKU-404")
    assert code == 404 and "PUT /stock/SKU-404" in answer["error"]
    assert billing.call("PUT", "/accounts/alice", {"balance_minor": 10.5, "currency": "EUR"})[0] == 422
    code, answer = billing.call("PUT", "/accounts/alice", {"balance_minor": 10, "currency": "eur"})
    assert code == 422 and "currency" in answer["error"]
    assert billing.call("GET", "/accounts/alice")[0] == 404  # nothing was written
    assert billing.call("GET", f"/payments/ord_{'1' * 32}")[0] == 404
    assert api["shipping"].call("GET", "/shipments/nope")[0] == 400


def test_idempotency_key_returns_the_same_order_and_refuses_a_different_body(api: dict[str, App]) -> None:
    order = api["order"]
    first = order.call("POST", "/orders", GOOD, headers={"Idempotency-Key": "k-1"})
    again = order.call("POST", "/orders", GOOD, headers={"Idempotency-Key": "k-1"})
    assert first[0] == 201 and again[0] == 200
    assert first[1]["order_id"] == again[1]["order_id"]
    other = order.call("POST", "/orders", {**GOOD, "customer_id": "bob"}, headers={"Idempotency-Key": "k-1"})
    assert other[0] == 422 and "different request" in other[1]["error"]
    assert order.ok("GET", "/orders")["orders"] == 1
