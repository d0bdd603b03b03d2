"""Benchmarks of the services on a real broker.

1. **Batching** — the consumer loop applies what librdkafka has fetched in one transaction (inbox, state, outbox)
   and commits offsets once per batch. Baseline: the same service with ``ORDERFLOW_BATCH_SIZE=1`` (one transaction
   and one offset commit per message). N ``OrderCreated`` events are preloaded; billing drains them; we report
   messages/s of the drain and the processing time per message from the service's own histogram, both as ratios.
2. **The demo on PostgreSQL next to SQLite** — the same order mix, throughput and latency, PostgreSQL as a ratio
   of SQLite.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from bench.saga import order_created
from orderflow.events import codec
from orderflow.events.event import Event
from orderflow_dev import demo, topics
from orderflow_dev.kafka import ensure_broker
from orderflow_dev.stack import Stack


def _order_created(customer: str) -> Event:
    """An OrderCreated whose deadline is already due (the drain measures the consumer, not the saga)."""
    return order_created(customer=customer, sku="SKU-1", deadline_in=timedelta(0))


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}\{{[^}}]*\}} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def drain(bootstrap: str, *, messages: int, batch_size: int, workdir: Path) -> tuple[float, float]:
    """Billing drains ``messages`` preloaded OrderCreated; returns (messages/s, processing seconds per message)."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    with Stack(
        bootstrap=bootstrap,
        prefix=prefix,
        workdir=workdir,
        services=["billing"],
        env={"ORDERFLOW_BATCH_SIZE": str(batch_size)},
    ) as stack:
        stack.put_account("bench", 10**12)
        stack["billing"].terminate()  # topics exist now; preload while nobody consumes
        topics.publish(bootstrap, [codec.encode(_order_created("bench"), prefix=prefix) for _ in range(messages)])
        stack["billing"].start()
        stack["billing"].wait_ready()
        started = time.perf_counter()
        topics.wait_caught_up(bootstrap, f"{prefix}-billing", [f"{prefix}.orders"], timeout=600)
        elapsed = time.perf_counter() - started
        metrics = stack["billing"].get("/metrics")
    processing = _metric(metrics, "orderflow_batch_processing_seconds_sum")
    return messages / elapsed, processing / messages


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench services", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="events to drain per run (default 3000)")
    parser.add_argument("--orders", type=int, default=300, help="orders per demo run (default 300)")
    parser.add_argument("--skip-demo", action="store_true", help="only the batching benchmark")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-"))
    with ensure_broker() as bootstrap:
        print(f"== batching: billing drains {args.messages} OrderCreated (real broker, SQLite)")
        one_rate, one_cost = drain(bootstrap, messages=args.messages, batch_size=1, workdir=workdir / "b1")
        batch_rate, batch_cost = drain(bootstrap, messages=args.messages, batch_size=500, workdir=workdir / "b500")
        print(f"  baseline, batch size 1:   {one_rate:8.0f} msg/s, {one_cost * 1e6:7.0f} us processing per message")
        print(f"  batched, batch size 500:  {batch_rate:8.0f} msg/s, {batch_cost * 1e6:7.0f} us processing per message")
        print(
            f"  ratio: throughput x{batch_rate / one_rate:.1f}, "
            f"processing cost per message x{batch_cost / one_cost:.2f}"
        )
    if args.skip_demo:
        return 0
    print(f"\n== the demo ({args.orders} orders) on SQLite, then on PostgreSQL, same broker and machine")
    runs = {}
    for name, postgres in (("SQLite", False), ("PostgreSQL", True)):
        runs[name] = demo.run(
            orders=args.orders, deadline_orders=3, concurrency=8, seed=7, workdir=workdir / name, postgres=postgres
        )
    s, p = runs["SQLite"], runs["PostgreSQL"]
    print("\n  database     orders/s   p50 ms   p99 ms")
    for name, f in runs.items():
        print(f"  {name:<12} {f.throughput:8.1f} {f.p50_ms:8.0f} {f.p99_ms:8.0f}")
    print(
        f"  PostgreSQL / SQLite: throughput x{p.throughput / s.throughput:.2f}, "
        f"p50 x{p.p50_ms / s.p50_ms:.2f}, p99 x{p.p99_ms / s.p99_ms:.2f}"
    )
    return 0 if all(f.invariants_ok for f in runs.values()) else 1
