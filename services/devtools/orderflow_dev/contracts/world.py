"""One service's real code on a private SQLite database, with the broker replaced by the in-memory transport.

Contracts must be checked against the code the services run, not a copy of it, and without a real broker. Both sides
meet the broker at the transport seam (``orderflow.transport``), so that is where this module cuts:

* a **provider** publishes what its transactions leave in the outbox (``Runtime.transaction`` appends ``Tx.pending``
  there; the relay only copies rows to the broker). ``World.transaction`` *is* ``Runtime.transaction``, run by a
  ``Runtime`` whose relay never runs, and ``World.published()`` reads the outbox rows the relay would send.
* a **consumer** receives ``Received`` messages from its subscription in ``ConsumerLoop.run``. ``World.consume()``
  publishes one record on a private in-memory broker (``orderflow.transport.memory``) and runs the service's real
  ``ConsumerLoop`` (decode, dead-lettering, inbox, handler, outbox, settle) on it, for one batch; dead letters go
  to the broker's dead-letter channel, where the world reads them back.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from orderflow.events import catalog
from orderflow.runtime import Definition, Runtime, Settings, Tx
from orderflow.runtime.consumer import ConsumerLoop
from orderflow.runtime.dlq import HEADER_DETAIL, HEADER_REASON, DeadLetterPublisher
from orderflow.transport import Received, Record, Subscription, header, memory
from orderflow_dev.contracts.messages import PREFIX


class ConsumerRejected(AssertionError):
    """The consumer's real path refused a message (dead-lettered it, or never settled it)."""


class _OneBatch:
    """A real in-memory subscription that asks the loop to stop once it has handed over one batch."""

    def __init__(self, subscription: Subscription, stop: threading.Event) -> None:
        self._subscription = subscription
        self._stop = stop
        self.joined = subscription.joined

    def fetch(self, max_messages: int, timeout: float) -> list[Received]:
        batch = self._subscription.fetch(max_messages, timeout)
        # Stopping before the batch is applied also turns any "retry forever" into an immediate failure.
        self._stop.set()
        return batch

    def settle(self, messages: Sequence[Received]) -> None:
        self._subscription.settle(messages)

    def assigned(self) -> int:
        return self._subscription.assigned()

    def close(self) -> None:
        self._subscription.close()


@dataclass(frozen=True, slots=True)
class Published:
    """One outbox row: exactly what the relay hands to the transport's publisher."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, str], ...]

    @property
    def header_map(self) -> dict[str, str]:
        return dict(self.headers)

    @property
    def data(self) -> Any:
        return json.loads(self.value)


class World:
    """A service of OrderFlow with its own fresh SQLite file; ``close()`` removes it."""

    def __init__(self, definition: Definition, *, directory: Path | None = None) -> None:
        self.definition = definition
        self._owned = directory is None
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix=f"contract-{definition.name}-"))
        self.directory = directory
        settings = Settings(
            service=definition.name,
            kafka_bootstrap="",
            database_url=f"sqlite:///{self.directory / f'{definition.name}.db'}",
            topic_prefix=PREFIX,
        )
        self.broker = memory.Broker(partitions=1)
        self.transport = memory.MemoryTransport(self.broker)
        self.runtime = Runtime(
            service=definition.name, metadata=definition.metadata, settings=settings, transport=self.transport
        )
        self.store = self.runtime.store
        self.dlq_channel = catalog.dlq_topic(PREFIX, definition.name)

    def close(self) -> None:
        self.store.dispose()
        if self._owned:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> World:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- state ---------------------------------------------------------------------------------------------

    def insert(self, table: sa.Table, *rows: Mapping[str, Any]) -> None:
        """Seed the service's own tables (a provider state, or what a consumer knew before the message)."""
        with self.store.write() as conn:
            conn.execute(table.insert(), [dict(r) for r in rows])

    def rows(self, table: sa.Table) -> list[sa.Row[Any]]:
        with self.store.read() as conn:
            return list(conn.execute(sa.select(table)).all())

    def row(self, table: sa.Table) -> sa.Row[Any]:
        """The single row of ``table`` (contract scenarios are about one order)."""
        rows = self.rows(table)
        if len(rows) != 1:
            raise AssertionError(f"expected one row in {table.name}, found {len(rows)}")
        return rows[0]

    # -- the provider's edge: the outbox -------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """``Runtime.transaction``: what is emitted inside lands in the outbox when the block commits."""
        with self.runtime.transaction() as tx:
            yield tx

    def published(self) -> list[Published]:
        """Every event the service has committed for publication, oldest first."""
        table = self.runtime.tables["outbox"]
        with self.store.read() as conn:
            rows = conn.execute(sa.select(table).order_by(table.c.seq)).all()
        return [
            Published(
                topic=r.topic,
                key=bytes(r.msg_key),
                value=bytes(r.value),
                headers=tuple((str(k), str(v)) for k, v in json.loads(r.headers)),
            )
            for r in rows
        ]

    # -- the consumer's edge: one message from the broker --------------------------------------------------------

    def consume(self, record: Record) -> None:
        """Run the service's real consumer loop on ``record``; ``ConsumerRejected`` unless it was applied."""
        self.transport.ensure_channels([record.channel, self.dlq_channel], partitions=1, replication=1)
        dead_before = len(self.broker.records(self.dlq_channel))
        self.transport.publisher("test").publish([record])
        stop = threading.Event()
        group = f"{PREFIX}-{self.definition.name}"
        subscription = self.transport.subscribe([record.channel], group=group, on_assigned=lambda _n: None)
        loop = ConsumerLoop(
            definition=self.definition,
            prefix=PREFIX,
            subscription=None,
            store=self.store,
            tables=self.runtime.tables,
            dlq=DeadLetterPublisher(
                publisher=self.transport.publisher("dlq"), topic=self.dlq_channel, service=self.definition.name
            ),
            metrics=self.runtime.metrics,
            batch_size=1,
            batch_timeout=0,
        )
        loop.attach(_OneBatch(subscription, stop))
        try:
            loop.run(stop)
        finally:
            subscription.close()
        letters = self.broker.records(self.dlq_channel)[dead_before:]
        if letters:
            reason = (header(letters[0].headers, HEADER_REASON) or b"").decode()
            detail = (header(letters[0].headers, HEADER_DETAIL) or b"").decode()
            raise ConsumerRejected(f"{self.definition.name} dead-lettered the message: {reason}: {detail}")
        if self.broker.backlog(group, [record.channel])[record.channel]:
            raise ConsumerRejected(f"{self.definition.name} did not apply the message (it was never settled)")
        if record.headers and _type_of(record) not in self.definition.handlers:
            raise ConsumerRejected(f"{self.definition.name} has no handler for {_type_of(record)}: it ignored it")


def _type_of(record: Record) -> str:
    return (header(record.headers, "ce_type") or b"").decode()
