"""One time format across the HTTP APIs: RFC 3339 in UTC with a ``Z`` and milliseconds, as in event data."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from orderflow import shipping
from orderflow.events import isoformat, new_order_id
from orderflow.shipping.service import shipments
from orderflow_dev.inprocess import App

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_shipping_answers_times_in_the_event_format(tmp_path: Path) -> None:
    """Issue 14: GET /shipments/{id} wrote ``deadline`` and ``decided_at`` with ``datetime.isoformat()``
    (``+00:00``, microseconds) where every other time OrderFlow writes uses ``events.isoformat``."""
    app = App(shipping.definition, directory=tmp_path)
    try:
        order_id = new_order_id()
        deadline = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
        decided = datetime(2026, 12, 1, 11, 59, 58, 654321, tzinfo=UTC)
        app.world.insert(shipments, {
            "order_id": order_id, "deadline": deadline, "stock": "RESERVED", "payment": "CHARGED",
            "outcome": "SHIPPED", "shipment_id": "shp_1", "decided_at": decided,
        })
        answer = app.ok("GET", f"/shipments/{order_id}")
    finally:
        app.close()
    assert answer["deadline"] == isoformat(deadline) == "2026-12-01T12:00:00.123Z"
    assert STAMP.match(answer["decided_at"]), answer["decided_at"]
