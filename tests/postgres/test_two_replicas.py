"""Two replicas of every consumer service at once, on one PostgreSQL database per service, under concurrent load.

This is what the operator does when it scales a stage to two: both processes are in the same consumer group, split
the partitions, and race each other on the same rows (the scarce SKU, the tight account, one order's events that
arrive on different topics and so at different replicas). Every invariant must still hold: no SKU oversold, no
order charged twice, every order terminal exactly once, stock and money conserved.
"""

from __future__ import annotations

import random
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orderflow.events import catalog
from orderflow_dev import client
from orderflow_dev.stack import ServiceProcess, Stack
from orderflow_dev.topics import read_all
from orderflow_dev.wait import until
from tests.support import invariants

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]

RARE, RARE_STOCK = "SKU-RARE", 8
PLENTY = {"SKU-1": 10_000, "SKU-2": 10_000}
RICH = [f"rich-{i}" for i in range(6)]
RICH_BALANCE = 10_000_000
TIGHT, TIGHT_PRICE, TIGHT_AFFORDS = "tight", 1_000, 5  # the account covers exactly 5 of its orders
BROKE = "broke"

CONSUMED = re.compile(r"^orderflow_events_consumed_total\{[^}]*\} (\d+(?:\.\d+)?)", re.MULTILINE)


def _mix(rng: random.Random) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = []
    # 30 orders race for 8 units of one SKU (every customer can pay): exactly 8 may ship.
    orders += [
        {"customer_id": rng.choice(RICH), "items": [{"sku": RARE, "quantity": 1, "unit_price_minor": 500}]}
        for _ in range(30)
    ]
    # 15 orders race for one account that covers 5 of them: exactly 5 may be charged (stock is plentiful).
    orders += [
        {"customer_id": TIGHT, "items": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": TIGHT_PRICE}]}
        for _ in range(15)
    ]
    # Payment declined after stock was reserved: the reservation must be released exactly once.
    orders += [
        {"customer_id": BROKE, "items": [{"sku": "SKU-2", "quantity": 2, "unit_price_minor": 700}]} for _ in range(10)
    ]
    # Plain good orders across both plentiful SKUs.
    for _ in range(45):
        skus = rng.sample(sorted(PLENTY), k=rng.randint(1, 2))
        orders.append(
            {
                "customer_id": rng.choice(RICH),
                "items": [{"sku": s, "quantity": rng.randint(1, 3), "unit_price_minor": 250} for s in skus],
            }
        )
    rng.shuffle(orders)
    return orders


def _group_split(admin: AdminClient, group: str) -> list[int]:
    """Partitions assigned to each member of ``group`` (empty while it rebalances)."""
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return [len(m.assignment.topic_partitions) if m.assignment else 0 for m in description.members]


def _consumed(process: ServiceProcess) -> int:
    status, body = client.call("GET", f"{process.url}/metrics")
    assert status == 200
    return int(sum(float(v) for v in CONSUMED.findall(body if isinstance(body, str) else str(body))))


def test_two_replicas_of_each_consumer_keep_every_invariant(
    make_stack: Callable[..., Stack], kafka_bootstrap: str, unique_prefix: str
) -> None:
    stack = make_stack(database="postgres")
    replicas = {name: stack.add_replica(name) for name in catalog.SERVICES}
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for name in catalog.SERVICES:
        group = f"{unique_prefix}-{name}"
        until(
            lambda g=group: (split := _group_split(admin, g)) and len(split) == 2 and min(split) > 0,
            timeout=60,
            what=f"both replicas of {name} to own partitions in {group}",
            interval=0.2,
        )

    stack.put_stock(RARE, RARE_STOCK)
    for sku, n in PLENTY.items():
        stack.put_stock(sku, n)
    for customer in RICH:
        stack.put_account(customer, RICH_BALANCE)
    stack.put_account(TIGHT, TIGHT_PRICE * TIGHT_AFFORDS)
    stack.put_account(BROKE, 100)
    initial_stock = {RARE: RARE_STOCK, **PLENTY}
    initial_balance = {**dict.fromkeys(RICH, RICH_BALANCE), TIGHT: TIGHT_PRICE * TIGHT_AFFORDS, BROKE: 100}

    # Orders go to either order replica; a client may also retry with the same Idempotency-Key.
    order_urls = [stack.url("order"), replicas["order"].url]

    def place(indexed: tuple[int, dict[str, Any]]) -> str:
        i, body = indexed
        key = str(uuid.uuid4())
        url = order_urls[i % 2]
        first = client.ok("POST", f"{url}/orders", {**body, "currency": "EUR"}, headers={"Idempotency-Key": key})
        if i % 10 == 0:  # the retry lands on the other replica and must find the same order
            again = client.ok(
                "POST",
                f"{order_urls[(i + 1) % 2]}/orders",
                {**body, "currency": "EUR"},
                headers={"Idempotency-Key": key},
            )
            assert again["order_id"] == first["order_id"]
        return str(first["order_id"])

    mix = _mix(random.Random(20260))
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(place, enumerate(mix)))
    assert len(set(ids)) == len(mix)

    orders = invariants.settle(stack, ids, timeout=120)
    outcomes = invariants.check(stack, orders, initial_stock=initial_stock, initial_balance=initial_balance)

    # No oversell: exactly the scarce units shipped, the rest were rejected.
    rare = [o for o in orders.values() if o["items"][0]["sku"] == RARE]
    assert sum(o["status"] == "SHIPPED" for o in rare) == RARE_STOCK
    assert {o["reason"] for o in rare if o["status"] == "CANCELLED"} == {"out_of_stock"}
    assert stack["inventory"].get(f"/stock/{RARE}") == {
        "sku": RARE,
        "available": 0,
        "reserved": 0,
        "shipped": RARE_STOCK,
    }
    # The tight account paid for exactly what it could afford.
    tight = [o for o in orders.values() if o["customer_id"] == TIGHT]
    assert sum(o["status"] == "SHIPPED" for o in tight) == TIGHT_AFFORDS
    assert stack["billing"].get(f"/accounts/{TIGHT}")["balance_minor"] == 0
    assert all(o["reason"] == "payment_declined" for o in orders.values() if o["customer_id"] == BROKE)
    assert outcomes["SHIPPED"] + sum(v for k, v in outcomes.items() if k.startswith("CANCELLED")) == len(ids)

    # What was published: per order at most one charge, one refund, one reservation, one release, and exactly one
    # decision -- counted by distinct event id, so a relay's harmless re-publish of the same event is allowed.
    distinct: dict[tuple[str, str], set[str]] = defaultdict(set)
    for stream in ("inventory", "payments", "shipments"):
        topic = f"{unique_prefix}.{stream}"
        for event in (r.event() for r in read_all(kafka_bootstrap, topic)):
            distinct[(event.type, event.subject)].add(event.id)
    per_type = Counter()
    for (event_type, order_id), event_ids in distinct.items():
        assert len(event_ids) == 1, f"{order_id}: {len(event_ids)} distinct {event_type} events"
        per_type[event_type] += 1
    for order_id in ids:
        decided = [t for t in (catalog.SHIPMENT_DISPATCHED, catalog.SHIPMENT_CANCELLED) if (t, order_id) in distinct]
        assert len(decided) == 1, (order_id, decided)
    assert per_type[catalog.PAYMENT_CHARGED] - per_type[catalog.PAYMENT_REFUNDED] == outcomes["SHIPPED"]

    # Both replicas of every service really did part of the work.
    for name in catalog.SERVICES:
        work = [_consumed(stack[name]), _consumed(replicas[name])]
        assert min(work) > 0, f"{name}: events applied per replica {work}"
