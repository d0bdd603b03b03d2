"""Scaling a service down (SIGTERM to one of two replicas) must not stall its outbox.

Regression: the outbox relay's lease was never given back on a graceful stop, so when the operator scaled a stage
down and the stopped Pod happened to be the relay, the surviving replica committed its events to the outbox but
published none of them until the lease expired (15 s then, 6 s now) -- long enough for orders to miss their
deadline.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from orderflow.runtime import outbox
from orderflow_dev.stack import ServiceProcess, Stack
from orderflow_dev.wait import until
from tests.support import invariants

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]


def _lease_holder(url: str) -> str | None:
    """The replica id that holds the outbox relay's lease, if any does."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT holder FROM outbox_lease WHERE expires_at > now()").fetchone()
    return str(row[0]) if row else None


def _relay_holder(stack: Stack) -> ServiceProcess:
    """The inventory process that holds the outbox relay's lease (held in its ``ORDERFLOW_REPLICA_ID``)."""
    url = stack["inventory"].env["ORDERFLOW_DATABASE_URL"]
    holder = until(lambda: _lease_holder(url), timeout=30, what="an inventory relay to take the lease")
    for process in [stack["inventory"], *stack.replicas]:
        if process.env["ORDERFLOW_REPLICA_ID"] == holder:
            return process
    raise AssertionError(f"lease held by {holder!r}, which is no inventory process of this stack")


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

    # The stopped relay gave its lease back: the survivor holds it long before the lease could have expired.
    url = survivor.env["ORDERFLOW_DATABASE_URL"]
    until(
        lambda: _lease_holder(url) == survivor.env["ORDERFLOW_REPLICA_ID"],
        timeout=outbox.LEASE_SECONDS / 2,
        what="the survivor to take the released lease",
    )
    # And orders keep flowing. (Those on the stopped replica's partitions wait for its session to time out: a
    # static member does not leave its group when it stops; see the README, "Rejoining after a crash".)
    ids = [
        stack.place_order("alice", [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 100}])["order_id"]
        for _ in range(5)
    ]
    orders = invariants.settle(stack, ids, timeout=60)
    assert {o["status"] for o in orders.values()} == {"SHIPPED"}
    invariants.check(
        stack, {**orders, warm: stack.order(warm)}, initial_stock={"SKU-1": 100}, initial_balance={"alice": 100_000}
    )
