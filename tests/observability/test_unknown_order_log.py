"""Events for orders the order service never created: on the timeline every one, in the log once per window.

Such events come in floods (orders placed through another deployment, or published straight to the topic); a
WARNING per event was a fifth of the service's time in a burst and buried every other line. The log says it once
per event type per window, then how many it held back; nothing about the events themselves is lost.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from orderflow import order
from orderflow.events import new_order_id
from orderflow.order import service as order_service
from orderflow.runtime.consumer import apply
from orderflow.runtime.context import runtime_tables
from orderflow.runtime.db import Store
from orderflow.runtime.logs import Throttle
from tests.support import events as ev


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == order_service.log.name and r.levelno == logging.WARNING]


def test_a_flood_of_unknown_orders_is_one_line_per_window_and_every_event_is_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(order_service, "_UNKNOWN_ORDERS", Throttle(10.0, clock=clock))
    definition = order.definition
    tables = runtime_tables(definition.metadata)  # before the store: it creates them
    store = Store(f"sqlite:///{tmp_path / 'order.db'}", definition.metadata)
    ids = [new_order_id() for _ in range(40)]
    caplog.set_level(logging.WARNING, logger=order_service.log.name)

    def feed(events: list) -> None:  # type: ignore[type-arg]
        apply(store, definition=definition, tables=tables, prefix="unknown", events=events)

    feed([ev.stock_reserved(i) for i in ids[:20]])
    first = _warnings(caplog)
    assert len(first) == 1, [r.getMessage() for r in first]
    assert first[0].order_id == ids[0]  # type: ignore[attr-defined]
    assert first[0].getMessage() == "event for an order this service never created"

    clock.now += 5  # inside the window: held back, counted
    feed([ev.stock_reserved(i) for i in ids[20:]])
    assert len(_warnings(caplog)) == 1

    clock.now += 6  # the window has passed: the next one is let through and says how many were held back
    feed([ev.stock_reserved(new_order_id())])
    lines = _warnings(caplog)
    assert len(lines) == 2
    assert lines[1].suppressed == 39  # type: ignore[attr-defined]
    assert "39 more like it" in lines[1].getMessage()

    with store.read() as conn:
        t = definition.metadata.tables["timeline"]
        recorded = set(conn.execute(sa.select(t.c.order_id)).scalars())
    assert set(ids) <= recorded
    store.dispose()


def test_each_event_type_has_its_own_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(order_service, "_UNKNOWN_ORDERS", Throttle(10.0, clock=Clock()))
    definition = order.definition
    tables = runtime_tables(definition.metadata)
    store = Store(f"sqlite:///{tmp_path / 'order.db'}", definition.metadata)
    caplog.set_level(logging.WARNING, logger=order_service.log.name)
    oid = new_order_id()
    batch = [ev.stock_reserved(oid), ev.payment_charged(oid), ev.stock_reserved(new_order_id())]
    apply(store, definition=definition, tables=tables, prefix="unknown", events=batch)
    assert sorted(r.event_type for r in _warnings(caplog)) == sorted(  # type: ignore[attr-defined]
        [batch[0].type, batch[1].type]
    )
    store.dispose()
