"""A redelivered event changes nothing: the inbox records source+id with the state change."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orderflow.events import catalog
from orderflow_dev import topics as kafka
from orderflow_dev.stack import Stack
from orderflow_dev.wait import until
from tests.support import events

pytestmark = pytest.mark.kafka


def test_the_same_order_created_twice_charges_once(
    make_stack: Callable[..., Stack], kafka_bootstrap: str, unique_prefix: str
) -> None:
    stack = make_stack(services=["billing"])
    stack.put_account("alice", 5000)
    created = events.order_created(unit_price=1000)
    marker = events.order_created(unit_price=1)  # published after the duplicates: once it is seen, they were too

    kafka.publish_events(kafka_bootstrap, unique_prefix, [created, created, created])
    kafka.publish_events(kafka_bootstrap, unique_prefix, [created, marker])
    until(
        lambda: stack["billing"].get("/accounts/alice")["balance_minor"] == 5000 - 1000 - 1,
        timeout=30,
        what="both orders charged",
    )

    assert stack["billing"].get(f"/payments/{created.subject}")["state"] == "CHARGED"
    payments = kafka.read_all(kafka_bootstrap, f"{unique_prefix}.payments", at_least=2)
    charged = [e.subject for e in kafka.events_of(payments, catalog.PAYMENT_CHARGED)]
    assert sorted(charged) == sorted([created.subject, marker.subject])
    metrics = stack["billing"].get("/metrics")
    assert 'orderflow_events_duplicate_total{service="billing"} 3.0' in metrics
