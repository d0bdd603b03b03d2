"""Chaos: orders through the HTTP API while services are SIGKILLed and restarted and the broker dies once.

What a new user would try before trusting the system with a shop: a steady stream of orders (2,000 over 60 s by
default) while a random service is SIGKILLed every ~3 s and restarted at once (as the kubelet restarts a crashed
container), and the broker is killed once and restarted ~20 s later. Afterwards every order must be terminal and
every invariant hold (checked through the HTTP APIs); the run reports how fast orders were decided under that
(p50/p99 accepted -> terminal), how many ran out of their 60 s deadline, and the longest stall of order intake
while the order service itself was up. ``make chaos`` runs the full scenario; ``tests/crash/test_chaos.py`` a short
one.

The scenario runs on its own private broker (it kills it) and its own topics.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orderflow_dev import client, invariants
from orderflow_dev.kafka import LocalBroker
from orderflow_dev.stack import ServiceProcess, Stack
from orderflow_dev.wait import until

SKUS = {"SKU-1": 1_000_000, "SKU-2": 1_000_000, "SKU-SCARCE": 40}
RICH = [f"rich-{i}" for i in range(8)]
POOR = "poor"
ACCOUNTS = {**{c: 10**12 for c in RICH}, POOR: 500}


@dataclass(frozen=True, slots=True)
class Scenario:
    orders: int = 2_000
    duration_s: float = 60.0
    kill_every_s: float = 3.0
    broker_kill_at_s: float | None = 15.0
    broker_down_s: float = 20.0
    deadline_s: float = 60.0
    placers: int = 8
    seed: int = 7


@dataclass
class Result:
    scenario: Scenario
    orders: dict[str, dict[str, Any]]
    kills: Counter[str]
    broker_outage_s: float
    latencies: list[float]
    longest_gap_s: float
    longest_stall_while_up_s: float
    # Latencies of the orders accepted while the broker was down (kill to answering again), and of the others.
    latencies_broker_down: list[float] = field(default_factory=list)
    latencies_broker_up: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def percentile(self, q: float, latencies: list[float] | None = None) -> float:
        ordered = sorted(self.latencies if latencies is None else latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def cancelled_by_deadline(self) -> int:
        return sum(1 for o in self.orders.values() if o["reason"] == "deadline_exceeded")

    def report(self) -> str:
        outcomes = Counter(o["status"] + (f"/{o['reason']}" if o["reason"] else "") for o in self.orders.values())
        n = len(self.orders)
        return "\n".join(
            [
                f"chaos: {n} orders over {self.scenario.duration_s:.0f}s; SIGKILLs {sum(self.kills.values())} "
                f"({', '.join(f'{k} {v}' for k, v in sorted(self.kills.items()))}); "
                f"broker down {self.broker_outage_s:.1f}s",
                "  outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
                f"  accepted -> terminal: p50 {self.percentile(0.5):.2f}s, p99 {self.percentile(0.99):.2f}s, "
                f"max {max(self.latencies, default=0):.2f}s",
                *(
                    [
                        f"    accepted while the broker was up ({len(self.latencies_broker_up)}): "
                        f"p50 {self.percentile(0.5, self.latencies_broker_up):.2f}s, "
                        f"p99 {self.percentile(0.99, self.latencies_broker_up):.2f}s; while it was down "
                        f"({len(self.latencies_broker_down)}): "
                        f"p50 {self.percentile(0.5, self.latencies_broker_down):.2f}s"
                    ]
                    if self.latencies_broker_down
                    else []
                ),
                f"  cancelled by the {self.scenario.deadline_s:.0f}s deadline: {self.cancelled_by_deadline} "
                f"({100 * self.cancelled_by_deadline / max(1, n):.2f} %)",
                f"  longest intake stall while the order service was up: {self.longest_stall_while_up_s:.2f}s "
                f"(longest gap between accepted orders, outages included: {self.longest_gap_s:.2f}s)",
                f"  invariant violations: {len(self.violations)}",
                *(f"    {v}" for v in self.violations[:10]),
            ]
        )


class _Outages:
    """When the order service was down: from its SIGKILL until its restarted process answers HTTP again."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float]] = []
        self._open: float | None = None
        self._lock = threading.Lock()

    def begin(self, at: float) -> None:
        with self._lock:
            self._open = at if self._open is None else self._open

    def end(self, at: float) -> None:
        with self._lock:
            if self._open is not None:
                self.intervals.append((self._open, at))
                self._open = None

    @property
    def open(self) -> bool:
        return self._open is not None

    def overlap(self, a: float, b: float) -> float:
        return sum(max(0.0, min(b, end) - max(a, start)) for start, end in self.intervals)


def _answers(service: ServiceProcess) -> bool:
    try:
        return client.call("GET", f"{service.url}/healthz", timeout=1)[0] == 200
    except OSError:
        return False


class _Chaos:
    def __init__(self, stack: Stack, broker: LocalBroker, scenario: Scenario) -> None:
        self.stack, self.broker, self.scenario = stack, broker, scenario
        self.rng = random.Random(scenario.seed)
        self.stop = threading.Event()
        self.kills: Counter[str] = Counter()
        self.outages = _Outages()
        self.broker_outage_s = 0.0
        self.broker_down = (math.inf, math.inf)  # monotonic (killed, answering again)
        self.failures: list[BaseException] = []
        self.lock = threading.Lock()

    def thread(self, target: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                target()
            except BaseException as e:  # surfaced by run(), not lost in a thread
                self.failures.append(e)
                self.stop.set()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def supervise(self) -> None:
        """Restart any service that died, at once; note when the order service answers again."""
        while not self.stop.wait(0.05):
            for service in self.stack.services.values():
                with self.lock:
                    if not service.alive():
                        service.kill()  # reap
                        service.start()
            order = self.stack["order"]
            if order.alive() and self.outages.open and _answers(order):
                self.outages.end(time.monotonic())

    def kill_randomly(self, until_t: float) -> None:
        names = sorted(self.stack.services)
        while not self.stop.wait(self.scenario.kill_every_s * self.rng.uniform(0.5, 1.5)):
            if time.monotonic() > until_t:
                return
            victim = self.stack[self.rng.choice(names)]
            with self.lock:
                if victim.alive() and victim.process is not None:
                    if victim.name == "order":
                        self.outages.begin(time.monotonic())
                    victim.process.kill()
                    self.kills[victim.name] += 1

    def kill_broker(self, at: float) -> None:
        if self.stop.wait(max(0.0, at - time.monotonic())):
            return
        killed = time.monotonic()
        self.broker.kill()
        self.stop.wait(self.scenario.broker_down_s)
        self.broker.start()
        self.broker_outage_s = time.monotonic() - killed
        self.broker_down = (killed, time.monotonic())


def _body(rng: random.Random, i: int, deadline_s: float) -> dict[str, Any]:
    customer = POOR if i % 25 == 0 else rng.choice(RICH)
    sku = "SKU-SCARCE" if i % 20 == 0 else rng.choice(["SKU-1", "SKU-2"])
    line = {"sku": sku, "quantity": rng.randint(1, 3), "unit_price_minor": rng.choice([250, 1200, 4999])}
    return {"customer_id": customer, "currency": "EUR", "items": [line], "deadline_seconds": deadline_s}


def _place_all(stack: Stack, scenario: Scenario, started: float, chaos: _Chaos) -> dict[str, float]:
    """Place the orders on schedule (retrying each with its Idempotency-Key until accepted): accepted time by id."""
    rng = random.Random(scenario.seed + 1)
    bodies = [_body(rng, i, scenario.deadline_s) for i in range(scenario.orders)]
    accepted: dict[str, float] = {}
    next_index = iter(range(scenario.orders))
    lock = threading.Lock()
    url = f"{stack.url('order')}/orders"

    def placer() -> None:
        while not chaos.stop.is_set():
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            due = started + i * scenario.duration_s / scenario.orders
            time.sleep(max(0.0, due - time.monotonic()))  # the order's place in the schedule, not a synchronisation
            while not chaos.stop.is_set():
                try:
                    status, body = client.call("POST", url, bodies[i], headers={"Idempotency-Key": f"c{i}"}, timeout=5)
                except OSError:
                    status, body = 0, None
                if status in (200, 201):
                    with lock:
                        accepted[body["order_id"]] = time.monotonic()
                    break
                if 400 <= status < 500:
                    raise AssertionError(f"order {i} refused: {status} {body}")
                time.sleep(0.05)  # the order service is down or busy: retry soon

    threads = [chaos.thread(placer) for _ in range(scenario.placers)]
    for t in threads:
        t.join()
    return accepted


def _stalls(accepted: list[float], outages: _Outages, started: float) -> tuple[float, float]:
    times = [started, *sorted(accepted)]
    gaps = list(itertools.pairwise(times))
    longest = max((b - a for a, b in gaps), default=0.0)
    while_up = max((b - a - outages.overlap(a, b) for a, b in gaps), default=0.0)
    return longest, while_up


def run(scenario: Scenario, *, workdir: Path, say: Callable[[str], None] = print) -> Result:
    """Run ``scenario`` on a private broker and a fresh stack under ``workdir``; the figures and any violations."""
    with LocalBroker(workdir / "kafka") as broker:
        stack = Stack(bootstrap=broker.bootstrap, prefix=f"chaos{uuid.uuid4().hex[:8]}", workdir=workdir / "stack")
        with stack:
            for sku, n in SKUS.items():
                stack.put_stock(sku, n)
            for customer, n in ACCOUNTS.items():
                stack.put_account(customer, n)
            say(
                f"chaos: {scenario.orders} orders over {scenario.duration_s:.0f}s, a SIGKILL every "
                f"~{scenario.kill_every_s:.0f}s, the broker down {scenario.broker_down_s:.0f}s; logs in {workdir}"
            )
            chaos = _Chaos(stack, broker, scenario)
            started = time.monotonic()
            end = started + scenario.duration_s
            helpers = [chaos.thread(chaos.supervise), chaos.thread(lambda: chaos.kill_randomly(end))]
            broker_kill_at = scenario.broker_kill_at_s
            if broker_kill_at is not None:
                helpers.append(chaos.thread(lambda: chaos.kill_broker(started + broker_kill_at)))
            accepted = _place_all(stack, scenario, started, chaos)
            for t in helpers[1:]:
                t.join()
            for service in stack.services.values():  # the supervisor has restarted everything by now
                until(service.ready, timeout=120, what=f"{service.name} back after the chaos")
            chaos.stop.set()
            helpers[0].join()
            if chaos.failures:
                raise chaos.failures[0]
            say(f"chaos: {len(accepted)} orders accepted; waiting for every one to be decided")
            orders = invariants.settle(stack, accepted, timeout=scenario.deadline_s + 120)
            violations: list[str] = []
            try:
                invariants.check(stack, orders, initial_stock=SKUS, initial_balance=ACCOUNTS, timeout=60)
            except AssertionError as e:
                violations.append(str(e))
    latency = {
        oid: (datetime.fromisoformat(o["terminal_at"]) - datetime.fromisoformat(o["created_at"])).total_seconds()
        for oid, o in orders.items()
    }
    down_from, down_to = chaos.broker_down
    in_outage = {oid for oid, at in accepted.items() if down_from <= at <= down_to}
    longest, while_up = _stalls(list(accepted.values()), chaos.outages, started)
    return Result(
        scenario=scenario,
        orders=orders,
        kills=chaos.kills,
        broker_outage_s=chaos.broker_outage_s,
        latencies=list(latency.values()),
        latencies_broker_down=[t for oid, t in latency.items() if oid in in_outage],
        latencies_broker_up=[t for oid, t in latency.items() if oid not in in_outage],
        longest_gap_s=longest,
        longest_stall_while_up_s=while_up,
        violations=violations,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench chaos", description=__doc__.splitlines()[0])
    defaults = Scenario()
    parser.add_argument("--orders", type=int, default=defaults.orders)
    parser.add_argument("--duration", type=float, default=defaults.duration_s, help="seconds to place them over")
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every_s, help="mean seconds between kills")
    parser.add_argument("--broker-down", type=float, default=defaults.broker_down_s, help="0: never kill the broker")
    args = parser.parse_args(argv)
    scenario = Scenario(
        orders=args.orders,
        duration_s=args.duration,
        kill_every_s=args.kill_every,
        broker_down_s=args.broker_down,
        broker_kill_at_s=defaults.broker_kill_at_s if args.broker_down > 0 else None,
    )
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-chaos-"))
    result = run(scenario, workdir=workdir)
    with (workdir / "orders.csv").open("w") as out:  # for a closer look: when each order was decided, and how
        out.write("order_id,created_at,terminal_at,status,reason\n")
        for oid, o in sorted(result.orders.items(), key=lambda kv: kv[1]["created_at"]):
            out.write(f"{oid},{o['created_at']},{o['terminal_at']},{o['status']},{o['reason'] or ''}\n")
    print(result.report())
    print(f"  per-order outcomes: {workdir / 'orders.csv'}")
    return 1 if result.violations else 0
