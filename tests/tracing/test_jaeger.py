"""One order is one trace in a real Jaeger: every service's spans, each hop a child of the span that produced it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from orderflow.events import OrderId, codec
from orderflow_dev import topics, waterfall
from orderflow_dev.jaeger import Jaeger
from orderflow_dev.stack import Stack
from orderflow_dev.wait import until
from tests.support import events

pytestmark = [pytest.mark.kafka, pytest.mark.jaeger]

LINE = {"sku": "SKU-1", "quantity": 1, "unit_price_minor": 500}
SERVICES = ("orderflow-order", "orderflow-inventory", "orderflow-billing", "orderflow-shipping")


def traced_env(jaeger: Jaeger) -> dict[str, str]:
    """The standard variables a user sets; a short batch delay so the test need not wait out the 5 s default."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}


class Trace:
    """Jaeger's JSON for one trace, indexed: spans by id, each span's service, parent and tags."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.spans = {s["spanID"]: s for s in body["spans"]}
        self.processes = body["processes"]

    def service(self, span: dict[str, Any]) -> str:
        return str(self.processes[span["processID"]]["serviceName"])

    def parent(self, span: dict[str, Any]) -> dict[str, Any] | None:
        refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        return self.spans.get(refs[0]["spanID"]) if refs else None

    def parent_ids(self, span: dict[str, Any]) -> list[str]:
        return [r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"]

    @staticmethod
    def tag(span: dict[str, Any], key: str) -> Any:
        return next((t["value"] for t in span["tags"] if t["key"] == key), None)

    def find(self, operation: str, service: str | None = None) -> list[dict[str, Any]]:
        return [
            s
            for s in self.spans.values()
            if s["operationName"] == operation and (service is None or self.service(s) == service)
        ]

    def one(self, operation: str, service: str) -> dict[str, Any]:
        found = self.find(operation, service)
        assert len(found) == 1, (operation, service, [(s["operationName"], self.service(s)) for s in found])
        return found[0]

    def chain(self, span: dict[str, Any]) -> list[str]:
        """``service: operation`` from the root down to ``span``."""
        names = []
        current: dict[str, Any] | None = span
        while current is not None:
            names.append(f"{self.service(current)}: {current['operationName']}")
            current = self.parent(current)
        return names[::-1]


# What a shipped order's trace holds, at least: (service, operation) -> its parent's (service, operation).
SHIPPED = {
    ("order", "create OrderCreated"): ("order", "POST /orders"),
    ("order", "send OrderCreated"): ("order", "create OrderCreated"),
    ("inventory", "process OrderCreated"): ("order", "create OrderCreated"),
    ("billing", "process OrderCreated"): ("order", "create OrderCreated"),
    ("shipping", "process OrderCreated"): ("order", "create OrderCreated"),
    ("inventory", "create StockReserved"): ("inventory", "process OrderCreated"),
    ("inventory", "send StockReserved"): ("inventory", "create StockReserved"),
    ("billing", "send PaymentCharged"): ("billing", "create PaymentCharged"),
    ("shipping", "send ShipmentDispatched"): ("shipping", "create ShipmentDispatched"),
    ("billing", "create PaymentCharged"): ("billing", "process OrderCreated"),
    ("shipping", "process StockReserved"): ("inventory", "create StockReserved"),
    ("order", "process StockReserved"): ("inventory", "create StockReserved"),
    ("shipping", "process PaymentCharged"): ("billing", "create PaymentCharged"),
    ("order", "process PaymentCharged"): ("billing", "create PaymentCharged"),
    ("inventory", "process ShipmentDispatched"): ("shipping", "create ShipmentDispatched"),
    ("order", "process ShipmentDispatched"): ("shipping", "create ShipmentDispatched"),
}


def wait_for_trace(jaeger: Jaeger, order_id: str, complete: Callable[[Trace], bool]) -> Trace:
    def found() -> Trace | None:
        traces = jaeger.find_traces("orderflow-order", {"orderflow.order_id": order_id})
        if len(traces) != 1:
            return None
        trace = Trace(traces[0])
        return trace if complete(trace) else None

    return until(found, timeout=60, what=f"the trace of {order_id} in jaeger", interval=0.25)


def has_all(expected: dict[tuple[str, str], tuple[str, str]]) -> Callable[[Trace], bool]:
    def check(trace: Trace) -> bool:
        return all(trace.find(op, f"orderflow-{svc}") for svc, op in expected)

    return check


def test_one_order_is_one_trace_across_the_four_services_in_causal_order(
    make_stack: Callable[..., Stack], jaeger: Jaeger, kafka_bootstrap: str, unique_prefix: str
) -> None:
    stack = make_stack(env=traced_env(jaeger))
    stack.put_stock("SKU-1", 5)
    stack.put_account("alice", 5000)
    order_id = stack.place_order("alice", [LINE])["order_id"]
    stack.wait_terminal([order_id])

    trace = wait_for_trace(jaeger, order_id, has_all(SHIPPED))

    assert set(SERVICES) <= {p["serviceName"] for p in trace.processes.values()}
    roots = [s for s in trace.spans.values() if not trace.parent_ids(s)]
    assert [(trace.service(r), r["operationName"]) for r in roots] == [("orderflow-order", "POST /orders")]
    # No span points at a parent Jaeger does not have: the chain is whole, from the request to the last hop.
    dangling = [s["operationName"] for s in trace.spans.values() if trace.parent_ids(s) and trace.parent(s) is None]
    assert dangling == []
    for (service, operation), (parent_service, parent_operation) in SHIPPED.items():
        for span in trace.find(operation, f"orderflow-{service}"):
            parent = trace.parent(span)
            assert parent is not None
            assert (trace.service(parent), parent["operationName"]) == (
                f"orderflow-{parent_service}",
                parent_operation,
            ), trace.chain(span)
            assert span["startTime"] >= parent["startTime"], trace.chain(span)  # causal order in time as well
    # Shipping dispatched under whichever of its two prerequisites came second.
    dispatched = trace.one("create ShipmentDispatched", "orderflow-shipping")
    assert trace.chain(dispatched)[-2] in {
        "orderflow-shipping: process StockReserved",
        "orderflow-shipping: process PaymentCharged",
    }
    assert trace.chain(trace.one("process ShipmentDispatched", "orderflow-order"))[:3] == [
        "orderflow-order: POST /orders",
        "orderflow-order: create OrderCreated",
        trace.chain(dispatched)[2],
    ]
    # Consumer spans say what they handled; the relay's send span where it went.
    process = trace.one("process OrderCreated", "orderflow-billing")
    assert trace.tag(process, "span.kind") == "consumer"
    assert trace.tag(process, "cloudevents.event_type") == "dev.orderflow.order.created.v1"
    assert trace.tag(process, "orderflow.order_id") == order_id
    send = trace.one("send OrderCreated", "orderflow-order")
    assert trace.tag(send, "messaging.destination.name") == f"{unique_prefix}.orders"
    assert trace.tag(send, "messaging.system") == "kafka"
    # The README's picture is drawn from this same JSON: every span, each under its parent.
    drawn = list(waterfall.rows(trace.body))
    assert len(drawn) == len(trace.spans) and drawn[0][1]["operationName"] == "POST /orders"
    depth = {span["spanID"]: d for d, span in drawn}
    assert all(
        depth[s["spanID"]] == depth[trace.parent(s)["spanID"]] + 1 for s in trace.spans.values() if s is not roots[0]
    )
    server = trace.one("POST /orders", "orderflow-order")
    assert trace.tag(server, "http.response.status_code") == 201
    assert trace.tag(server, "span.kind") == "server"

    # A poison message that carries the order's trace context is a dead-letter span in that trace, per consumer.
    server_context = f"00-{server['traceID']}-{server['spanID']}-01"
    record = codec.encode(
        replace(events.order_created(OrderId(order_id)), traceparent=server_context), prefix=unique_prefix
    )
    value = json.loads(record.value)
    value["items"][0]["quantity"] = 0  # schema_violation
    topics.publish(kafka_bootstrap, [(record.topic, record.key, json.dumps(value).encode(), list(record.headers))])
    expected = {
        (c, "dead-letter OrderCreated"): ("order", "POST /orders") for c in ("inventory", "billing", "shipping")
    }
    trace = wait_for_trace(jaeger, order_id, has_all(expected))
    for (service, operation), _ in expected.items():
        letter = trace.one(operation, f"orderflow-{service}")
        assert trace.parent(letter) is not None and trace.parent(letter)["operationName"] == "POST /orders"
        assert trace.tag(letter, "orderflow.dlq.reason") == "schema_violation"
        assert trace.tag(letter, "otel.status_code") == "ERROR"
        assert trace.tag(letter, "messaging.destination.name") == f"{unique_prefix}.{service}.dlq"
