"""Crashes lose nothing and duplicate nothing: services SIGKILLed mid-batch, between commit and offset commit,
and between publishing and deleting outbox rows, then restarted — over a few hundred orders every invariant holds.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from orderflow_dev.stack import Stack
from orderflow_dev.wait import until
from tests.support import invariants

pytestmark = pytest.mark.kafka

SKUS = {"SKU-1": 150, "SKU-2": 2_000}
# A killed consumer's partitions wait for its session to time out before a restarted one gets them back.
FAST_SESSION = {"ORDERFLOW_KAFKA_SESSION_TIMEOUT_MS": "3000", "ORDERFLOW_KAFKA_HEARTBEAT_INTERVAL_MS": "500"}
ACCOUNTS = {"alice": 5_000_000, "bob": 20_000}


def _seed(stack: Stack) -> None:
    for sku, n in SKUS.items():
        stack.put_stock(sku, n)
    for customer, n in ACCOUNTS.items():
        stack.put_account(customer, n)


def _place(stack: Stack, n: int, ids: list[str]) -> None:
    rng = random.Random(3)
    for i in range(n):
        customer = "bob" if i % 6 == 0 else "alice"
        line = {"sku": rng.choice(list(SKUS)), "quantity": rng.randint(1, 3), "unit_price_minor": 2500}
        ids.append(stack.place_order(customer, [line], key=f"order-{i}")["order_id"])


@contextmanager
def supervised(stack: Stack, restart_env: Callable[[str, int], dict[str, str]]) -> Iterator[dict[str, int]]:
    """Restart any service that died (as a Deployment would), with ``restart_env(name, restarts)``."""
    restarts = {name: 0 for name in stack.services}
    stop = threading.Event()
    failures: list[BaseException] = []

    def watch() -> None:
        try:
            while not stop.wait(0.05):
                for name, service in stack.services.items():
                    if not service.alive() and not stop.is_set():
                        restarts[name] += 1
                        service.kill()  # reap
                        service.start(extra_env=restart_env(name, restarts[name]))
        except BaseException as e:  # surfaced in the test below, not lost in a thread
            failures.append(e)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield restarts
    finally:
        stop.set()
        thread.join(10)
        assert not failures, failures
        for service in stack.services.values():
            until(service.ready, timeout=60, what=f"{service.name} back after the crashes")


def _place_surviving_crashes(stack: Stack, n: int) -> list[str]:
    """Place ``n`` orders; a POST that hits a dead order service is retried with its Idempotency-Key."""
    ids: list[str] = []
    deadline = time.monotonic() + 120
    while len(ids) < n:
        try:
            _place(stack, n, ids)
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            until(stack["order"].ready, timeout=60, what="the order service back")
            ids.clear()  # the keys make the replay return the very same orders
    return ids


@pytest.mark.parametrize("point", ["consumer.mid_batch", "consumer.after_commit", "relay.after_publish"])
def test_sigkill_at_a_fault_point_loses_and_duplicates_nothing(make_stack: Callable[..., Stack], point: str) -> None:
    # Each service dies the 2nd time it reaches the point, and after a restart the 3rd and 6th time: the relay may
    # run only a handful of cycles per service under batching, so the counts stay small.
    stack = make_stack(env={"ORDERFLOW_FAULTS": f"{point}=2", **FAST_SESSION})
    _seed(stack)
    with supervised(stack, lambda _name, n: {"ORDERFLOW_FAULTS": f"{point}={3 * n}" if n < 3 else ""}) as restarts:
        ids = _place_surviving_crashes(stack, 200)
        orders = invariants.settle(stack, ids)
    assert sum(restarts.values()) >= 4 and len([n for n in restarts.values() if n]) >= 3, restarts  # they fired
    outcomes = invariants.check(stack, orders, initial_stock=SKUS, initial_balance=ACCOUNTS)
    assert outcomes["SHIPPED"] and outcomes["CANCELLED/payment_declined"], outcomes


def test_random_sigkills_under_load(make_stack: Callable[..., Stack]) -> None:
    """SIGKILL a random service every few hundred milliseconds while orders are placed and processed."""
    stack = make_stack(env=FAST_SESSION)
    _seed(stack)
    rng = random.Random(42)
    placed = threading.Event()
    kills: list[str] = []

    def killer() -> None:
        # at least five crashes, and crashes for as long as orders are being placed
        while not (placed.is_set() and len(kills) >= 5):
            time.sleep(rng.uniform(0.2, 0.6))  # the pace of the chaos, not a synchronisation
            victim = stack[rng.choice(["inventory", "billing", "shipping", "order"])]
            if victim.alive():
                assert victim.process is not None
                victim.process.kill()
                kills.append(victim.name)

    with supervised(stack, lambda _name, _n: {}) as restarts:
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            ids = _place_surviving_crashes(stack, 300)
        finally:
            placed.set()
            thread.join(60)
        orders = invariants.settle(stack, ids, timeout=180)
    assert len(kills) >= 5 and sum(restarts.values()) >= 5, (kills, restarts)
    invariants.check(stack, orders, initial_stock=SKUS, initial_balance=ACCOUNTS)
