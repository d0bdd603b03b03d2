"""The service's database: SQLite (WAL) as the embedded default, PostgreSQL when the URL says so.

SQL stays portable (SQLAlchemy Core, conditional updates instead of engine-specific locking) so the same service
code runs on both. Every write goes through ``Store.write()``, which maps "busy / locked / unreachable" to
``StoreUnavailable`` so callers retry it instead of treating it as a bug.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import ConnectionPoolEntry

from orderflow.errors import ConfigError, StoreUnavailable, WriteConflict
from orderflow.runtime.backoff import Backoff

log = logging.getLogger(__name__)

_READ_ONLY = "orderflow_read_only"


def normalise_url(url: str) -> str:
    """Accept ``postgres://`` / ``postgresql://`` and pick the psycopg 3 driver for them."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def _sqlite_engine(url: sa.URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (the documented SQLite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front: a deferred transaction that upgrades later can fail with
        # SQLITE_BUSY without waiting, and two of them can deadlock.
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def create_engine(url: str) -> Engine:
    try:
        parsed = sa.make_url(normalise_url(url))
    except sa.exc.ArgumentError as e:
        raise ConfigError(f"ORDERFLOW_DATABASE_URL={url!r} is not a database URL: {e}") from e
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(parsed, pool_size=8, max_overflow=8, pool_pre_ping=True)
    raise ConfigError(
        f"ORDERFLOW_DATABASE_URL: unsupported database {parsed.get_backend_name()!r} "
        "(use sqlite:///path or postgresql://...)"
    )


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that is always an aware UTC ``datetime`` in Python, on SQLite as on PostgreSQL.

    SQLite keeps no time zone and hands back naive values; normalising here, once, spares every service from
    guessing what a timestamp it reads means.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class Store:
    """One engine and the service's tables; created on first use."""

    def __init__(self, url: str, metadata: sa.MetaData) -> None:
        self.engine = create_engine(url)
        self.metadata = metadata
        self.dialect = self.engine.dialect.name
        # SQLite has one writer at a time. Writers of this process queue here rather than in SQLite's busy
        # handler, which polls with sleeps growing to 100 ms: under contention (HTTP requests, the consumer, the
        # relay) those sleeps, not the work, were the latency. Other processes still meet the busy timeout.
        self._writer: threading.RLock | None = threading.RLock() if self.dialect == "sqlite" else None
        self._create_tables()

    def _create_tables(self) -> None:
        """Create the tables, waiting for a database that does not answer yet, for as long as it takes.

        On Kubernetes a service may start before its database accepts it (the database Pod still initialising, a
        NetworkPolicy agent not yet admitting a new Pod's address): exiting then only turns a few seconds' wait
        into a crash loop, and fails `skaffold dev`'s status check. SIGTERM still ends the wait. Several replicas
        may also start at once against one PostgreSQL, and CREATE TABLE IF NOT EXISTS can still race on the
        catalog: that is a ``WriteConflict``, a ``StoreUnavailable`` too, so the loser waits and tries again.
        """
        backoff = Backoff(first=0.2, cap=5.0)
        while True:
            try:
                with self._mapped():
                    self.metadata.create_all(self.engine)
                return
            except StoreUnavailable as e:
                delay = backoff.next()
                log.warning("%s; retrying in %.1f s", e, delay)
                time.sleep(delay)  # backoff before the next attempt, not a synchronisation

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """The one place the database's exceptions become OrderFlow's: an integrity race (a concurrent writer won
        a unique key) and an unreachable or locked database are both worth retrying; anything else is a bug."""
        try:
            yield
        except sa.exc.IntegrityError as e:
            raise WriteConflict(f"a concurrent write conflicted: {e.orig or e}") from e
        except sa.exc.OperationalError as e:
            raise StoreUnavailable(f"database unavailable: {e.orig or e}") from e
        except sa.exc.DBAPIError as e:
            if e.connection_invalidated:
                raise StoreUnavailable(f"database connection lost: {e.orig or e}") from e
            raise

    @contextmanager
    def write(self, *, around_commit: Callable[[], AbstractContextManager[None]] | None = None) -> Iterator[Connection]:
        """A read-write transaction, committed when the block ends without an exception.

        ``around_commit`` gives a context that the COMMIT runs inside (the outbox's handover to its relay).
        """
        with self._mapped(), self._writer or contextlib.nullcontext(), self.engine.connect() as conn:
            transaction = conn.begin()
            try:
                yield conn
            except BaseException:
                transaction.rollback()
                raise
            with around_commit() if around_commit is not None else contextlib.nullcontext():
                transaction.commit()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (a consistent snapshot; never blocks writers on SQLite WAL)."""
        with self._mapped(), self.engine.connect() as conn:
            conn.execution_options(**{_READ_ONLY: True})
            with conn.begin():
                yield conn

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def lock_in_order(conn: Connection, column: sa.Column[str], keys: set[str]) -> None:
    """Lock the rows whose ``column`` is in ``keys``, in sorted order (PostgreSQL; SQLite serialises writers).

    Two transactions that lock the same rows in different orders can deadlock; taking every lock a batch will
    need up front, always in key order, makes that impossible between replicas.
    """
    if not keys or conn.dialect.name != "postgresql":
        return
    table = column.table
    conn.execute(
        sa.select(column).select_from(table).where(column.in_(sorted(keys))).order_by(column).with_for_update()
    )
