"""A service started while Kafka is down serves, says why it is not ready, and catches up when the broker comes.

Regression: start-up listed the topics with a 30 s timeout and exited 1 when no broker answered, so on Kubernetes
every Pod rescheduled during a broker outage crash-looped, and the order service stopped taking orders although its
outbox could hold them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orderflow_dev import client
from orderflow_dev.kafka import LocalBroker
from orderflow_dev.stack import Stack, free_port
from orderflow_dev.wait import until

pytestmark = pytest.mark.kafka


def _probe(url: str, path: str) -> tuple[int, object] | None:
    try:
        return client.call("GET", url + path, timeout=2)
    except OSError:
        return None


def test_services_start_serve_and_recover_without_a_restart_when_the_broker_comes_late(
    tmp_path: Path, unique_prefix: str
) -> None:
    broker = LocalBroker(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    stack = Stack(
        bootstrap=f"127.0.0.1:{broker.port}",
        prefix=unique_prefix,
        workdir=tmp_path / "stack",
        services=["order", "inventory"],
    )
    try:
        for service in stack.processes():
            service.start()
        order, inventory = stack["order"], stack["inventory"]
        pids = {s.name: s.process.pid for s in stack.processes() if s.process is not None}

        # Alive, and the consumer service says what it waits for; nothing crash-exits.
        until(lambda: (_probe(inventory.url, "/healthz") or (0,))[0] == 200, timeout=60, what="inventory alive")
        status, body = client.call("GET", inventory.url + "/readyz")
        assert status == 503, body
        assert body["kafka"]["state"] == "down" and body["kafka"]["reason"], body
        assert any("Kafka" in p for p in body["problems"]), body

        # The order service takes orders at once: they wait in its outbox. It is ready, and says Kafka is down.
        until(lambda: (_probe(order.url, "/readyz") or (0,))[0] == 200, timeout=60, what="order ready")
        status, body = client.call("GET", order.url + "/readyz")
        assert body["kafka"]["state"] == "down" and body["degraded"], body
        stack.put_stock("SKU-1", 10)
        placed = stack.place_order("alice", [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 100}])
        assert placed["status"] == "PENDING"

        broker.start()
        for service in stack.processes():
            service.wait_ready(timeout=90)
        # Events flow: inventory heard the order placed while Kafka was down and reserved its stock.
        reservation = until(
            lambda: inventory.find(f"/reservations/{placed['order_id']}"), timeout=60, what="the reservation"
        )
        assert reservation["state"] == "RESERVED", reservation
        assert inventory.get("/stock/SKU-1")["reserved"] == 2
        until(lambda: order.get("/readyz")["kafka"]["state"] == "up", timeout=30, what="order to see Kafka up")
        # ... all without a restart.
        assert {s.name: s.process.pid for s in stack.processes() if s.process is not None and s.alive()} == pids
    finally:
        stack.stop()
        broker.close()
    # Every line the services wrote through the outage is JSON, librdkafka's own among them.
    for service in stack.processes():
        records = [json.loads(line) for line in service.log_path.read_text().splitlines()]
        assert any(r["logger"] == "orderflow.kafka" and r.get("client") for r in records), service.name
