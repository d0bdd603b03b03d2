"""Shipping dispatches only once it has both StockReserved and PaymentCharged, whichever arrives first."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orderflow.events import catalog
from orderflow_dev import topics as kafka
from orderflow_dev.stack import Stack
from orderflow_dev.wait import until
from tests.support import events

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("first", ["stock", "payment"])
def test_dispatch_after_both_success_events_in_either_order(
    make_stack: Callable[..., Stack], kafka_bootstrap: str, unique_prefix: str, first: str
) -> None:
    stack = make_stack(services=["shipping"])
    created = events.order_created()
    order_id = created.subject
    stock, payment = events.stock_reserved(order_id), events.payment_charged(order_id)
    one, two = (stock, payment) if first == "stock" else (payment, stock)

    kafka.publish_events(kafka_bootstrap, unique_prefix, [created, one])
    column = "stock" if first == "stock" else "payment"
    until(
        lambda: (stack["shipping"].find(f"/shipments/{order_id}") or {}).get(column),
        timeout=30,
        what="shipping to record the first success",
    )
    assert stack["shipping"].get(f"/shipments/{order_id}")["outcome"] is None

    kafka.publish_events(kafka_bootstrap, unique_prefix, [two])
    shipment = until(
        lambda: (s := stack["shipping"].get(f"/shipments/{order_id}"))["outcome"] and s, timeout=30, what="the dispatch"
    )
    assert shipment["outcome"] == "DISPATCHED"
    dispatched = kafka.events_of(kafka.read_all(kafka_bootstrap, f"{unique_prefix}.shipments", at_least=1))
    assert [(e.type, e.subject) for e in dispatched] == [(catalog.SHIPMENT_DISPATCHED, order_id)]
