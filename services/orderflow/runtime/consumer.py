"""The consumer loop: fetch a batch, apply it in one transaction, dead-letter the poison, then settle the batch.

A batch is settled (offsets committed, messages acked) only after the state change (and the outbox rows it
produced) is durable, so a crash at any point re-delivers at most the last batch, which the inbox turns into
no-ops. The loop knows the broker only through the transport seam (``orderflow.transport.Subscription``).

A transient failure retries the same batch with backoff, forever, and never dead-letters. A handler that fails for
good on one message is found by re-running the batch one message per transaction; only that message is
dead-lettered. A message the broker has delivered more than ``DELIVERY_LIMIT`` times (one that kills the process
every time it is applied) is dead-lettered without being applied, so it cannot block its queue for ever (brokers
that count deliveries: JetStream, RabbitMQ).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from orderflow.errors import Permanent, Retryable
from orderflow.events import Delivery, Event, Poison, codec
from orderflow.runtime import faults, inbox, outbox, tracing
from orderflow.runtime.backoff import Backoff
from orderflow.runtime.db import Store
from orderflow.runtime.definition import Definition
from orderflow.runtime.dlq import DeadLetter, DeadLetterPublisher
from orderflow.runtime.metrics import Metrics
from orderflow.runtime.tx import Tx
from orderflow.transport import Received, Subscription

log = logging.getLogger(__name__)

HANDLER_ATTEMPTS = 3
DELIVERY_LIMIT = 10


class Stopping(Exception):
    """Shutdown was requested while a batch was still being retried; its offsets stay uncommitted."""


@dataclass(frozen=True, slots=True)
class Item:
    event: Event
    delivery: Delivery
    message: Received


class ConsumerLoop:
    def __init__(
        self,
        *,
        definition: Definition,
        prefix: str,
        subscription: Subscription | None,
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
        # None until the service has subscribed (``attach``): the loop runs only after that.
        self.subscription = subscription
        self.store = store
        self.tables = tables
        self.dlq = dlq
        self.metrics = metrics
        self.relay = relay
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.last_poll = time.monotonic()
        self.joined = threading.Event()
        self._stop = threading.Event()

    def attach(self, subscription: Subscription) -> None:
        """The subscription the loop fetches from, once the service has joined its group."""
        self.subscription = subscription
        self.joined = subscription.joined

    def on_assigned(self, count: int) -> None:
        """The subscription's share of the channels changed (``Transport.subscribe``'s callback)."""
        self.metrics.assigned_partitions.set(count)

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        subscription = self.subscription
        assert subscription is not None, "attach() a subscription before run()"
        backoff = Backoff(first=0.5, cap=10.0)
        while not stop.is_set():
            self.last_poll = time.monotonic()
            try:
                messages = subscription.fetch(self.batch_size, self.batch_timeout)
                backoff.reset()
            except Retryable as e:
                delay = backoff.next()
                log.warning("fetch failed, retrying in %.1fs: %s", delay, e)
                stop.wait(delay)
                continue
            if not messages:
                continue
            try:
                self.process(messages)
            except Stopping:
                log.warning("stopping with a batch not applied; it will be redelivered")
                return

    # -- one batch -------------------------------------------------------------------------------------------

    def process(self, messages: Sequence[Received]) -> None:
        started = time.perf_counter()
        items: list[Item] = []
        letters: list[DeadLetter] = []
        for m in messages:
            delivery = Delivery(m.channel, m.partition, m.offset)
            if codec.ignorable(m.headers, self.handlers):
                self.metrics.ignored.inc()
                continue
            if m.deliveries > DELIVERY_LIMIT:
                detail = f"delivered {m.deliveries} times without being settled (limit {DELIVERY_LIMIT})"
                letters.append(_letter(m, delivery, "delivery_limit", detail))
                continue
            try:
                event = codec.decode(key=m.key, value=m.value, headers=m.headers)
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
        assert self.subscription is not None
        self.subscription.settle(messages)
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


def _letter(m: Received, d: Delivery, reason: str, detail: str) -> DeadLetter:
    return DeadLetter(
        reason=reason,
        detail=detail,
        topic=d.topic,
        partition=d.partition,
        offset=d.offset,
        key=m.key,
        value=m.value,
        headers=m.headers,
    )
