"""``make bench-saga``: how fast the saga runs, against what raw Kafka can do on the same machine in the same run.

1. **Ceiling** — four plain confluent-kafka processes playing the services (``bench/ceiling.py``): N
   ``OrderCreated`` are published to the orders topic; the time until N decisions are on the shipments topic.
2. **Saga burst** — the same N ``OrderCreated`` published straight to the orders topic while the four real services
   run (inbox, outbox, offsets after commit, …); the time until N decisions are on the shipments topic. Reported
   as orders/s and as **the ratio saga/ceiling**.
3. **HTTP end to end** — first the capacity through ``POST /orders`` (16 clients placing orders back to back;
   each order then also costs an HTTP request and a transaction of its own, which the burst does not), then
   orders at a steady rate of half that capacity for ``--http-seconds``; p50/p95/p99 of accepted → terminal
   (the order service's own timestamps).
4. **Idle latency** — orders placed one at a time, each waited for: accepted → terminal.

SQLite by default. ``--postgres`` then runs 2-4 again on PostgreSQL (figures as ratios to SQLite) and the burst
with two replicas of every service (the scale-out figure, as a ratio to one replica).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.ceiling import Ceiling
from orderflow.events import catalog, codec
from orderflow.events.event import Event, isoformat, new_order_id, utcnow
from orderflow.transport import Record
from orderflow.transport.kafka import topics as runtime_topics
from orderflow_dev import client
from orderflow_dev.kafka import ensure_broker
from orderflow_dev.postgres import PostgresServer
from orderflow_dev.stack import Stack
from orderflow_dev.wait import until

PARTITIONS = 3
CUSTOMERS = [f"bench-{i}" for i in range(64)]
SKUS = [f"SKU-B{i}" for i in range(64)]


def order_created(*, customer: str, sku: str, deadline_in: timedelta = timedelta(hours=1)) -> Event:
    """A valid OrderCreated for one unit of ``sku``, as the order service would publish it."""
    oid = new_order_id()
    now = utcnow()
    return Event(
        type=catalog.ORDER_CREATED,
        source="/orderflow/order",
        subject=oid,
        data={
            "order_id": oid,
            "customer_id": customer,
            "items": [{"sku": sku, "quantity": 1, "unit_price_minor": 100}],
            "total": {"amount_minor": 100, "currency": "EUR"},
            "deadline": isoformat(now + deadline_in),
            "created_at": isoformat(now),
        },
    )


def _all_topics(prefix: str) -> list[str]:
    return sorted({e.topic(prefix) for e in catalog.CATALOG.values()})


class Counter:
    """How many messages a topic holds (the sum of its partitions' high watermarks)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"counter-{uuid.uuid4().hex}"})
        meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.partitions = [TopicPartition(topic, p) for p in meta.partitions]

    def count(self) -> int:
        return sum(self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in self.partitions)

    def close(self) -> None:
        self.consumer.close()


def burst(bootstrap: str, prefix: str, n: int, *, timeout: float = 900) -> float:
    """Publish ``n`` OrderCreated to the orders topic; return orders/s until ``n`` decisions are on shipments."""
    events = (order_created(customer=CUSTOMERS[i % len(CUSTOMERS)], sku=SKUS[i % len(SKUS)]) for i in range(n))
    records = [codec.encode(event, prefix=prefix) for event in events]
    counter = Counter(bootstrap, catalog.get(catalog.SHIPMENT_DISPATCHED).topic(prefix))
    base = counter.count()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    started = time.perf_counter()
    _produce(producer, records)
    try:
        until(lambda: counter.count() - base >= n, timeout=timeout, what=f"{n} decisions on shipments", interval=0.02)
    finally:
        counter.close()
    return n / (time.perf_counter() - started)


def _produce(producer: Producer, records: Sequence[Record]) -> None:
    for r in records:
        while True:
            try:
                producer.produce(r.topic, value=r.value, key=r.key, headers=list(r.headers))
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    assert producer.flush(60) == 0, "burst not delivered"


def ceiling(bootstrap: str, n: int) -> float:
    prefix = f"ceil{uuid.uuid4().hex[:8]}"
    runtime_topics.ensure(
        AdminClient({"bootstrap.servers": bootstrap}), _all_topics(prefix), partitions=PARTITIONS, replication=1
    )
    with Ceiling(bootstrap, prefix):
        return burst(bootstrap, prefix, n)


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    count: int

    def __str__(self) -> str:
        return f"p50 {self.p50_ms:6.1f} ms  p95 {self.p95_ms:6.1f} ms  p99 {self.p99_ms:6.1f} ms  ({self.count} orders)"


def _latency(values: Sequence[float]) -> Latency:
    ordered = sorted(values)

    def q(x: float) -> float:
        return ordered[min(len(ordered) - 1, int(x * len(ordered)))] * 1000

    return Latency(q(0.5), q(0.95), q(0.99), len(ordered))


def _accepted_to_terminal(order: dict[str, object]) -> float:
    return (
        datetime.fromisoformat(str(order["terminal_at"])) - datetime.fromisoformat(str(order["created_at"]))
    ).total_seconds()


def _items(i: int) -> list[dict[str, object]]:
    return [{"sku": SKUS[i % len(SKUS)], "quantity": 1, "unit_price_minor": 100}]


def http_capacity(stack: Stack, *, seconds: float, clients: int = 16) -> float:
    """Orders/s end to end through ``POST /orders`` with ``clients`` placing orders back to back for ``seconds``
    (first accepted to last terminal): what the whole flow sustains when every order also costs an HTTP request
    and its own transaction in the order service."""
    end = time.monotonic() + seconds
    lock = threading.Lock()
    ids: list[str] = []
    refused: list[int] = []

    def client_loop(c: int) -> None:
        i = c
        while time.monotonic() < end:
            i += clients
            try:
                order = client.ok(
                    "POST",
                    f"{stack.url('order')}/orders",
                    {"customer_id": CUSTOMERS[i % len(CUSTOMERS)], "currency": "EUR", "items": _items(i)},
                    timeout=60,
                )
            except OSError:  # refused or reset: the server's accept queue overflowed; not an order
                with lock:
                    refused.append(i)
                continue
            with lock:
                ids.append(str(order["order_id"]))

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    if refused:
        print(f"    ({len(refused)} connection(s) refused or reset during the capacity run)")
    orders = list(_settled(stack, ids).values())
    first = min(datetime.fromisoformat(str(o["created_at"])) for o in orders)
    last = max(datetime.fromisoformat(str(o["terminal_at"])) for o in orders)
    return len(orders) / (last - first).total_seconds()


def http_steady(stack: Stack, *, rate: float, seconds: float) -> Latency:
    """Place orders through ``POST /orders`` at ``rate``/s (open loop) for ``seconds``; accepted → terminal."""
    total = max(1, int(rate * seconds))
    started = time.monotonic() + 0.2
    lock = threading.Lock()
    ids: list[str] = []
    failed: list[str] = []

    def place(i: int) -> None:
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing an open-loop load generator, not a synchronisation
        try:
            order = stack.place_order(CUSTOMERS[i % len(CUSTOMERS)], _items(i))
        except (OSError, AssertionError) as e:  # a timeout, or an error status: counted, reported
            with lock:
                failed.append(f"{type(e).__name__}: {e}")
            return
        with lock:
            ids.append(str(order["order_id"]))

    with ThreadPoolExecutor(64) as pool:
        list(pool.map(place, range(total)))
    lag = time.monotonic() - (started + total / rate)
    if lag > 1:
        print(f"    (the load generator fell {lag:.1f}s behind its schedule: the service did not keep up)")
    if failed:
        print(f"    ({len(failed)} of {total} POST /orders failed, e.g. {failed[0]})")
    return _latency([_accepted_to_terminal(o) for o in _settled(stack, ids).values()])


def _settled(stack: Stack, ids: Sequence[str]) -> dict[str, dict[str, object]]:
    order_url = stack.url("order")
    until(
        lambda: client.ok("GET", f"{order_url}/orders")["by_status"].get("PENDING", 0) == 0,
        timeout=300,
        what="every order to be terminal",
        interval=0.1,
    )
    with ThreadPoolExecutor(8) as pool:
        return dict(zip(ids, pool.map(stack.order, ids), strict=True))


def idle(stack: Stack, *, orders: int) -> Latency:
    """One order at a time, each waited for until terminal."""
    values = []
    for i in range(orders):
        order_id = str(stack.place_order(CUSTOMERS[i % len(CUSTOMERS)], _items(i))["order_id"])

        def terminal(order_id: str = order_id) -> dict[str, object] | None:
            order = stack.order(order_id)
            return order if order["status"] != "PENDING" else None

        done = until(
            terminal,
            timeout=30,
            what=f"order {order_id} to be terminal",
            # The figure is the service's own timestamps (accepted → terminal), so polling faster would not sharpen
            # it, only load the order service that is finishing the saga.
            interval=0.01,
        )
        values.append(_accepted_to_terminal(done))
    return _latency(values)


@dataclass(frozen=True)
class SagaFigures:
    burst: float
    http: Latency | None
    idle: Latency | None
    http_rate: float
    http_capacity: float = 0.0


@contextlib.contextmanager
def _stack(bootstrap: str, workdir: Path, urls: dict[str, str] | None, replicas: int) -> Iterator[Stack]:
    prefix = f"saga{uuid.uuid4().hex[:8]}"
    with Stack(
        bootstrap=bootstrap,
        prefix=prefix,
        workdir=workdir,
        database_urls=urls,
        env={"ORDERFLOW_TOPIC_PARTITIONS": str(PARTITIONS), "ORDERFLOW_ORDER_DEADLINE_S": "3600"},
    ) as stack:
        for name in catalog.SERVICES:
            for _ in range(replicas - 1):
                stack.add_replica(name)
        for sku in SKUS:
            stack.put_stock(sku, 10**9)
        for customer in CUSTOMERS:
            stack.put_account(customer, 10**12)
        yield stack


def saga(
    bootstrap: str,
    n: int,
    *,
    workdir: Path,
    urls: dict[str, str] | None = None,
    replicas: int = 1,
    http_seconds: float = 30,
    idle_orders: int = 30,
    latency: bool = True,
) -> SagaFigures:
    with _stack(bootstrap, workdir, urls, replicas) as stack:
        rate = burst(bootstrap, stack.prefix, n)
        print(f"    burst: {rate:8.0f} orders/s")
        if not latency:
            return SagaFigures(rate, None, None, 0.0)
        capacity = http_capacity(stack, seconds=min(15.0, http_seconds))
        print(f"    HTTP capacity (16 clients back to back): {capacity:8.0f} orders/s")
        http = http_steady(stack, rate=capacity / 2, seconds=http_seconds)
        print(f"    HTTP at half of it, {capacity / 2:.0f} orders/s: {http}")
        still = idle(stack, orders=idle_orders)
        print(f"    idle: {still}")
        return SagaFigures(rate, http, still, capacity / 2, capacity)


def _databases(server: PostgresServer, tag: str) -> dict[str, str]:
    return {s: server.create_database(f"{tag}_{s}") for s in catalog.SERVICES}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench saga", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20000, help="orders per burst (default 20000)")
    parser.add_argument("--http-seconds", type=float, default=30, help="duration of the HTTP run (default 30)")
    parser.add_argument("--idle-orders", type=int, default=30, help="sequential orders for idle latency (default 30)")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL, and two replicas of each")
    parser.add_argument("--skip-latency", action="store_true", help="bursts only (no HTTP and idle runs)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-saga-"))
    kw = {"http_seconds": args.http_seconds, "idle_orders": args.idle_orders, "latency": not args.skip_latency}
    with ensure_broker() as bootstrap:
        print(f"== saga benchmark: bursts of {args.orders} orders, broker {bootstrap}, logs in {workdir}")
        print("  raw-Kafka ceiling (4 plain confluent-kafka processes, no database)")
        top = ceiling(bootstrap, args.orders)
        print(f"    burst: {top:8.0f} orders/s")
        print("  OrderFlow on SQLite")
        lite = saga(bootstrap, args.orders, workdir=workdir / "sqlite", **kw)
        pg = scaled = None
        if args.postgres:
            with PostgresServer(durable=True) as server:
                print("  OrderFlow on PostgreSQL")
                pg = saga(bootstrap, args.orders, workdir=workdir / "pg", urls=_databases(server, "one"), **kw)
                print("  OrderFlow on PostgreSQL, two replicas of every service")
                scaled = saga(
                    bootstrap,
                    args.orders,
                    workdir=workdir / "pg2",
                    urls=_databases(server, "two"),
                    replicas=2,
                    latency=False,
                )
    print("\nSummary")
    print(f"  ceiling (raw Kafka)        {top:8.0f} orders/s")
    print(f"  saga burst, SQLite         {lite.burst:8.0f} orders/s   saga/ceiling = {lite.burst / top:.3f}")
    if lite.http and lite.idle:
        print(f"  HTTP capacity, SQLite      {lite.http_capacity:8.0f} orders/s")
        print(f"  HTTP at {lite.http_rate:.0f}/s, SQLite     {lite.http}")
        print(f"  idle, SQLite               {lite.idle}")
    if pg is not None and scaled is not None:
        print(
            f"  saga burst, PostgreSQL     {pg.burst:8.0f} orders/s   saga/ceiling = {pg.burst / top:.3f}"
            f"   PostgreSQL/SQLite = {pg.burst / lite.burst:.2f}"
        )
        if pg.http and pg.idle and lite.http and lite.idle:
            print(
                f"  HTTP at {pg.http_rate:.0f}/s, PostgreSQL {pg.http}   p99 PostgreSQL/SQLite = "
                f"{pg.http.p99_ms / lite.http.p99_ms:.2f}"
            )
            print(
                f"  idle, PostgreSQL           {pg.idle}   p50 PostgreSQL/SQLite = "
                f"{pg.idle.p50_ms / lite.idle.p50_ms:.2f}"
            )
        print(
            f"  two replicas, PostgreSQL   {scaled.burst:8.0f} orders/s   "
            f"two/one replica = {scaled.burst / pg.burst:.2f}"
        )
    return 0
