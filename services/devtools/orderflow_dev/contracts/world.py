"""One service's real code on a private SQLite database, with Kafka cut out at the exact edges where it sits.

Contracts must be checked against the code the services run, not a copy of it, and without a broker. Both sides
meet Kafka at a single seam each, so that is where this module cuts:

* a **provider** publishes what its transactions leave in the outbox (``Runtime.transaction`` appends ``Tx.pending``
  there; the relay only copies rows to Kafka). ``World.transaction`` *is* ``Runtime.transaction``, run by a
  ``Runtime`` that has no Kafka producer, and ``World.published()`` reads the outbox rows the relay would send.
* a **consumer** receives ``confluent_kafka.Message`` objects in ``ConsumerLoop.run``. ``World.consume()`` runs
  the service's real ``ConsumerLoop`` (decode, dead-lettering, inbox, handler, outbox, offset commit) on one
  message handed over by a stand-in for the Kafka consumer, and records dead letters instead of producing them.
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
from typing import Any, cast

import sqlalchemy as sa
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from orderflow.events import KafkaRecord
from orderflow.runtime import Definition, Runtime, Settings, Tx
from orderflow.runtime.consumer import ConsumerLoop
from orderflow.runtime.dlq import DeadLetter, DeadLetterPublisher
from orderflow_dev.contracts.messages import PREFIX


class ConsumerRejected(AssertionError):
    """The consumer's real path refused a message (dead-lettered it, or never committed its offset)."""


class _NoKafka:
    """The relay's producer in a contract world, where the relay never runs: events stay in the outbox, where
    ``World`` reads them. Any use is a bug."""

    def produce(self, *_args: object, **_kwargs: object) -> None:
        raise AssertionError("a contract world never publishes to Kafka")

    def flush(self, *_args: object) -> int:
        return 0


def _offline_runtime(definition: Definition, settings: Settings) -> Runtime:
    return Runtime(
        service=definition.name, metadata=definition.metadata, settings=settings, producer=cast(Producer, _NoKafka())
    )


class _OneMessage:
    """Stands in for ``confluent_kafka.Consumer``: hands over one batch, then asks the loop to stop."""

    def __init__(self, messages: Sequence[Message], stop: threading.Event) -> None:
        self._messages = list(messages)
        self._stop = stop
        self.committed: list[TopicPartition] = []

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        batch, self._messages = self._messages[:num_messages], self._messages[num_messages:]
        if not self._messages:
            # Stopping before the batch is applied also turns any "retry forever" into an immediate failure.
            self._stop.set()
        return batch

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.committed.extend(offsets)


class _DeadLetters:
    """Stands in for ``DeadLetterPublisher``: remembers what the loop would have dead-lettered."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def publish(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


@dataclass(frozen=True, slots=True)
class Published:
    """One outbox row: exactly what the relay hands to ``Producer.produce``."""

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
        self.runtime = _offline_runtime(definition, settings)
        self.store = self.runtime.store
        self._offset = 0

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

    # -- the consumer's edge: one Kafka message --------------------------------------------------------------

    def consume(self, record: KafkaRecord) -> None:
        """Run the service's real consumer loop on ``record``; ``ConsumerRejected`` unless it was applied."""
        self._offset += 1
        message = Message(
            topic=record.topic,
            partition=0,
            offset=self._offset,
            key=record.key,
            value=record.value,
            headers=list(record.headers),
        )
        stop = threading.Event()
        kafka = _OneMessage([message], stop)
        dead = _DeadLetters()
        loop = ConsumerLoop(
            definition=self.definition,
            prefix=PREFIX,
            consumer=cast(Consumer, kafka),
            store=self.store,
            tables=self.runtime.tables,
            dlq=cast(DeadLetterPublisher, dead),
            metrics=self.runtime.metrics,
            batch_size=1,
            batch_timeout=0,
        )
        loop.run(stop)
        if dead.letters:
            letter = dead.letters[0]
            raise ConsumerRejected(
                f"{self.definition.name} dead-lettered the message: {letter.reason}: {letter.detail}"
            )
        if not any(tp.offset == self._offset + 1 for tp in kafka.committed):
            raise ConsumerRejected(f"{self.definition.name} did not apply the message (its offset was not committed)")
        if record.headers and _type_of(record) not in self.definition.handlers:
            raise ConsumerRejected(f"{self.definition.name} has no handler for {_type_of(record)}: it ignored it")


def _type_of(record: KafkaRecord) -> str:
    return dict(record.headers).get("ce_type", b"").decode()
