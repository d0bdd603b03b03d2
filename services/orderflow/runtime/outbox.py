"""The outbox: events a transaction decided to publish, stored in that transaction, relayed to the broker after it.

Nothing is published that was not committed, and nothing committed is lost: the relay deletes a row only once
the broker has acknowledged it (``orderflow.transport.Publisher``: Kafka's idempotent ``acks=all`` producer,
JetStream's PubAck, RabbitMQ's publisher confirms). A crash between publish and delete publishes the row
again, which the consumers' inboxes absorb. Rows are relayed in commit order (``seq``) by a single relay at a time
— a lease in the database elects it when several replicas share one PostgreSQL — so events of one order keep their
order on their partition.

The fast path hands the rows a transaction has just committed straight to the relay (``handover``), which
publishes them from memory and deletes them once acknowledged, without reading them back. Reading the table
(``scan``) remains the safety net: at start (rows a crash left), after a failed publish, for rows other replicas
committed (PostgreSQL), and every ``poll_interval``. The handover happens under a lock that the scan also holds
while it reads, so a row is either handed over or found by a scan, never both: no double publication in the
normal path. Acknowledged rows are deleted together, a little later (``DELETE_DELAY_S``); until then scans skip
them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from orderflow.errors import BrokerUnavailable, Retryable
from orderflow.events import utcnow
from orderflow.runtime import db, faults, sql, tracing
from orderflow.runtime.backoff import Backoff
from orderflow.runtime.db import Store
from orderflow.runtime.metrics import Metrics
from orderflow.transport import Publisher, Record

log = logging.getLogger(__name__)

# A dead relay's lease passes to another replica within this; a restarted one takes its own back at once.
LEASE_SECONDS: Final = 6.0
_LEASE_NAME: Final = "outbox-relay"
# What a released lease says: expired long ago, whatever the clocks of the other replicas say.
_EXPIRED: Final = datetime(2000, 1, 1, tzinfo=UTC)
# After a scan found rows nobody handed over (another replica's, a crash's), scan on every cycle for this long.
SCAN_EVERY_CYCLE_S: Final = 5.0
# Acknowledged rows are deleted together, at most this long after the first of them (or once a batch has gathered):
# a delete per published batch was a second fsync'd transaction per saga hop, contending with the next hop's
# commit. Until then the relay remembers them and no scan publishes them again; a crash in between republishes
# them, which the consumers' inboxes absorb, as for a crash between publish and delete.
DELETE_DELAY_S: Final = 0.2


@dataclass(frozen=True, slots=True)
class Row:
    """One outbox row, as the relay publishes it: committed, numbered (``seq``), ready to publish."""

    seq: int
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    def record(self) -> Record:
        return Record(self.topic, self.key, self.value, tuple(self.headers))


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


def append(conn: Connection, outbox: sa.Table, records: Sequence[Record]) -> list[Row]:
    """Store ``records`` for publication, inside the caller's transaction; return the rows with their ``seq``, to
    hand to the relay once the transaction has committed.

    One driver-level ``INSERT ... RETURNING seq`` per record (``sql.Prepared``, compiled once): a saga burst spent
    an eighth of inventory's and billing's time in SQLAlchemy building and running the multi-row INSERT, for the
    one or two records a handler emits. One row per statement also keeps each ``seq`` paired with its record
    without relying on the order a multi-row RETURNING comes back in.
    """
    if not records:
        return []
    now = utcnow()
    insert = sql.per_table(outbox, "insert", lambda t: t.insert().returning(t.c.seq))
    rows = []
    for r in records:
        value = r.value or b""
        params = {
            "topic": r.channel,
            "msg_key": r.key,
            "value": value,
            "headers": orjson.dumps([[k, v.decode()] for k, v in r.headers]).decode(),
            "created_at": now,
        }
        seq = insert.run(conn, params).scalar_one()
        rows.append(Row(int(seq), r.channel, r.key, value, list(r.headers)))
    return rows


class Relay:
    """Publishes committed outbox rows, oldest first; woken after every commit, polling as a fallback."""

    def __init__(
        self,
        *,
        store: Store,
        outbox: sa.Table,
        lease: sa.Table,
        publisher: Publisher,
        metrics: Metrics,
        batch_size: int = 1000,
        poll_interval: float = 0.25,
        holder: str | None = None,
    ) -> None:
        """``holder`` names the lease holder: the replica's stable identity (``identity.lease_holder``)."""
        self.store = store
        self.outbox = outbox
        self.lease = lease
        self.publisher = publisher
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._lease_until = 0.0
        self._wake = threading.Event()
        self.last_cycle = time.monotonic()
        # Rows committed and handed over, not yet taken by a cycle; guarded by ``_handover_lock``, which a scan
        # holds while it reads the table.
        self._handover_lock = threading.Lock()
        self._handed: list[Row] = []
        self._next_scan = 0.0  # monotonic time of the next scan; 0: at the next cycle
        self._scan_every_cycle_until = 0.0
        # Acknowledged, not yet deleted (``DELETE_DELAY_S``), and when the first of them was acknowledged. Only the
        # relay's own thread (``relay_once``, ``drain``) touches them.
        self._acked: set[int] = set()
        self._acked_at = 0.0

    def wake(self) -> None:
        self._wake.set()

    @contextmanager
    def handover(self, rows: Sequence[Row]) -> Iterator[None]:
        """Wrap a transaction's COMMIT: if it succeeds, ``rows`` (read when the commit is done) go to the relay.

        The lock makes "committed" and "handed over" one step as far as a scan can see.
        """
        with self._handover_lock:
            yield
            self._handed.extend(rows)
        if rows:
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

    def relay_once(self, *, scan: bool = False) -> int:
        """Publish what was handed over, and what a scan of the table finds when one is due (or ``scan``);
        return how many rows were acknowledged (their deletion follows, ``delete_acknowledged``)."""
        self.last_cycle = now = time.monotonic()
        if not self._hold_lease():
            with self._handover_lock:
                self._handed = []  # they are in the table: the lease holder's scan publishes them
            self.delete_acknowledged(force=True)  # or it would publish ours again
            return 0
        scan = scan or now >= self._next_scan or now < self._scan_every_cycle_until
        found: list[Row] = []
        if scan:
            # The connection is taken before the lock: committing transactions hold connections while they wait
            # for the lock, so waiting for the pool inside it could wait for ever. The SELECT itself (its
            # snapshot) runs under the lock, when no row is committed without being handed over.
            with self.store.read() as conn, self._handover_lock:
                handed, self._handed = self._handed, []
                found = self._scan(conn, {r.seq for r in handed} | self._acked)
        else:
            with self._handover_lock:
                handed, self._handed = self._handed, []
        if scan:
            self._next_scan = now + self.poll_interval
            if found:
                self._scan_every_cycle_until = now + SCAN_EVERY_CYCLE_S
            self.metrics.outbox_backlog.set(len(found) if len(found) < self.batch_size else self.backlog())
        rows = sorted([*found, *handed], key=lambda r: r.seq) if found else handed
        if not rows:
            self.delete_acknowledged()
            return 0
        try:
            delivered, errors = self._publish(rows)
            faults.reach("relay.after_publish")
            if delivered:
                self._acknowledged(rows, delivered)
                self.delete_acknowledged()
        except BaseException:
            self._next_scan = 0.0  # what was not deleted is still in the table: the next cycle reads it
            raise
        if errors or len(delivered) < len(rows):
            self._next_scan = 0.0
            first = next(iter(errors.values()), "no answer")
            raise BrokerUnavailable(f"{len(rows) - len(delivered)} outbox event(s) not acknowledged: {first}")
        if len(found) >= self.batch_size:
            self._next_scan = 0.0  # a backlog: keep reading it
        return len(delivered)

    def _scan(self, conn: Connection, skip: set[int]) -> list[Row]:
        """Rows in the table to publish (the oldest ``batch_size``), skipping ``skip``: those handed over, and those
        acknowledged but not yet deleted."""
        o = self.outbox
        found = conn.execute(
            sa.select(o.c.seq, o.c.topic, o.c.msg_key, o.c.value, o.c.headers)
            .order_by(o.c.seq)
            .limit(self.batch_size + len(skip))
        ).all()
        return [
            Row(r.seq, r.topic, r.msg_key, r.value, [(str(k), str(v).encode()) for k, v in orjson.loads(r.headers)])
            for r in found
            if r.seq not in skip
        ][: self.batch_size]

    def _publish(self, rows: Sequence[Row]) -> tuple[list[int], dict[int, str]]:
        """Publish ``rows`` in order and wait for the broker's answers: the acknowledged seqs, and errors by seq."""
        spans = tracing.sending()  # None unless tracing is on
        ends = [spans.begin(topic=row.topic, headers=row.headers) for row in rows] if spans is not None else []
        acked, refused = self.publisher.publish([row.record() for row in rows], timeout=30)
        if ends:
            done = set(acked)
            for i, end in enumerate(ends):
                end(refused.get(i, None if i in done else "not acknowledged"))
        return [rows[i].seq for i in acked], {rows[i].seq: error for i, error in refused.items()}

    def _acknowledged(self, rows: Sequence[Row], delivered: list[int]) -> None:
        """Remember the acknowledged rows for deletion and count them as produced, by topic."""
        if not self._acked:
            self._acked_at = time.monotonic()
        self._acked.update(delivered)
        by_topic: dict[str, int] = {}
        done = set(delivered)
        for row in rows:
            if row.seq in done:
                by_topic[row.topic] = by_topic.get(row.topic, 0) + 1
        for topic, n in by_topic.items():
            self.metrics.count_produced(topic, n)

    def delete_acknowledged(self, *, force: bool = False) -> int:
        """Delete the acknowledged rows once ``DELETE_DELAY_S`` has passed since the first (or a batch of them has
        gathered, or ``force``); return how many were deleted. A failure keeps them for the next attempt."""
        acked = self._acked
        if not acked:
            return 0
        if not force and len(acked) < self.batch_size and time.monotonic() - self._acked_at < DELETE_DELAY_S:
            return 0
        seqs = sorted(acked)
        with self.store.write() as conn:
            for chunk in _chunks(seqs, 500):
                conn.execute(self.outbox.delete().where(self.outbox.c.seq.in_(chunk)))
        self._acked = set()
        return len(seqs)

    def _wait_s(self) -> float:
        """How long the loop may wait for a wake-up: the poll interval, or less when acknowledged rows are due."""
        if not self._acked:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, self._acked_at + DELETE_DELAY_S - time.monotonic()))

    def backlog(self) -> int:
        """Rows committed and not yet acknowledged by the broker."""
        with self.store.read() as conn:
            rows = int(conn.execute(sa.select(sa.func.count()).select_from(self.outbox)).scalar_one())
        return rows - len(self._acked)

    # -- the loop --------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            self._wake.wait(self._wait_s())
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
        try:
            while time.monotonic() < end:
                if self.relay_once(scan=True) == 0:
                    break
            self.delete_acknowledged(force=True)
        except Retryable as e:
            log.warning("outbox drain stopped: %s", e)


def _chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
