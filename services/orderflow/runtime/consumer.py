"""The consumer loop: read a batch, apply it in one transaction, dead-letter the poison, then commit offsets.

Offsets are committed only after the state change (and the outbox rows it produced) is durable, so a crash at
any point re-delivers at most the last batch, which the inbox turns into no-ops. A transient failure retries the
same batch with backoff, forever, and never dead-letters. A handler that fails for good on one message is found
by re-running the batch one message per transaction; only that message is dead-lettered.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from orderflow.errors import Permanent, Retryable
from orderflow.events import Delivery, Event, Poison, codec
from orderflow.runtime import faults, inbox, outbox, tracing
from orderflow.runtime.backoff import Backoff
from orderflow.runtime.db import Store
from orderflow.runtime.definition import Definition
from orderflow.runtime.dlq import DeadLetter, DeadLetterPublisher
from orderflow.runtime.metrics import Metrics
from orderflow.runtime.tx import Tx

log = logging.getLogger(__name__)

HANDLER_ATTEMPTS = 3


class Stopping(Exception):
    """Shutdown was requested while a batch was still being retried; its offsets stay uncommitted."""


@dataclass(frozen=True, slots=True)
class Item:
    event: Event
    delivery: Delivery
    message: Message


class ConsumerLoop:
    def __init__(
        self,
        *,
        definition: Definition,
        prefix: str,
        consumer: Consumer,
        store: Store,
        tables: Mapping[str, sa.Table],
        dlq: DeadLetterPublisher,
        metrics: Metrics,
        batch_size: int,
        batch_timeout: float,
        relay: outbox.Relay | None = None,
    ) -> None:
        self.definition = definition
        self.handlers = definition.handlers
        self.prefix = prefix
        self.consumer = consumer
        self.store = store
        self.tables = tables
        self.dlq = dlq
        self.metrics = metrics
        self.relay = relay
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.last_poll = time.monotonic()
        self.assigned: set[tuple[str, int]] = set()
        # The last offset applied per partition, committed once more, synchronously, on a graceful stop.
        self.applied: dict[tuple[str, int], int] = {}
        self.joined = threading.Event()
        self._stop = threading.Event()

    def on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Called by librdkafka (inside ``consume``) when the group hands this member its partitions."""
        self.assigned = {(tp.topic, tp.partition) for tp in partitions if tp.topic is not None}
        self.metrics.assigned_partitions.set(len(self.assigned))
        self.joined.set()
        log.info(
            "assigned %d partition(s): %s",
            len(self.assigned),
            sorted(self.assigned),
            extra={"count": len(self.assigned)},
        )

    def on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self.assigned -= revoked
        for where in revoked:
            self.applied.pop(where, None)  # another member owns it now: never commit an older offset over theirs
        self.metrics.assigned_partitions.set(len(self.assigned))
        log.info("revoked %d partition(s)", len(partitions), extra={"count": len(partitions)})

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        while not stop.is_set():
            self.last_poll = time.monotonic()
            messages = self._next_batch()
            if not messages:
                continue
            try:
                self.process(messages)
            except Stopping:
                log.warning("stopping with a batch not applied; it will be redelivered")
                return
        self._commit(self.applied, asynchronous=False)

    def _next_batch(self) -> list[Message]:
        """What has already been fetched, up to a batch; else wait (up to the poll timeout) for the first message.

        ``consume(n, timeout)`` alone would wait the whole timeout for ``n`` messages whenever fewer are queued,
        adding that timeout to every hop of the saga at low load. Taking what is there keeps latency low when idle
        and batches full under load, when librdkafka's prefetch queue is never empty.
        """
        messages = self.consumer.consume(num_messages=self.batch_size, timeout=0)
        if messages:
            return messages
        messages = self.consumer.consume(num_messages=1, timeout=self.batch_timeout)
        if messages:
            messages += self.consumer.consume(num_messages=self.batch_size - 1, timeout=0)
        return messages

    # -- one batch -------------------------------------------------------------------------------------------

    def process(self, messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        offsets: dict[tuple[str, int], int] = {}
        items: list[Item] = []
        letters: list[DeadLetter] = []
        for m in messages:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer error: %s", err)
                continue
            delivery = delivery_of(m)
            where = (delivery.topic, delivery.partition)
            offsets[where] = max(offsets.get(where, -1), delivery.offset)
            headers = headers_of(m)
            if codec.ignorable(headers, self.handlers):
                self.metrics.ignored.inc()
                continue
            try:
                event = codec.decode(key=m.key(), value=m.value(), headers=headers)
            except Poison as p:
                letters.append(_letter(m, delivery, p.reason, p.detail))
                continue
            if event.type not in self.handlers:
                self.metrics.ignored.inc()
                continue
            items.append(Item(event, delivery, m))
        if items:
            self._apply(items, letters)
        if letters:
            self._retrying(lambda: self.dlq.publish(letters))
            for letter in letters:
                self.metrics.count_dead_lettered(letter.reason)
                log.warning(
                    "dead-lettered: %s",
                    letter.detail,
                    extra={
                        "reason": letter.reason,
                        "topic": letter.topic,
                        "partition": letter.partition,
                        "offset": letter.offset,
                    },
                )
        self._commit(offsets)
        self.metrics.batch_size.observe(len(messages))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _apply(self, items: Sequence[Item], letters: list[DeadLetter]) -> None:
        try:
            self._retrying(lambda: self._transaction(items))
            return
        except Stopping:
            raise
        except Exception as e:
            log.warning("batch of %d failed (%s); applying one message per transaction", len(items), e)
        for item in items:
            attempts = 0
            while True:
                try:
                    self._retrying(functools.partial(self._transaction, [item]))
                    break
                except Stopping:
                    raise
                except Permanent as p:
                    letters.append(_letter(item.message, item.delivery, p.reason, p.detail))
                    break
                except Exception as e:
                    attempts += 1
                    if attempts >= HANDLER_ATTEMPTS:
                        log.exception(
                            "handler failed %d times; dead-lettering",
                            attempts,
                            extra={"order_id": item.event.subject, "event_id": item.event.id},
                        )
                        letters.append(
                            _letter(item.message, item.delivery, "handler_error", f"{type(e).__name__}: {e}")
                        )
                        break

    def _transaction(self, items: Sequence[Item]) -> None:
        new, tx = apply(
            self.store,
            definition=self.definition,
            tables=self.tables,
            prefix=self.prefix,
            events=[i.event for i in items],
            relay=self.relay,
        )
        faults.reach("consumer.after_commit")
        duplicates = len(items) - len(new)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        for event in new:
            self.metrics.count_consumed(event.type)
        # DEBUG, not INFO: one line per emitted event cost more than a tenth of a service's time in a burst.
        for event in tx.emitted if log.isEnabledFor(logging.DEBUG) else ():
            log.debug(
                "emitted %s",
                event.type,
                extra={"order_id": event.subject, "event_id": event.id, "event_type": event.type},
            )

    def _retrying(self, work: Callable[[], None]) -> None:
        """Run ``work`` until it does not raise ``Retryable``, backing off in between."""
        backoff = Backoff()
        while True:
            try:
                work()
                return
            except Retryable as e:
                if self._stop.is_set():
                    raise Stopping() from e
                delay = backoff.next()
                self.metrics.retries.inc()
                log.warning("transient failure, retrying in %.1fs: %s", delay, e)
                self._stop.wait(delay)

    def _commit(self, offsets: Mapping[tuple[str, int], int], *, asynchronous: bool = True) -> None:
        """Commit offsets of applied messages. Asynchronously while running: the state is already durable, so the
        consumer need not wait a broker round trip per batch (a lost or late commit only means a redelivery,
        which the inbox absorbs); synchronously on a graceful stop."""
        if not offsets:
            return
        if asynchronous:
            self.applied.update(offsets)
        positions = [TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()]
        try:
            # Two calls, not one with ``asynchronous=asynchronous``: the client's overloads type each on its literal.
            if asynchronous:
                self.consumer.commit(offsets=positions, asynchronous=True)
            else:
                self.consumer.commit(offsets=positions, asynchronous=False)
        except KafkaException as e:
            # The state is committed; the worst case is a redelivery that the inbox absorbs.
            log.warning("offset commit failed (the batch will be redelivered and skipped): %s", e)


def apply(
    store: Store,
    *,
    definition: Definition,
    tables: Mapping[str, sa.Table],
    prefix: str,
    events: Sequence[Event],
    relay: outbox.Relay | None = None,
) -> tuple[list[Event], Tx]:
    """Apply ``events`` in one transaction: inbox, handlers, outbox. Returns the events that were new and the Tx.

    This is the whole of "exactly-once effect" on an at-least-once transport; the consumer loop and the
    state-machine property tests both go through it. With a ``relay``, the committed outbox rows are handed to it
    (published from memory); without, they wait in the table for a relay's scan.
    """
    rows: list[outbox.Row] = []
    # The spans (when tracing is on) end after the commit: a rolled-back transaction's spans end as errors.
    with (
        tracing.consuming(definition.name) as spans,
        store.write(around_commit=None if relay is None else lambda: relay.handover(rows)) as conn,
    ):
        new = inbox.record_new(conn, tables["inbox"], events)
        tx = Tx(conn, service=definition.name, prefix=prefix)
        if definition.prepare is not None and new:
            definition.prepare(tx, new)
        for event in new:
            tx.traceparent = spans.start(event)
            definition.handlers[event.type](tx, event)
        rows.extend(outbox.append(conn, tables["outbox"], tx.pending))
        faults.reach("consumer.mid_batch")
    return new, tx


def delivery_of(m: Message) -> Delivery:
    """Where a consumed message came from.

    Kafka's contract: a message ``consume()`` returns without an error always has a topic, partition and offset
    (confluent-kafka types them ``Optional`` because an error event, or a message built by hand, may lack them).
    """
    topic, partition, offset = m.topic(), m.partition(), m.offset()
    assert topic is not None and partition is not None and offset is not None, "a consumed message has a position"
    return Delivery(topic, partition, offset)


def headers_of(m: Message) -> list[tuple[str, bytes | None]]:
    """A consumed message's headers, ``[]`` when it has none."""
    # cast: librdkafka hands a consumed message's headers back as a list of (name, bytes-or-None) pairs; the
    # stub's wider type (a dict, or str values) is what ``produce``/``set_headers`` accept, never what is read.
    return cast(list[tuple[str, bytes | None]], m.headers() or [])


def _letter(m: Message, d: Delivery, reason: str, detail: str) -> DeadLetter:
    return DeadLetter(
        reason=reason,
        detail=detail,
        topic=d.topic,
        partition=d.partition,
        offset=d.offset,
        key=m.key(),
        value=m.value(),
        headers=headers_of(m),
    )
