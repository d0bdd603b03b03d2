"""The outbox's fast path: rows a transaction committed are published from memory, the table scan is the safety net.

Both paths feed one relay, so each test counts what reached Kafka: every committed event exactly once (none lost
to the fast path skipping the table, none published twice because a scan found a row that was also handed over),
and the events of one order in the order they were committed.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orderflow.billing import definition as billing
from orderflow.errors import BrokerUnavailable
from orderflow.events import OrderId, catalog, new_order_id
from orderflow.runtime import outbox
from orderflow.runtime.config import Settings
from orderflow.runtime.context import Runtime
from orderflow.runtime.tx import Tx
from orderflow.transport import kafka as kafka_transport
from orderflow.transport.kafka import topics
from orderflow_dev import topics as kafka
from orderflow_dev.wait import until

pytestmark = pytest.mark.kafka

REASONS = ["insufficient_funds", "unknown_account", "currency_mismatch"]


@pytest.fixture
def runtime(tmp_path: Path, kafka_bootstrap: str, unique_prefix: str) -> Iterator[Runtime]:
    settings = Settings(
        service="billing",
        kafka_bootstrap=kafka_bootstrap,
        database_url=f"sqlite:///{tmp_path / 'billing.db'}",
        topic_prefix=unique_prefix,
    )
    topics.ensure(
        AdminClient({"bootstrap.servers": kafka_bootstrap}), [_topic(unique_prefix)], partitions=3, replication=1
    )
    rt = Runtime(service="billing", metadata=billing.metadata, settings=settings)
    yield rt
    rt.publisher.close()
    rt.store.dispose()


def _topic(prefix: str) -> str:
    return catalog.get(catalog.PAYMENT_FAILED).topic(prefix)


def _emit(tx: Tx, order_id: OrderId, n: int) -> None:
    """``n`` events of one order; their reasons say in which order they were emitted."""
    for i in range(n):
        tx.emit(
            catalog.PAYMENT_FAILED,
            {"order_id": order_id, "customer_id": "alice", "reason": REASONS[i % len(REASONS)]},
            subject=order_id,
        )


def _left_behind(rt: Runtime, order_id: OrderId, n: int) -> None:
    """Rows committed without a handover: what a crash between COMMIT and the relay leaves in the table."""
    with rt.store.write() as conn:
        tx = Tx(conn, service="billing", prefix=rt.settings.topic_prefix)
        _emit(tx, order_id, n)
        outbox.append(conn, rt.tables["outbox"], tx.pending)


def _scanning(relay: outbox.Relay) -> tuple[threading.Event, threading.Thread]:
    """The relay in a loop that reads the table on every cycle: the race the handover lock must win."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            relay.relay_once(scan=True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return stop, thread


def _relay_of(rt: Runtime, holder: str) -> outbox.Relay:
    """Another relay on ``rt``'s outbox and broker, holding the lease as ``holder``."""
    return outbox.Relay(
        store=rt.store,
        outbox=rt.tables["outbox"],
        lease=rt.tables["outbox_lease"],
        publisher=rt.publisher,
        metrics=rt.metrics,
        holder=holder,
    )


def _published(bootstrap: str, prefix: str, expected: int) -> list[kafka.Read]:
    reads = kafka.read_all(bootstrap, _topic(prefix), at_least=expected, timeout=60)
    assert len(reads) == expected, f"{len(reads)} events on the topic, {expected} committed"
    return reads


def test_handed_over_and_left_behind_rows_each_reach_kafka_once_in_commit_order(
    runtime: Runtime, kafka_bootstrap: str, unique_prefix: str
) -> None:
    """Regression guard for the fast path: with scans as frequent as commits, racing four committing threads,
    no row is published twice (scan and handover both) and none is lost (neither)."""
    leftover = new_order_id()
    _left_behind(runtime, leftover, 3)
    relay = runtime.relay
    stop, thread = _scanning(relay)
    # The leftovers go first (and warm the producer up), so the commits below race scans, not a first connection.
    until(lambda: relay.backlog() == 0, timeout=60, what="the rows a crash left to be relayed")
    per_thread, per_tx = 40, 3
    orders: dict[int, list[OrderId]] = defaultdict(list)

    def commit(worker: int) -> None:
        order_id = new_order_id()
        orders[worker].append(order_id)
        for _ in range(per_thread):
            with runtime.transaction() as tx:
                _emit(tx, order_id, per_tx)

    workers = [threading.Thread(target=commit, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    until(lambda: relay.backlog() == 0, timeout=60, what="the outbox to be empty")
    stop.set()
    thread.join(10)

    total = 3 + 4 * per_thread * per_tx
    reads = _published(kafka_bootstrap, unique_prefix, total)
    ids = Counter(r.headers["ce_id"] for r in reads)
    assert max(ids.values()) == 1, f"published twice: {[i for i, n in ids.items() if n > 1][:5]}"
    by_order: dict[str, list[str]] = defaultdict(list)
    for r in sorted(reads, key=lambda r: (r.partition, r.offset)):
        by_order[r.headers["ce_subject"].decode()].append(r.event().data["reason"])
    assert by_order[leftover] == REASONS
    for order_ids in orders.values():
        (order_id,) = order_ids
        assert by_order[order_id] == REASONS * per_thread, "the events of one order left in commit order"


def test_a_failed_publish_is_retried_from_the_table_not_lost(
    runtime: Runtime, kafka_bootstrap: str, unique_prefix: str
) -> None:
    relay = runtime.relay
    good = relay.publisher
    nobody = Producer({"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 300})  # nobody there
    relay.publisher = kafka_transport.KafkaPublisher(nobody)
    order_id = new_order_id()
    with runtime.transaction() as tx:
        _emit(tx, order_id, 2)
    with pytest.raises(BrokerUnavailable):
        relay.relay_once()
    assert relay.backlog() == 2, "unacknowledged rows stay in the outbox"
    relay.publisher = good
    assert relay.relay_once() == 2  # the next cycle reads them back from the table
    assert relay.relay_once() == 0
    reads = _published(kafka_bootstrap, unique_prefix, 2)
    assert [r.event().data["reason"] for r in reads] == REASONS[:2]


def test_rows_handed_to_a_replica_without_the_lease_are_published_by_the_holder(
    runtime: Runtime, kafka_bootstrap: str, unique_prefix: str
) -> None:
    holder = _relay_of(runtime, "the-other-replica")
    assert holder.relay_once() == 0  # takes the lease
    order_id = new_order_id()
    with runtime.transaction() as tx:  # handed to runtime.relay, which does not hold the lease
        _emit(tx, order_id, 3)
    assert runtime.relay.relay_once() == 0
    assert holder.relay_once(scan=True) == 3
    assert runtime.relay.relay_once() == 0 and holder.relay_once(scan=True) == 0
    reads = _published(kafka_bootstrap, unique_prefix, 3)
    assert [r.event().data["reason"] for r in reads] == REASONS


def _rows(rt: Runtime) -> int:
    """Rows in the outbox table, published or not."""
    with rt.store.read() as conn:
        return len(conn.execute(rt.tables["outbox"].select()).all())


def test_acknowledged_rows_are_deleted_together_later_and_no_scan_publishes_them_again(
    runtime: Runtime, kafka_bootstrap: str, unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = runtime.relay
    with runtime.transaction() as tx:
        _emit(tx, new_order_id(), 3)
    assert relay.relay_once() == 3
    assert _rows(runtime) == 3, "deleted at once: the delete was meant to wait for DELETE_DELAY_S"
    assert relay.backlog() == 0, "acknowledged rows are not backlog"
    assert relay.relay_once(scan=True) == 0, "a scan published acknowledged rows again"
    with runtime.transaction() as tx:
        _emit(tx, new_order_id(), 2)
    assert relay.relay_once(scan=True) == 2  # only the new ones
    assert _rows(runtime) == 5
    monkeypatch.setattr(outbox, "DELETE_DELAY_S", 0.0)  # the delay has passed
    assert relay.relay_once() == 0
    assert _rows(runtime) == 0
    reads = _published(kafka_bootstrap, unique_prefix, 5)
    assert len({r.headers["ce_id"] for r in reads}) == 5


def test_rows_acknowledged_but_not_yet_deleted_are_published_again_after_a_crash(
    runtime: Runtime, kafka_bootstrap: str, unique_prefix: str
) -> None:
    """At least once, as for a crash between publish and delete: the restarted relay finds them in the table."""
    with runtime.transaction() as tx:
        _emit(tx, new_order_id(), 2)
    assert runtime.relay.relay_once() == 2
    restarted = _relay_of(runtime, runtime.relay.holder)  # the same replica, restarted: it takes its lease back
    assert restarted.relay_once(scan=True) == 2
    reads = _published(kafka_bootstrap, unique_prefix, 4)
    assert sorted(Counter(r.headers["ce_id"] for r in reads).values()) == [2, 2]


def test_drain_deletes_what_it_published(runtime: Runtime, kafka_bootstrap: str, unique_prefix: str) -> None:
    with runtime.transaction() as tx:
        _emit(tx, new_order_id(), 3)
    runtime.relay.drain(10)
    assert _rows(runtime) == 0
    _published(kafka_bootstrap, unique_prefix, 3)
