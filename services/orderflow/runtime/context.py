"""What a service's routes and periodic jobs run with: its settings, its store, its metrics, and a transaction
whose events go to the outbox.

It is its own module, below ``definition`` (which names it in the types of routes and tickers) and below
``service`` (which assembles a running service around it), so the runtime's modules import in one direction
only: service -> consumer -> definition -> context -> store, outbox, tx.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from orderflow import transport as transports
from orderflow.runtime import identity, inbox, outbox
from orderflow.runtime.config import Settings
from orderflow.runtime.db import Store
from orderflow.runtime.metrics import Metrics
from orderflow.runtime.tx import Tx


def runtime_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    """The inbox, outbox and relay lease, added once to a service's own metadata."""
    if "inbox" not in metadata.tables:
        inbox.table(metadata)
        outbox.tables(metadata)
    return {name: metadata.tables[name] for name in ("inbox", "outbox", "outbox_lease")}


class Runtime:
    """What handlers, routes and tickers of a running service can use."""

    def __init__(
        self,
        *,
        service: str,
        metadata: sa.MetaData,
        settings: Settings,
        transport: transports.Transport | None = None,
        publisher: transports.Publisher | None = None,
    ) -> None:
        """The relay publishes with ``publisher``, else with a relay publisher of ``transport``, else of the
        transport the settings name (connected here)."""
        self.service = service
        self.settings = settings
        self.tables = runtime_tables(metadata)
        self.store = Store(settings.database_url, metadata)
        self.metrics = Metrics(service)
        if publisher is None:
            transport = transport or transports.connect(settings, client_id=f"orderflow-{service}")
            publisher = transport.publisher("relay")
        self.publisher = publisher
        self.relay = outbox.Relay(
            store=self.store,
            outbox=self.tables["outbox"],
            lease=self.tables["outbox_lease"],
            publisher=self.publisher,
            metrics=self.metrics,
            holder=identity.lease_holder(settings),
        )

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A write transaction whose emitted events go to the outbox, handed to the relay once committed."""
        rows: list[outbox.Row] = []
        with self.store.write(around_commit=lambda: self.relay.handover(rows)) as conn:
            tx = Tx(conn, service=self.service, prefix=self.settings.topic_prefix)
            yield tx
            rows.extend(outbox.append(conn, self.tables["outbox"], tx.pending))
