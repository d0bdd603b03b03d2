"""The inbox: which events this service has already applied, recorded in the same transaction as their effect.

A redelivered event (consumer restart, rebalance, a producer's retry, a replay) is found here and changes nothing.
One SELECT (a primary-key search) and one multi-row INSERT per batch, whatever its size and the inbox's.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from orderflow.events import Event, utcnow
from orderflow.runtime import db, sql


def table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "inbox",
        metadata,
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("received_at", db.UtcDateTime(), nullable=False),
    )


def record_new(conn: Connection, inbox: sa.Table, events: Sequence[Event]) -> list[Event]:
    """Record ``events`` in the inbox and return those never seen before, in their original order.

    A concurrent replica recording the same event makes the INSERT fail with an integrity error, which rolls back
    the whole transaction; the caller retries it and then finds the event here.
    """
    first: dict[tuple[str, str], Event] = {}
    for ev in events:
        first.setdefault((ev.source, ev.id), ev)
    if not first:
        return []
    # Both key columns constrained, so the lookup is a search of the primary key (a few per batch), not a scan of
    # the whole inbox: ``event_id`` alone is its second column, which neither SQLite nor PostgreSQL can search by,
    # and a scan grows with every event ever applied. The rows may pair a source with another source's id; only
    # exact pairs count below.
    # Both statements run on the driver (``sql``): through SQLAlchemy their construction and compilation cost more
    # than the database's work, the most in a batch of one event, which is every batch when orders trickle in.
    where = {"source": sorted({k[0] for k in first}), "event_id": sorted({k[1] for k in first})}
    seen = {(str(row[0]), str(row[1])) for row in sql.lookup(conn, inbox, ("source", "event_id"), where)}
    new = [ev for key, ev in first.items() if key not in seen]
    if new:
        now = utcnow()
        sql.per_table(inbox, "insert", lambda t: t.insert()).run_many(
            conn,
            [
                {"source": e.source, "event_id": e.id, "event_type": e.type, "order_id": e.subject, "received_at": now}
                for e in new
            ],
        )
    return new
