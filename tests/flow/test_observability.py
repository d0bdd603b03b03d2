"""What an operator of the system sees: trace context end to end, flow health, metrics and JSON logs."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

import pytest

from orderflow.events import catalog
from orderflow_dev import topics
from orderflow_dev.stack import Stack
from orderflow_dev.wait import until

pytestmark = pytest.mark.kafka

LINE = {"sku": "SKU-1", "quantity": 1, "unit_price_minor": 500}


def test_traceparent_from_the_request_reaches_every_event_of_the_order(
    stack: Stack, kafka_bootstrap: str, unique_prefix: str
) -> None:
    stack.put_stock("SKU-1", 5)
    stack.put_account("alice", 5000)
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    placed = stack.place_order("alice", [LINE], headers={"traceparent": f"00-{trace_id}-{span_id}-01"})
    stack.wait_terminal([placed["order_id"]])

    spans = set()
    for stream in ("orders", "inventory", "payments", "shipments"):
        reads = topics.read_all(kafka_bootstrap, f"{unique_prefix}.{stream}", at_least=1)
        for read in reads:
            version, trace, span, flags = read.headers["ce_traceparent"].decode().split("-")
            assert (version, trace, flags) == ("00", trace_id, "01"), (stream, read.headers)
            spans.add(span)
    assert span_id not in spans and len(spans) >= 4  # each event is a new span of the same trace


def test_flow_health_counts_in_flight_and_stuck_orders(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    stack.put_stock("SKU-1", 5)
    stack.put_account("alice", 5000)
    assert stack["shipping"].terminate() == 0  # nothing can finish now
    ids = {stack.place_order("alice", [LINE])["order_id"] for _ in range(3)}

    flow = until(
        lambda: (f := stack["order"].get("/flow?stuck_after_seconds=0.3"))["stuck"] == 3 and f,
        timeout=30,
        what="three stuck orders",
    )
    assert flow["in_flight"] == 3 and set(flow["stuck_order_ids"]) == ids
    assert flow["oldest_in_flight_age_seconds"] >= 0.3
    assert stack["order"].get("/flow?stuck_after_seconds=3600")["stuck"] == 0

    stack["shipping"].start()
    stack["shipping"].wait_ready()
    stack.wait_terminal(ids)
    assert stack["order"].get("/flow")["in_flight"] == 0
    assert stack["order"].get("/flow")["oldest_in_flight_age_seconds"] is None


def test_metrics_and_json_logs_name_the_order_and_the_event(make_stack: Callable[..., Stack]) -> None:
    # The line per emitted event is DEBUG (at INFO it cost a tenth of a service's time in a burst).
    stack = make_stack(env={"ORDERFLOW_LOG_LEVEL": "DEBUG"})
    stack.put_stock("SKU-1", 5)
    stack.put_account("alice", 5000)
    order_id = stack.place_order("alice", [LINE])["order_id"]
    stack.wait_terminal([order_id])

    metrics = stack["billing"].get("/metrics")
    assert f'orderflow_events_consumed_total{{service="billing",type="{catalog.ORDER_CREATED}"}} 1.0' in metrics
    assert 'orderflow_outbox_backlog{service="billing"}' in metrics
    until(lambda: "orderflow_events_produced_total{" in stack["billing"].get("/metrics"), timeout=10, what="produced")
    assert "orderflow_batch_processing_seconds_count" in metrics

    lines = [json.loads(line) for line in stack["billing"].log_path.read_text().splitlines() if line.startswith("{")]
    about = [line for line in lines if line.get("order_id") == order_id]
    assert about and all(line["service"] == "billing" and line.get("event_id") for line in about)
