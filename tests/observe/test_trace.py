"""``orderflow trace``: an order's whole story from the real topics and APIs, and where a stuck order waits."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orderflow.events import catalog
from orderflow_dev import topics as kafka
from orderflow_dev.stack import Stack
from orderflow_dev.wait import until
from tests.observe import cli

pytestmark = pytest.mark.kafka

LINE = [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 500}]
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_shipped_order_tells_its_whole_story(stack: Stack, kafka_bootstrap: str) -> None:
    stack.put_stock("SKU-1", 10)
    stack.put_account("alice", 10_000)
    order = stack.place_order("alice", LINE, headers={"traceparent": TRACEPARENT})
    order_id = order["order_id"]
    stack.wait_terminal([order_id])
    # A redelivery: the very same OrderCreated published again (as an outbox relay does after a crash).
    created = next(m for m in kafka.read_all(kafka_bootstrap, f"{stack.prefix}.orders", at_least=1)
                   if m.key == order_id.encode())
    kafka.publish(kafka_bootstrap, [(created.topic, created.key, created.value, list(created.headers.items()))])

    story = cli.json_of(stack, "trace", order_id, bootstrap=kafka_bootstrap)

    names = [e["name"] for e in story["events"]]
    assert names[0] == "OrderCreated" and names[-1] == "ShipmentDispatched"
    assert sorted(names) == sorted(["OrderCreated", "StockReserved", "PaymentCharged", "ShipmentDispatched"])
    by_name = {e["name"]: e for e in story["events"]}
    assert by_name["OrderCreated"]["duplicates"] == 1
    assert by_name["OrderCreated"]["offset"] == created.offset
    assert by_name["OrderCreated"]["duplicate_offsets"][0] > created.offset
    for event in story["events"]:
        assert event["producer"] == catalog.get(event["type"]).producer
        assert event["topic"] == catalog.get(event["type"]).topic(stack.prefix)
        assert event["id"] and event["position"].startswith(event["topic"])
    assert story["events"][0]["delay_ms"] is None
    assert all(e["delay_ms"] >= 0 for e in story["events"][1:])
    assert story["trace_ids"] == ["4bf92f3577b34da6a3ce929d0e0e4736"]
    assert story["status"] == "SHIPPED" and story["terminal"] and story["waits"] == []
    assert story["views"]["inventory"]["body"]["state"] == "SHIPPED"
    assert story["views"]["billing"]["body"]["state"] == "CHARGED"
    assert story["views"]["shipping"]["body"]["outcome"] == "DISPATCHED"
    assert story["dead_letters"] == []

    table = cli.run(stack, "trace", order_id, bootstrap=kafka_bootstrap)
    assert table.returncode == 0, table.stderr
    for fragment in ("SHIPPED", "OrderCreated", "ShipmentDispatched", "4bf92f3577b34da6a3ce929d0e0e4736",
                     "settled: nothing is waiting", "reservation SHIPPED", "payment CHARGED"):
        assert fragment in table.stdout, (fragment, table.stdout)


def test_a_stuck_order_names_the_stage_and_the_missing_event(
    make_stack: Callable[..., Stack], kafka_bootstrap: str
) -> None:
    stack = make_stack()
    stack.put_stock("SKU-1", 10)
    stack.put_account("alice", 10_000)
    stack["billing"].terminate()
    order_id = stack.place_order("alice", LINE, deadline_seconds=600)["order_id"]
    until(lambda: (stack["shipping"].find(f"/shipments/{order_id}") or {}).get("stock") == "RESERVED",
          timeout=30, what="shipping to hear StockReserved")

    story = cli.json_of(stack, "trace", order_id, bootstrap=kafka_bootstrap)

    assert story["status"] == "PENDING" and not story["terminal"]
    waits = {w["service"]: w for w in story["waits"]}
    assert set(waits) == {"billing", "shipping"}, story["waiting"]
    assert waits["billing"]["waits_for"] == ["PaymentCharged", "PaymentFailed"]
    assert "billing has not seen OrderCreated" in waits["billing"]["because"]
    assert waits["billing"]["lag"] >= 1
    assert waits["shipping"]["has"] == ["OrderCreated", "StockReserved"]
    assert waits["shipping"]["waits_for"] == ["PaymentCharged", "PaymentFailed"]
    assert story["views"]["billing"]["error"]  # billing is down: its API does not answer either
    table = cli.run(stack, "trace", order_id, bootstrap=kafka_bootstrap)
    assert "shipping has OrderCreated, StockReserved, waits for PaymentCharged or PaymentFailed" in table.stdout
    assert "billing waits for PaymentCharged or PaymentFailed: billing has not seen OrderCreated" in table.stdout

    stack["billing"].start()  # billing is back: it catches up and the order ships
    stack.wait_terminal([order_id])
    after = cli.json_of(stack, "trace", order_id, bootstrap=kafka_bootstrap)
    assert after["status"] == "SHIPPED" and after["waits"] == []


def test_an_unknown_order_and_a_malformed_id(stack: Stack, kafka_bootstrap: str) -> None:
    story = cli.json_of(stack, "trace", "ord_" + "0" * 32, bootstrap=kafka_bootstrap)
    assert story["events"] == [] and story["status"] is None
    assert story["waiting"] == ["order knows no such order, and no topic holds an event of it"]
    bad = cli.run(stack, "trace", "order-1", bootstrap=kafka_bootstrap)
    assert bad.returncode == 2 and "is not an order id" in bad.stderr
