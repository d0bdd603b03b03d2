"""The outbox: events a transaction decided to publish, stored in that transaction, relayed to Kafka after it.

Nothing is published that was not committed, and nothing committed is lost: the relay deletes a row only once
Kafka has acknowledged it (idempotent producer, ``acks=all``). A crash between publish and delete publishes the row
again, which the consumers' inboxes absorb. Rows are relayed in commit order (``seq``) by a single relay at a time
— a lease in the database elects it when several replicas share one PostgreSQL — so events of one order keep their
order on their partition.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from confluent_kafka import KafkaError, KafkaException, Producer
from sqlalchemy.engine import Connection

from orderflow.errors import BrokerUnavailable, Retryable
from orderflow.events import KafkaRecord, utcnow
from orderflow.runtime import db, faults, tracing
from orderflow.runtime.backoff import Backoff
from orderflow.runtime.config import KafkaConfig, Settings
from orderflow.runtime.db import Store
from orderflow.runtime.metrics import Metrics

log = logging.getLogger(__name__)

# A dead relay's lease passes to another replica within this; a restarted one takes its own back at once.
LEASE_SECONDS: Final = 6.0
_LEASE_NAME: Final = "outbox-relay"
# What a released lease says: expired long ago, whatever the clocks of the other replicas say.
_EXPIRED: Final = datetime(2000, 1, 1, tzinfo=UTC)


def tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    outbox = sa.Table(
        "outbox",
        metadata,
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("msg_key", sa.LargeBinary, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("created_at", db.UtcDateTime(), nullable=False),
    )
    lease = sa.Table(
        "outbox_lease",
        metadata,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", db.UtcDateTime(), nullable=False),
    )
    return outbox, lease


def append(conn: Connection, outbox: sa.Table, records: Sequence[KafkaRecord]) -> None:
    """Store ``records`` for publication, inside the caller's transaction (one multi-row INSERT)."""
    if not records:
        return
    now = utcnow()
    conn.execute(
        outbox.insert(),
        [
            {
                "topic": r.topic,
                "msg_key": r.key,
                "value": r.value,
                "headers": json.dumps([[k, v.decode()] for k, v in r.headers]),
                "created_at": now,
            }
            for r in records
        ],
    )


def producer_config(settings: Settings) -> KafkaConfig:
    """The relay's producer: idempotent with ``acks=all`` whatever the user sets, batching tunable."""
    required: KafkaConfig = {"enable.idempotence": True, "acks": "all"}
    return settings.kafka_config({"linger.ms": 2, "message.timeout.ms": 15000}, **required)


class Relay:
    """Publishes committed outbox rows, oldest first; woken after every commit, polling as a fallback."""

    def __init__(
        self,
        *,
        store: Store,
        outbox: sa.Table,
        lease: sa.Table,
        producer: Producer,
        metrics: Metrics,
        batch_size: int = 1000,
        poll_interval: float = 0.25,
        holder: str | None = None,
    ) -> None:
        """``holder`` names the lease holder: the replica's stable identity (``identity.lease_holder``)."""
        self.store = store
        self.outbox = outbox
        self.lease = lease
        self.producer = producer
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._lease_until = 0.0
        self._wake = threading.Event()
        self.last_cycle = time.monotonic()

    def wake(self) -> None:
        self._wake.set()

    # -- the lease ------------------------------------------------------------------------------------------

    def _hold_lease(self) -> bool:
        now_mono = time.monotonic()
        if now_mono < self._lease_until - LEASE_SECONDS / 3:
            return True
        now = utcnow()
        expires = now + timedelta(seconds=LEASE_SECONDS)
        lease = self.lease
        with self.store.write() as conn:
            taken = conn.execute(
                lease.update()
                .where(lease.c.name == _LEASE_NAME)
                .where(sa.or_(lease.c.holder == self.holder, lease.c.expires_at < now))
                .values(holder=self.holder, expires_at=expires)
            ).rowcount
            if not taken:
                exists = conn.execute(sa.select(lease.c.name).where(lease.c.name == _LEASE_NAME)).first()
                if exists is None:
                    conn.execute(lease.insert().values(name=_LEASE_NAME, holder=self.holder, expires_at=expires))
                    taken = 1
        self._lease_until = now_mono + LEASE_SECONDS if taken else 0.0
        return bool(taken)

    def release(self) -> None:
        """Give the lease back on a graceful stop, so another replica's relay takes over at once.

        Without this a scale-down that stops the relay replica leaves the survivors' committed events unpublished
        until the lease expires (``LEASE_SECONDS``). A crash still waits for the expiry; that is what the lease is for.
        """
        if self._lease_until == 0.0:
            return
        self._lease_until = 0.0
        lease = self.lease
        try:
            with self.store.write() as conn:
                conn.execute(
                    lease.update()
                    .where(lease.c.name == _LEASE_NAME, lease.c.holder == self.holder)
                    .values(expires_at=_EXPIRED)
                )
        except Retryable as e:
            log.warning("outbox relay: could not release the lease (it expires by itself): %s", e)

    # -- one cycle -------------------------------------------------------------------------------------------

    def relay_once(self) -> int:
        """Publish up to one batch; return how many rows were acknowledged and deleted."""
        self.last_cycle = time.monotonic()
        if not self._hold_lease():
            return 0
        o = self.outbox
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(o.c.seq, o.c.topic, o.c.msg_key, o.c.value, o.c.headers)
                .order_by(o.c.seq)
                .limit(self.batch_size)
            ).all()
        if not rows:
            self.metrics.outbox_backlog.set(0)
            return 0
        delivered, errors = self._publish(rows)
        faults.reach("relay.after_publish")
        if delivered:
            self._forget(rows, delivered)
        if errors or len(delivered) < len(rows):
            first = next(iter(errors.values()), None)
            raise BrokerUnavailable(f"{len(rows) - len(delivered)} outbox event(s) not acknowledged: {first}")
        if len(rows) < self.batch_size:
            self.metrics.outbox_backlog.set(0)
        else:
            with self.store.read() as conn:
                self.metrics.outbox_backlog.set(conn.execute(sa.select(sa.func.count()).select_from(o)).scalar_one())
        return len(delivered)

    def _publish(self, rows: Sequence[Any]) -> tuple[list[int], dict[int, KafkaError]]:
        """Produce ``rows`` in order and wait for Kafka's answers: the acknowledged seqs, and the errors by seq."""
        errors: dict[int, KafkaError] = {}
        delivered: list[int] = []

        def on_delivery(seq: int) -> Callable[[KafkaError | None, Any], None]:
            def callback(err: KafkaError | None, _msg: Any) -> None:
                if err is None:
                    delivered.append(seq)
                else:
                    errors[seq] = err

            return callback

        spans = tracing.sending()  # None unless tracing is on
        for row in rows:
            headers = [(k, v.encode()) for k, v in json.loads(row.headers)]
            callback = on_delivery(row.seq)
            if spans is not None:
                callback = spans.around(callback, topic=row.topic, headers=headers)
            while True:
                try:
                    self.producer.produce(
                        row.topic, value=row.value, key=row.msg_key, headers=headers, on_delivery=callback
                    )
                    break
                except BufferError:
                    self.producer.poll(0.05)
                except KafkaException as e:
                    raise BrokerUnavailable(f"cannot produce to {row.topic}: {e}") from e
        self.producer.flush(30)
        return delivered, errors

    def _forget(self, rows: Sequence[Any], delivered: list[int]) -> None:
        """Delete the acknowledged rows and count them as produced, by topic."""
        with self.store.write() as conn:
            for chunk in _chunks(delivered, 500):
                conn.execute(self.outbox.delete().where(self.outbox.c.seq.in_(chunk)))
        by_topic: dict[str, int] = {}
        done = set(delivered)
        for row in rows:
            if row.seq in done:
                by_topic[row.topic] = by_topic.get(row.topic, 0) + 1
        for topic, n in by_topic.items():
            self.metrics.count_produced(topic, n)

    def backlog(self) -> int:
        with self.store.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.outbox)).scalar_one())

    # -- the loop --------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            try:
                while self.relay_once() >= self.batch_size and not stop.is_set():
                    pass
                backoff.reset()
            except Retryable as e:
                delay = backoff.next()
                log.warning("outbox relay: %s; retrying in %.1fs", e, delay)
                stop.wait(delay)
            except Exception:
                delay = backoff.next()
                log.exception("outbox relay failed; retrying in %.1fs", delay)
                stop.wait(delay)

    def drain(self, deadline_s: float) -> None:
        """On shutdown: publish what is committed, within ``deadline_s``; what remains waits for the next start."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                if self.relay_once() == 0:
                    return
            except Retryable as e:
                log.warning("outbox drain stopped: %s", e)
                return


def _chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
