"""Duplicates change nothing: every event of many flows published a second time, or a whole topic replayed from
the beginning into a fresh consumer group of the same service, leaves every state and every topic as it was."""

from __future__ import annotations

from typing import Any

import pytest

from orderflow.events import catalog
from orderflow_dev import topics as kafka
from orderflow_dev.stack import Stack
from tests.support import invariants

pytestmark = pytest.mark.kafka

SKUS = {"SKU-1": 40, "SKU-2": 500}
ACCOUNTS = {"alice": 200_000, "bob": 2_000}


@pytest.fixture
def settled(stack: Stack) -> tuple[Stack, list[str]]:
    """A stack that has run 60 orders of every outcome to completion."""
    for sku, n in SKUS.items():
        stack.put_stock(sku, n)
    for customer, n in ACCOUNTS.items():
        stack.put_account(customer, n)
    ids = [
        stack.place_order(
            "bob" if i % 4 == 0 else "alice",
            [{"sku": "SKU-1" if i % 3 == 0 else "SKU-2", "quantity": 1 + i % 4, "unit_price_minor": 900}],
            deadline_seconds=0.01 if i % 10 == 9 else None,
        )["order_id"]
        for i in range(60)
    ]
    orders = invariants.settle(stack, ids)
    invariants.check(stack, orders, initial_stock=SKUS, initial_balance=ACCOUNTS)
    return stack, ids


def _snapshot(stack: Stack, ids: list[str]) -> dict[str, Any]:
    return {
        "stock": {s: stack["inventory"].get(f"/stock/{s}") for s in SKUS},
        "accounts": {c: stack["billing"].get(f"/accounts/{c}") for c in ACCOUNTS},
        "orders": {i: stack.order(i) for i in ids},
        "payments": {i: stack["billing"].find(f"/payments/{i}") for i in ids},
        "reservations": {i: stack["inventory"].find(f"/reservations/{i}") for i in ids},
        "shipments": {i: stack["shipping"].get(f"/shipments/{i}") for i in ids},
    }


def _wait_all_caught_up(bootstrap: str, prefix: str, group_suffix: str = "") -> None:
    for service in catalog.SERVICES:
        kafka.wait_caught_up(
            bootstrap, f"{prefix}-{service}{group_suffix}", catalog.topics_consumed_by(service, prefix), timeout=60
        )


def test_republishing_every_event_changes_nothing(
    settled: tuple[Stack, list[str]], kafka_bootstrap: str, unique_prefix: str
) -> None:
    stack, ids = settled
    _wait_all_caught_up(kafka_bootstrap, unique_prefix)
    before = _snapshot(stack, ids)
    topics = catalog.all_topics(unique_prefix)
    originals = {t: kafka.read_all(kafka_bootstrap, t) for t in topics}
    assert sum(len(r) for r in originals.values()) >= 4 * len(ids)

    kafka.publish(
        kafka_bootstrap,
        [(r.topic, r.key, r.value, list(r.headers.items())) for reads in originals.values() for r in reads],
    )
    _wait_all_caught_up(kafka_bootstrap, unique_prefix)

    assert _snapshot(stack, ids) == before
    for topic, reads in originals.items():  # the services published nothing new in answer to the copies
        assert len(kafka.read_all(kafka_bootstrap, topic)) == 2 * len(reads), topic
    for service in catalog.SERVICES:
        assert not kafka.read_all(kafka_bootstrap, catalog.dlq_topic(unique_prefix, service))


def test_replaying_every_topic_into_fresh_consumer_groups_changes_nothing(
    settled: tuple[Stack, list[str]], kafka_bootstrap: str, unique_prefix: str
) -> None:
    stack, ids = settled
    _wait_all_caught_up(kafka_bootstrap, unique_prefix)
    before = _snapshot(stack, ids)
    sizes = {t: len(kafka.read_all(kafka_bootstrap, t)) for t in catalog.all_topics(unique_prefix)}

    for name, service in stack.services.items():
        assert service.terminate() == 0
        service.start(extra_env={"ORDERFLOW_CONSUMER_GROUP": f"{unique_prefix}-{name}-replay"})
        service.wait_ready()
    _wait_all_caught_up(kafka_bootstrap, unique_prefix, "-replay")

    assert _snapshot(stack, ids) == before
    assert {t: len(kafka.read_all(kafka_bootstrap, t)) for t in sizes} == sizes
