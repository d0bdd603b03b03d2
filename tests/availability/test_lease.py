"""The outbox relay's lease is held in the replica's stable identity: a restarted replica takes its own back at once.

Regression: the holder was ``host:pid:object``, so a replica restarted after a crash was a stranger to its own lease
and published nothing until it expired (15 s then), while its committed events waited in the outbox.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from orderflow.events import utcnow
from orderflow.runtime import context, outbox
from orderflow.runtime.db import Store
from orderflow.runtime.metrics import Metrics
from orderflow.transport import memory


def _relay(store: Store, tables: dict[str, sa.Table], holder: str) -> outbox.Relay:
    return outbox.Relay(
        store=store,
        outbox=tables["outbox"],
        lease=tables["outbox_lease"],
        publisher=memory.MemoryPublisher(memory.Broker()),  # never used: only the lease is exercised
        metrics=Metrics("test"),
        holder=holder,
    )


def test_a_restarted_replica_takes_its_own_lease_back_and_a_stranger_waits_for_the_expiry(tmp_path: Path) -> None:
    metadata = sa.MetaData()
    tables = context.runtime_tables(metadata)
    store = Store(f"sqlite:///{tmp_path / 'relay.db'}", metadata)
    assert _relay(store, tables, "billing-0")._hold_lease()
    # billing-0 is SIGKILLed (no release) and comes back under the same name: a new process, a new Relay.
    assert _relay(store, tables, "billing-0")._hold_lease()
    # Another replica gets nothing while the lease runs ...
    other = _relay(store, tables, "billing-1")
    assert not other._hold_lease()
    # ... and takes it once it has expired (a dead replica's lease passes on within LEASE_SECONDS).
    lease = tables["outbox_lease"]
    with store.write() as conn:
        conn.execute(lease.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    assert other._hold_lease()
