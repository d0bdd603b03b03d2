"""``orderflow demo``: the whole choreography on one machine, in about a minute, from a fresh clone.

Starts a broker unless one is configured (Kafka; ``--transport nats|rabbitmq`` for the others), runs the four
services as separate processes on embedded SQLite, seeds stock and accounts, places a batch of orders — most
succeed, some are out of stock, some cannot be paid — and waits for them to settle; only then a few more run out of
time while billing is paused (SIGSTOP), so the pause never shows in the batch's figures. It prints what happened:
outcomes, compensations, the batch's throughput and latency (the deadline orders apart), and one order's timeline.
It checks the design's invariants before it exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from orderflow.events import catalog
from orderflow_dev import client
from orderflow_dev.kafka import ensure_broker
from orderflow_dev.postgres import PostgresServer, PostgresUnavailable
from orderflow_dev.stack import Stack
from orderflow_dev.wait import until

SKUS = {"SKU-1": 100_000, "SKU-2": 100_000, "SKU-3": 100_000, "SKU-RARE": 5}
RICH = [f"customer-{i}" for i in range(20)]
POOR = "customer-broke"
RICH_BALANCE = 100_000_000
POOR_BALANCE = 500


def _order_mix(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """~80% good orders, ~10% for a SKU that runs out, ~10% from a customer who cannot pay."""
    orders = []
    for i in range(n):
        roll = i % 10
        if roll == 3:
            items = [{"sku": "SKU-RARE", "quantity": 2, "unit_price_minor": 999}]
            customer = rng.choice(RICH)
        elif roll == 7:
            items = [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 4999}]
            customer = POOR
        else:
            skus = rng.sample(["SKU-1", "SKU-2", "SKU-3"], k=rng.randint(1, 3))
            items = [
                {"sku": s, "quantity": rng.randint(1, 3), "unit_price_minor": rng.choice([250, 1299, 4999])}
                for s in skus
            ]
            customer = rng.choice(RICH)
        orders.append({"customer_id": customer, "items": items})
    return orders


class Progress:
    """A one-line progress bar on stderr (no dependency; redraws at most 10 times a second)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.last = total, label, 0.0
        self.tty = sys.stderr.isatty()

    def show(self, done: int, extra: str = "", *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.1 if self.tty else 2.0):
            return
        self.last = now
        width = 30
        filled = int(width * done / max(self.total, 1))
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {extra}"
        sys.stderr.write(("\r" + line) if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _seconds_between(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


@dataclass(frozen=True)
class Figures:
    """What a demo run measured (the benchmark compares runs by these)."""

    orders: int
    throughput: float
    p50_ms: float
    p99_ms: float
    invariants_ok: bool


TRANSPORTS = ("kafka", "nats", "rabbitmq")


@contextlib.contextmanager
def local_broker(transport: str) -> Iterator[str]:
    """The address of a local broker for ``transport``: the one already configured or running, else a private one."""
    if transport == "kafka":
        with ensure_broker() as bootstrap:
            yield bootstrap
        return
    harness = importlib.import_module(f"orderflow_dev.{transport}")
    with harness.ensure_server() as url:
        yield url


def run(
    *,
    orders: int,
    deadline_orders: int,
    concurrency: int,
    seed: int,
    workdir: Path,
    postgres: bool = False,
    transport: str = "kafka",
) -> Figures:
    rng = random.Random(seed)
    prefix = f"demo{uuid.uuid4().hex[:8]}"
    print(f"OrderFlow demo: {orders} orders (+{deadline_orders} that will miss their deadline)")
    with local_broker(transport) as address, contextlib.ExitStack() as cleanup:
        urls = None
        if postgres:
            server = cleanup.enter_context(PostgresServer(durable=True))
            urls = {s: server.create_database(f"{prefix}_{s}") for s in catalog.SERVICES}
        where = "PostgreSQL (one database per service)" if postgres else f"SQLite in {workdir}"
        names = {"kafka": "Kafka", "nats": "NATS JetStream", "rabbitmq": "RabbitMQ"}
        print(f"  {names[transport]} at {address}; channels {prefix}.*; state on {where}; logs in {workdir}")
        bootstrap = address if transport == "kafka" else ""
        with Stack(
            bootstrap=bootstrap,
            prefix=prefix,
            workdir=workdir,
            database_urls=urls,
            transport=transport,
            transport_url=address,
        ) as stack:
            print("  services up: " + ", ".join(f"{n} {s.url}" for n, s in stack.services.items()))
            for sku, n in SKUS.items():
                stack.put_stock(sku, n)
            for customer in RICH:
                stack.put_account(customer, RICH_BALANCE)
            stack.put_account(POOR, POOR_BALANCE)

            batch = _await_all(stack, _place(stack, _order_mix(orders, rng), concurrency))
            # The deadline segment starts once the batch has settled: its SIGSTOP must not slow the batch down.
            late = _await_all(stack, _deadline_case(stack, deadline_orders))
            final = {**batch, **late}
            figures = _summary(stack, final, batch=list(batch))
            failures = _check(stack, final)
    if failures:
        print("INVARIANTS BROKEN:\n  " + "\n  ".join(failures))
        return dataclasses.replace(figures, invariants_ok=False)
    print("invariants: every order terminal once; stock and money conserved; compensation complete")
    return figures


def _place(stack: Stack, mix: list[dict[str, Any]], concurrency: int) -> list[str]:
    progress = Progress(len(mix), "placing ")
    placed: list[str] = []
    started = time.monotonic()

    def post(body: dict[str, Any]) -> str:
        order: dict[str, Any] = stack.place_order(body["customer_id"], body["items"], key=str(uuid.uuid4()))
        return str(order["order_id"])

    with ThreadPoolExecutor(concurrency) as pool:
        for order_id in pool.map(post, mix):
            placed.append(order_id)
            progress.show(len(placed))
    progress.show(len(placed), f"in {time.monotonic() - started:.1f}s", force=True)
    progress.close()
    return placed


def _deadline_case(stack: Stack, n: int) -> list[str]:
    """Pause billing, place orders with a 2 s deadline: shipping gives up, inventory releases, billing (resumed)
    then sees the cancellation and never charges — or refunds if it charged first."""
    if n <= 0:
        return []
    billing = stack["billing"]
    assert billing.process is not None
    os.kill(billing.process.pid, signal.SIGSTOP)
    try:
        ids = [
            str(
                stack.place_order(
                    rng_customer, [{"sku": "SKU-2", "quantity": 1, "unit_price_minor": 777}], deadline_seconds=2
                )["order_id"]
            )
            for rng_customer in RICH[:n]
        ]
        print(f"  billing paused (SIGSTOP); {n} orders with a 2 s deadline placed; waiting for shipping to give up")
        until(
            lambda: all(stack.order(i)["status"] == "CANCELLED" for i in ids),
            timeout=60,
            what="the deadline orders to be cancelled",
            interval=0.2,
        )
    finally:
        os.kill(billing.process.pid, signal.SIGCONT)
    print("  billing resumed (SIGCONT)")
    return ids


def _await_all(stack: Stack, ids: list[str]) -> dict[str, dict[str, Any]]:
    progress = Progress(len(ids), "settling")
    order_url = stack.url("order")

    def settled() -> bool:
        summary = client.ok("GET", f"{order_url}/orders")
        pending: int = summary["by_status"].get("PENDING", 0)
        progress.show(max(0, len(ids) - pending))  # orders placed earlier have settled already
        return pending == 0

    until(settled, timeout=300, what="every order to reach a terminal status", interval=0.1)
    progress.show(len(ids), force=True)
    progress.close()
    final = {i: stack.order(i) for i in ids}

    def compensated() -> bool:
        for i, o in final.items():
            if o["status"] == "CANCELLED" and not o["compensated"]:
                final[i] = stack.order(i)
        return all(o["compensated"] for o in final.values() if o["status"] == "CANCELLED")

    until(compensated, timeout=120, what="compensation to complete", interval=0.2)
    return final


def _summary(stack: Stack, final: dict[str, dict[str, Any]], *, batch: list[str]) -> Figures:
    """Outcomes of every order; throughput and latency of the main ``batch`` alone (not the deadline segment)."""
    outcomes = Counter(o["status"] + (f" ({o['reason']})" if o["reason"] else "") for o in final.values())
    normal = [final[i] for i in batch]
    late = [o for i, o in final.items() if i not in set(batch)]
    first = min(o["created_at"] for o in normal)
    last = max(o["terminal_at"] for o in normal)
    span = _seconds_between(first, last)
    released = sum(1 for o in final.values() if o["stock"] == "RELEASED")
    refunded = sum(1 for o in final.values() if o["payment"] == "REFUNDED")
    normal_latencies = [_seconds_between(o["created_at"], o["terminal_at"]) for o in normal]
    print("\nSummary")
    print(f"  orders: {len(final)}")
    for outcome, count in sorted(outcomes.items()):
        print(f"    {outcome:<32} {count:>6}")
    print(f"  compensations: {released} stock releases, {refunded} refunds")
    print(
        f"  throughput: {len(normal) / span:.1f} orders/s ({len(normal)} orders, first accepted to last decided "
        f"in {span:.2f}s)"
    )
    print(
        f"  latency (accepted -> terminal): p50 {_percentile(normal_latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {_percentile(normal_latencies, 0.99) * 1000:.0f} ms"
    )
    if late:
        late_latencies = [_seconds_between(o["created_at"], o["terminal_at"]) for o in late]
        print(
            f"  deadline segment (after the batch settled, billing paused): {len(late)} orders, "
            f"cancelled after p50 {_percentile(late_latencies, 0.5) * 1000:.0f} ms (their deadline: 2 s)"
        )
    shown = next((o for o in final.values() if o["reason"] == "deadline_exceeded"), None) or next(iter(final.values()))
    shipped = next((o for o in final.values() if o["status"] == "SHIPPED"), None)
    for order in filter(None, (shipped, shown)):
        print(
            f"\nTimeline of {order['order_id']} ({order['status']}{' ' + order['reason'] if order['reason'] else ''}):"
        )
        t0 = datetime.fromisoformat(order["created_at"])
        for step in order["timeline"]:
            offset = (datetime.fromisoformat(step["time"]) - t0).total_seconds() * 1000
            print(f"  +{offset:7.0f} ms  {step['service']:<10} {step['name']}")
    return Figures(
        orders=len(final),
        throughput=len(normal) / span,
        p50_ms=_percentile(normal_latencies, 0.5) * 1000,
        p99_ms=_percentile(normal_latencies, 0.99) * 1000,
        invariants_ok=True,
    )


def _check(stack: Stack, final: dict[str, dict[str, Any]]) -> list[str]:
    failures = [f"{i} is {o['status']}" for i, o in final.items() if o["status"] not in ("SHIPPED", "CANCELLED")]
    shipped_units: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    for o in final.values():
        if o["status"] == "SHIPPED":
            for line in o["items"]:
                shipped_units[line["sku"]] += line["quantity"]
            kept[o["customer_id"]] += o["total"]["amount_minor"]
    for sku, initial in SKUS.items():
        s = stack["inventory"].get(f"/stock/{sku}")
        if s["available"] + s["reserved"] + s["shipped"] != initial or s["shipped"] != shipped_units[sku]:
            failures.append(f"{sku}: {s} but initial {initial}, shipped by orders {shipped_units[sku]}")
    for customer in [*RICH, POOR]:
        initial = POOR_BALANCE if customer == POOR else RICH_BALANCE
        balance = stack["billing"].get(f"/accounts/{customer}")["balance_minor"]
        if balance + kept[customer] != initial:
            failures.append(f"{customer}: balance {balance} + kept {kept[customer]} != {initial}")
    return failures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orderflow demo", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300, help="orders to place (default 300)")
    parser.add_argument(
        "--deadline-orders",
        type=int,
        default=3,
        help="extra orders placed while billing is paused, so they miss their deadline (default 3)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="parallel HTTP clients (default 8)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the order mix")
    parser.add_argument("--workdir", type=Path, help="where logs and databases go (default: a temp dir)")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="keep the services' state in a private PostgreSQL server (needs Debian's postgresql) instead of SQLite",
    )
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="kafka",
        help="the broker: kafka (default), nats (JetStream) or rabbitmq, each a local server started for the demo",
    )
    args = parser.parse_args(argv)
    if args.orders < 10:
        parser.error("--orders must be at least 10 (the mix needs room for every kind of order)")
    if not 0 <= args.deadline_orders <= len(RICH):
        parser.error(f"--deadline-orders must be between 0 and {len(RICH)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="orderflow-demo-"))
    try:
        figures = run(
            orders=args.orders,
            deadline_orders=args.deadline_orders,
            concurrency=args.concurrency,
            seed=args.seed,
            workdir=workdir,
            postgres=args.postgres,
            transport=args.transport,
        )
    except PostgresUnavailable as e:
        parser.exit(2, f"orderflow demo --postgres: {e}\n")
    except KeyboardInterrupt:
        return 130
    return 0 if figures.invariants_ok else 1
