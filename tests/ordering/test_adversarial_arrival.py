"""Adversarial arrival orders on the real broker: a flow's events published straight to the topics, one by one,
each flow in its own random (causally possible) order, to one service running alone.

Publishing round by round — the k-th event of every flow, then waiting until the service has consumed and
committed it — pins the exact arrival order per flow across topics (e.g. billing hearing StockRejected before
OrderCreated, which Kafka alone would make rare). The checks are the ones the hypothesis tests use.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from orderflow.events import Event, catalog
from orderflow_dev import topics as kafka
from orderflow_dev.stack import Stack
from tests.support import worlds

pytestmark = pytest.mark.kafka

PER_WORLD = 4


def _publish_in_rounds(bootstrap: str, prefix: str, service: str, arrivals: list[list[Event]]) -> None:
    group, topics = f"{prefix}-{service}", catalog.topics_consumed_by(service, prefix)
    for k in range(max(len(a) for a in arrivals)):
        kafka.publish_events(bootstrap, prefix, [a[k] for a in arrivals if len(a) > k])
        kafka.wait_caught_up(bootstrap, group, topics)


def _emitted(bootstrap: str, topic: str) -> dict[str, list[Event]]:
    by_order: dict[str, list[Event]] = {}
    for event in kafka.events_of(kafka.read_all(bootstrap, topic)):
        by_order.setdefault(event.subject, []).append(event)
    return by_order


@pytest.fixture
def rng() -> random.Random:
    return random.Random(20261125)


def test_billing(
    make_stack: Callable[..., Stack], kafka_bootstrap: str, unique_prefix: str, rng: random.Random
) -> None:
    stack = make_stack(services=["billing"])
    flows = []
    for world in worlds.BILLING:
        for i in range(PER_WORLD):
            customer = f"{world}-{i}"
            stack.put_account(customer, 500 if world == "declined" else 1500)
            flows.append(worlds.billing(world, customer=customer, amount=1000))
    _publish_in_rounds(kafka_bootstrap, unique_prefix, "billing", [f.shuffled(rng) for f in flows])

    emitted = _emitted(kafka_bootstrap, f"{unique_prefix}.payments")
    for flow in flows:
        customer = flow.events[0].data["customer_id"]
        worlds.check_billing(
            flow,
            balance=500 if flow.world == "declined" else 1500,
            amount=1000,
            after=stack["billing"].get(f"/accounts/{customer}")["balance_minor"],
            emitted=[e.type for e in emitted.get(flow.order_id, [])],
            events=emitted.get(flow.order_id, []),
        )


def test_inventory(
    make_stack: Callable[..., Stack], kafka_bootstrap: str, unique_prefix: str, rng: random.Random
) -> None:
    stack = make_stack(services=["inventory"])
    flows, stock = [], {}
    for world in worlds.INVENTORY:
        for i in range(PER_WORLD):
            sku = f"{world.upper()}-{i}"
            stock[sku] = 1 if world == "out_of_stock" else 4
            stack.put_stock(sku, stock[sku])
            flows.append(worlds.inventory(world, sku=sku, quantity=2, stock=stock[sku]))
    _publish_in_rounds(kafka_bootstrap, unique_prefix, "inventory", [f.shuffled(rng) for f in flows])

    emitted = _emitted(kafka_bootstrap, f"{unique_prefix}.inventory")
    for flow in flows:
        sku = flow.events[0].data["items"][0]["sku"]
        worlds.check_inventory(
            flow,
            stock=stock[sku],
            quantity=2,
            row=stack["inventory"].get(f"/stock/{sku}"),
            emitted=[e.type for e in emitted.get(flow.order_id, [])],
            events=emitted.get(flow.order_id, []),
        )


def test_shipping(
    make_stack: Callable[..., Stack], kafka_bootstrap: str, unique_prefix: str, rng: random.Random
) -> None:
    make_stack(services=["shipping"])
    flows = [worlds.shipping(world) for world in worlds.SHIPPING for _ in range(PER_WORLD)]
    _publish_in_rounds(kafka_bootstrap, unique_prefix, "shipping", [f.shuffled(rng) for f in flows])

    emitted = _emitted(kafka_bootstrap, f"{unique_prefix}.shipments")
    for flow in flows:
        decisions = [(e.type, e.data.get("reason")) for e in emitted.get(flow.order_id, [])]
        worlds.check_shipping(flow, decisions=decisions)


def test_order(make_stack: Callable[..., Stack], kafka_bootstrap: str, unique_prefix: str, rng: random.Random) -> None:
    stack = make_stack(services=["order"])
    flows = []
    for world in worlds.ORDER:
        for _ in range(PER_WORLD):
            placed = stack.place_order("alice", [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 1000}])
            flows.append(worlds.order(world, order_id=placed["order_id"]))
    _publish_in_rounds(kafka_bootstrap, unique_prefix, "order", [f.shuffled(rng) for f in flows])

    for flow in flows:
        seen = stack.order(flow.order_id)
        worlds.check_order(
            flow,
            row=seen,
            timeline=len(seen["timeline"]) - 1,  # minus its own OrderCreated
            compensated=seen["compensated"],
        )
