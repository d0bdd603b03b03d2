"""A PostgreSQL restart under running services: they keep serving, report not ready, and recover by themselves.

The database goes away with its sessions cut (a "fast" shutdown, as a restart or a failover does) and comes back on
the same address. No service may exit, and none needs a restart afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orderflow_dev import client
from orderflow_dev.postgres import PostgresServer
from orderflow_dev.stack import Stack
from orderflow_dev.wait import until

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]

LINE = [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 100}]


def _status(url: str) -> int:
    try:
        return int(client.call("GET", url, timeout=5)[0])
    except OSError:
        return 0


def test_services_ride_out_a_database_restart(make_stack: Callable[..., Stack], unique_prefix: str) -> None:
    with PostgresServer() as server:
        urls = {s: server.create_database(f"{unique_prefix}_{s}") for s in ("order", "inventory")}
        stack = make_stack(services=["order", "inventory"], database_urls=urls)
        order, inventory = stack["order"], stack["inventory"]
        stack.put_stock("SKU-1", 100)
        first = stack.place_order("alice", LINE)["order_id"]
        until(lambda: inventory.find(f"/reservations/{first}"), timeout=60, what="the first reservation")
        pids = [s.process.pid for s in stack.processes() if s.process is not None]

        server.halt()
        for service in (order, inventory):
            until(lambda s=service: _status(f"{s.url}/readyz") == 503, timeout=30, what=f"{service.name} not ready")
            status, body = client.call("GET", f"{service.url}/readyz")
            assert body["database"] == "down" and body["problems"], body
            assert _status(f"{service.url}/healthz") == 200  # alive: nothing to restart
        status, body = client.call(
            "POST", f"{order.url}/orders", {"customer_id": "alice", "currency": "EUR", "items": LINE}
        )
        assert status == 503 and "temporarily unavailable" in body["error"], (status, body)

        server.resume()
        for service in (order, inventory):
            service.wait_ready(timeout=60)
        second = stack.place_order("alice", LINE)["order_id"]
        reservation = until(lambda: inventory.find(f"/reservations/{second}"), timeout=60, what="a reservation")
        assert reservation["state"] == "RESERVED"
        assert [s.process.pid for s in stack.processes() if s.process is not None and s.alive()] == pids
        stack.stop()
