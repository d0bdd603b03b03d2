"""``python -m bench transports``: the saga on Kafka, NATS JetStream and RabbitMQ, each a ratio to Kafka in one run.

For each broker (a local server started for the run: Kafka from its jars, Debian's ``nats-server`` and
``rabbitmq-server``), the four services on SQLite and that broker:

* **burst**: ``--orders`` OrderCreated published at once on the orders channel (through the transport seam, so
  every broker is fed the same way); orders/s until as many dispatch decisions are on the shipments channel;
* **HTTP capacity**: orders/s that 16 back-to-back clients get accepted (``POST /orders``);
* **idle latency**: one order at a time, accepted to terminal (p50/p99).

The figures are noisy on a shared machine; the ratios (each broker against Kafka, same run, same machine) are the
result.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import saga
from orderflow.events import catalog, codec
from orderflow_dev import channels
from orderflow_dev.demo import TRANSPORTS, local_broker
from orderflow_dev.stack import Stack


@dataclass(frozen=True)
class Figures:
    burst: float
    capacity: float
    idle: saga.Latency


@contextlib.contextmanager
def _stack(transport: str, address: str, workdir: Path) -> Iterator[Stack]:
    with Stack(
        bootstrap=address if transport == "kafka" else "",
        transport=transport,
        transport_url=address,
        prefix=f"tr{uuid.uuid4().hex[:8]}",
        workdir=workdir,
        env={"ORDERFLOW_TOPIC_PARTITIONS": str(saga.PARTITIONS), "ORDERFLOW_ORDER_DEADLINE_S": "3600"},
    ) as stack:
        for sku in saga.SKUS:
            stack.put_stock(sku, 10**9)
        for customer in saga.CUSTOMERS:
            stack.put_account(customer, 10**12)
        yield stack


def burst(stack: Stack, n: int, *, timeout: float = 900) -> float:
    """Publish ``n`` OrderCreated at once; orders/s until ``n`` dispatch decisions are on the shipments channel."""
    events = [
        saga.order_created(customer=saga.CUSTOMERS[i % len(saga.CUSTOMERS)], sku=saga.SKUS[i % len(saga.SKUS)])
        for i in range(n)
    ]
    records = [codec.encode(e, prefix=stack.prefix) for e in events]
    with channels.Reader(stack, catalog.get(catalog.SHIPMENT_DISPATCHED).topic(stack.prefix)) as decisions:
        started = time.perf_counter()
        channels.publish(stack, records)
        decisions.wait(n, timeout=timeout)
        return n / (time.perf_counter() - started)


def run(transport: str, *, orders: int, idle_orders: int, workdir: Path) -> Figures:
    with local_broker(transport) as address, _stack(transport, address, workdir) as stack:
        rate = burst(stack, orders)
        print(f"    burst: {rate:8.0f} orders/s")
        capacity = saga.http_capacity(stack, seconds=10)
        print(f"    HTTP capacity (16 clients back to back): {capacity:8.0f} orders/s")
        still = saga.idle(stack, orders=idle_orders)
        print(f"    idle: {still}")
        return Figures(rate, capacity, still)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench transports", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders in the burst (default 2000)")
    parser.add_argument("--idle-orders", type=int, default=20, help="orders of the idle latency (default 20)")
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS))
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-transports-"))
    figures: dict[str, Figures] = {}
    for transport in args.transports:
        print(f"== {transport}: {args.orders} orders in a burst, HTTP capacity, {args.idle_orders} idle orders")
        figures[transport] = run(
            transport, orders=args.orders, idle_orders=args.idle_orders, workdir=workdir / transport
        )
    base = figures.get("kafka")
    print("\n  transport   burst/s  x Kafka   HTTP/s  x Kafka   idle p50 ms  x Kafka   idle p99 ms  x Kafka")
    for name, f in figures.items():
        r = (
            (f.burst / base.burst, f.capacity / base.capacity, f.idle.p50_ms / base.idle.p50_ms,
             f.idle.p99_ms / base.idle.p99_ms)
            if base
            else (1.0, 1.0, 1.0, 1.0)
        )
        print(
            f"  {name:<10} {f.burst:8.0f} {r[0]:8.2f} {f.capacity:8.0f} {r[1]:8.2f} "
            f"{f.idle.p50_ms:12.1f} {r[2]:8.2f} {f.idle.p99_ms:12.1f} {r[3]:8.2f}"
        )
    return 0
