"""How fast ``orderflow trace`` finds an order's events among 100,000 others (``python -m bench trace``).

The four services run on a real broker. One order (``before``) is placed and settles; then, with the services
stopped, ``--filler`` events of other orders are put on ``orders`` (and a fifth of that on each other topic), the
services' groups are moved past them (as ``kafka-consumer-groups --reset-offsets --to-latest`` would, so the
services do not spend the run on them), and the services restart; a second order (``after``) is placed and
settles. Each order is traced three ways, in this process, median of ``--repeat`` runs:

* **baseline**: read every partition of every topic from start to end and keep the order's messages — what a
  user does by hand with a console consumer;
* **key partition**: only the partition the order id hashes to, whole (``orderflow trace --full-scan``);
* **key partition, lifetime** (the default): that partition, only from the order's creation to its last event.

Figures are ratios to the baseline of the same run, with the messages each read. The whole command (a process:
interpreter, imports, the read, the tables) is timed too, next to ``python -c pass`` in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from orderflow.events import Event, catalog, codec, isoformat, new_order_id, utcnow
from orderflow.observe import trace
from orderflow.observe.reader import Reader
from orderflow.observe.target import Target
from orderflow_dev import topics
from orderflow_dev.kafka import ensure_broker
from orderflow_dev.stack import Stack

LINE = [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 100}]


def _event(event_type: str, data: dict[str, object]) -> Event:
    order_id = new_order_id()
    entry = catalog.get(event_type)
    return Event(type=event_type, source=entry.source, subject=order_id, data={"order_id": order_id, **data})


Raw = tuple[str, bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]


def _filler(prefix: str, count: int) -> list[Raw]:
    """``count`` events of other orders on ``orders`` and ``count // 5`` on each other topic, each with its own key."""
    now = isoformat(utcnow())
    money = {"amount_minor": 100, "currency": "EUR"}
    templates = {
        catalog.ORDER_CREATED: _event(catalog.ORDER_CREATED, {
            "customer_id": "filler", "items": LINE, "total": money, "deadline": now, "created_at": now}),
        catalog.STOCK_RESERVED: _event(catalog.STOCK_RESERVED, {"items": [{"sku": "SKU-1", "quantity": 1}]}),
        catalog.PAYMENT_CHARGED: _event(catalog.PAYMENT_CHARGED, {"customer_id": "filler", "amount": money}),
        catalog.SHIPMENT_DISPATCHED: _event(
            catalog.SHIPMENT_DISPATCHED, {"shipment_id": "shp_x", "dispatched_at": now}
        ),
    }
    out: list[Raw] = []
    for event_type, event in templates.items():
        record = codec.encode(event, prefix=prefix)
        n = count if event_type == catalog.ORDER_CREATED else count // 5
        for _ in range(n):
            key = new_order_id()
            swap = {"ce_id": str(uuid.uuid4()).encode(), "ce_subject": key.encode(), "ce_partitionkey": key.encode()}
            out.append((record.topic, key.encode(), record.value, [(k, swap.get(k, v)) for k, v in record.headers]))
    return out


def _skip_filler(bootstrap: str, prefix: str) -> None:
    """Move every service's group to the end of the topics (the services are stopped: the groups are empty)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tps = [TopicPartition(t, p) for t in catalog.all_topics(prefix) for p in range(3)]
    ends = {tp: f.result(30).offset for tp, f in admin.list_offsets({tp: OffsetSpec.latest() for tp in tps}).items()}
    for service in catalog.SERVICES:
        wanted = [TopicPartition(tp.topic, tp.partition, ends[tp]) for tp in tps
                  if tp.topic in catalog.topics_consumed_by(service, prefix)]
        request = [ConsumerGroupTopicPartitions(f"{prefix}-{service}", wanted)]
        for future in admin.alter_consumer_group_offsets(request).values():
            future.result(30)


def _median(run: Callable[[], trace.Trace], repeat: int) -> tuple[float, int, trace.Trace]:
    times, story = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        story = run()
        times.append(time.perf_counter() - started)
    assert story is not None
    return statistics.median(times), sum(story.scanned.values()), story


def _process_seconds(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench trace", description=__doc__.splitlines()[0])
    parser.add_argument("--filler", type=int, default=100_000, help="events of other orders on orders (100000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; the median is reported (5)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-trace-"))
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    with ensure_broker() as bootstrap, Stack(bootstrap=bootstrap, prefix=prefix, workdir=workdir) as stack:
        stack.put_stock("SKU-1", 10**6)
        stack.put_account("bench", 10**12)
        before = stack.place_order("bench", LINE)["order_id"]
        stack.wait_terminal([before])
        for service in stack.services.values():
            service.terminate()
        filler = _filler(prefix, args.filler)
        started = time.perf_counter()
        topics.publish(bootstrap, filler)
        print(f"{len(filler):,} filler events published in {time.perf_counter() - started:.1f}s", flush=True)
        _skip_filler(bootstrap, prefix)
        for service in stack.services.values():
            service.start()
        for service in stack.services.values():
            service.wait_ready()
        after = stack.place_order("bench", LINE)["order_id"]
        stack.wait_terminal([after])
        urls = {name: s.url for name, s in stack.services.items()}
        target = Target(kafka={"bootstrap.servers": bootstrap}, prefix=prefix, urls=urls)
        everywhere = Target(kafka={"bootstrap.servers": bootstrap}, prefix=prefix, urls=urls, partitioner="random")
        print(f"{'order':8} {'way':28} {'median ms':>10} {'x baseline':>11} {'messages read':>14}")
        with Reader(target.kafka) as reader:
            for name, order_id in (("before", before), ("after", after)):
                ways = {
                    "baseline (every partition)": lambda o=order_id: trace.trace(everywhere, o, reader=reader,
                                                                                 full_scan=True),
                    "key partition": lambda o=order_id: trace.trace(target, o, reader=reader, full_scan=True),
                    "key partition, lifetime": lambda o=order_id: trace.trace(target, o, reader=reader),
                }
                base = None
                for way, run in ways.items():
                    seconds, read, story = _median(run, args.repeat)
                    assert story.status == "SHIPPED" and len(story.events) == 4 and not story.waits, story.waits
                    base = base or seconds
                    print(f"{name:8} {way:28} {seconds * 1000:10.1f} {seconds / base:11.3f} {read:14,}")
        command = [sys.executable, "-m", "orderflow.cli", "trace", after, f"--bootstrap={bootstrap}",
                   f"--prefix={prefix}", *[f"--{n}-url={u}" for n, u in urls.items()]]
        whole = _process_seconds(command, args.repeat)
        empty = _process_seconds([sys.executable, "-c", "pass"], args.repeat)
        print(f"`orderflow trace` as a process: {whole * 1000:.0f} ms median; `python -c pass`: {empty * 1000:.0f} ms"
              f" ({whole / empty:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
