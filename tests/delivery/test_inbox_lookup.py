"""The inbox tells new events from seen ones by source *and* id, with a search of its key, never a scan.

The check runs in every batch's transaction, and the inbox keeps every event a service ever applied: a lookup that
scanned it made each batch slower than the one before (2 ms a batch after 10,000 orders on SQLite, and growing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from orderflow.events import Event
from orderflow.runtime import inbox
from orderflow.runtime.db import Store
from orderflow_dev.postgres import PostgresServer
from tests.support import events


def _store(url: str) -> tuple[Store, sa.Table]:
    metadata = sa.MetaData()
    table = inbox.table(metadata)
    return Store(url, metadata), table


def _from(source: str, event: Event, event_id: str | None = None) -> Event:
    return dataclasses.replace(event, source=source, id=event_id or event.id)


def _lookups(store: Store, table: sa.Table, batch: list[Event]) -> tuple[list[Event], list[tuple[str, Any]]]:
    """``record_new`` on ``batch`` in one transaction: what it returned, and the SELECTs it ran (SQL, parameters)."""
    statements: list[tuple[str, Any]] = []

    def capture(_conn: object, _cursor: object, statement: str, parameters: Any, *_rest: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        with store.write() as conn:
            new = inbox.record_new(conn, table, batch)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    return new, statements


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[tuple[Store, sa.Table]]:
    store, table = _store(f"sqlite:///{tmp_path / 'inbox.db'}")
    yield store, table
    store.dispose()


def test_an_event_is_new_once_per_source_and_id(sqlite_store: tuple[Store, sa.Table]) -> None:
    store, table = sqlite_store
    applied = _from("/orderflow/inventory", events.order_created())
    assert _lookups(store, table, [applied])[0] == [applied]

    same_id_elsewhere = _from("/orderflow/billing", events.order_created(), event_id=applied.id)
    fresh = _from("/orderflow/inventory", events.order_created())
    new, _ = _lookups(store, table, [applied, same_id_elsewhere, fresh, fresh])

    assert new == [same_id_elsewhere, fresh]  # the redelivery skipped, the repeat within the batch once, in order
    assert _lookups(store, table, [applied, same_id_elsewhere, fresh])[0] == []


def test_the_lookup_searches_the_key_on_sqlite(sqlite_store: tuple[Store, sa.Table]) -> None:
    store, table = sqlite_store
    _lookups(store, table, [_from("/orderflow/order", events.order_created()) for _ in range(50)])
    batch = [_from(source, events.order_created()) for source in ("/orderflow/order", "/orderflow/billing")]

    _, statements = _lookups(store, table, batch)

    assert len(statements) == 1
    sql, parameters = statements[0]
    with store.read() as conn:
        plan = [str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)]
    assert any(step.startswith("SEARCH inbox") and "event_id=?" in step for step in plan), plan
    assert not any(step.startswith("SCAN inbox") for step in plan), plan


@pytest.mark.postgres
def test_the_lookup_searches_the_key_on_postgresql(postgres_server: PostgresServer) -> None:
    store, table = _store(postgres_server.create_database("inbox_lookup"))
    try:
        _lookups(store, table, [_from("/orderflow/order", events.order_created()) for _ in range(50)])
        _, statements = _lookups(store, table, [_from("/orderflow/billing", events.order_created())])
        assert len(statements) == 1
        sql, parameters = statements[0]
        with store.read() as conn:
            # A table this small is cheapest to read whole; told not to, the planner shows what the index can do.
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {sql}", parameters))
    finally:
        store.dispose()
    assert "Index Cond" in plan and "source" in plan and "event_id" in plan, plan
