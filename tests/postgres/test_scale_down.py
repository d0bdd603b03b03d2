"""Scaling a service down (SIGTERM to one of two replicas) must not stall its outbox.

Regression: the outbox relay's lease was never given back on a graceful stop, so when the operator scaled a stage
down and the stopped Pod happened to be the relay, the surviving replica committed its events to the outbox but
published none of them until the lease expired (15 s) -- long enough for orders to miss their deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from orderflow_dev.stack import ServiceProcess, Stack
from orderflow_dev.wait import until
from tests.support import invariants

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]


def _relay_holder(stack: Stack) -> ServiceProcess:
    """The inventory process that holds the outbox relay's lease."""
    url = stack["inventory"].env["ORDERFLOW_DATABASE_URL"]

    def holder_pid() -> int | None:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT holder FROM outbox_lease WHERE expires_at > now()").fetchone()
        return int(row[0].split(":")[1]) if row else None

    pid = until(holder_pid, timeout=30, what="an inventory relay to take the lease")
    for process in [stack["inventory"], *stack.replicas]:
        if process.process is not None and process.process.pid == pid:
            return process
    raise AssertionError(f"lease held by pid {pid}, which is no inventory process of this stack")


def test_stopping_the_relay_replica_hands_the_outbox_over_at_once(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(database="postgres")
    stack.add_replica("inventory")
    stack.put_stock("SKU-1", 100)
    stack.put_account("alice", 100_000)
    warm = stack.place_order("alice", [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 100}])["order_id"]
    stack.wait_terminal([warm])

    holder = _relay_holder(stack)
    assert holder.terminate(timeout=30) == 0
    survivor = next(p for p in [stack["inventory"], *stack.replicas] if p.name == "inventory" and p.alive())
    stack.services["inventory"] = survivor  # inventory's HTTP API is now the survivor's

    # The survivor must now publish what it commits: orders keep flowing, well within the 15 s lease.
    started = time.monotonic()
    ids = [
        stack.place_order("alice", [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 100}])["order_id"]
        for _ in range(5)
    ]
    orders = invariants.settle(stack, ids, timeout=60)
    elapsed = time.monotonic() - started
    assert {o["status"] for o in orders.values()} == {"SHIPPED"}
    assert elapsed < 8, f"orders took {elapsed:.1f}s after the relay replica stopped (the outbox stalled)"
    invariants.check(
        stack, {**orders, warm: stack.order(warm)}, initial_stock={"SKU-1": 100}, initial_balance={"alice": 100_000}
    )
