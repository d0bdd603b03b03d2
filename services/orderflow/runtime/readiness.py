"""Serving without a broker: broker set-up retried in the background, and what the broker's state means for
readiness.

A service must not need its broker (Kafka, NATS, RabbitMQ: the transport) to start. On Kubernetes a Pod rescheduled
during a broker outage that exits at start crash-loops, and the order service would stop taking orders that its
outbox could hold. So a service starts its HTTP server at once, and one background thread, :class:`BrokerLink`, does
the broker set-up steps (probe, create channels, subscribe) with backoff, forever, logging why each attempt failed;
only then do the consumer loop and the outbox relay start. Afterwards the same thread keeps :class:`BrokerState`
true: a transport that sees its broker go away (Kafka: a client's ``_ALL_BROKERS_DOWN`` error) makes it probe the
broker at once, and while the broker is down it probes every second until it answers again. A probe decides, not
the error itself: librdkafka queues errors until the client is polled, so a consumer can report an outage that
ended seconds ago.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from orderflow.errors import BrokerUnavailable, Retryable
from orderflow.runtime.backoff import Backoff
from orderflow.transport import Transport

log = logging.getLogger(__name__)

WATCH_INTERVAL_S: Final = 1.0

Step = tuple[str, Callable[[], None]]


class BrokerState:
    """Whether this service reaches its broker, since when, and the last reason it did not (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, display: str = "Kafka") -> None:
        self._clock = clock
        self.display = display
        self._lock = threading.Lock()
        self._up = False
        self._reason = "not connected yet"
        self._since = clock()

    @property
    def up(self) -> bool:
        return self._up

    def down(self, reason: str) -> None:
        with self._lock:
            if self._up:
                log.warning("%s unreachable: %s", self.display, reason)
                self._since = self._clock()
            self._up, self._reason = False, reason

    def mark_up(self) -> None:
        with self._lock:
            if not self._up:
                log.info("%s reachable", self.display)
                self._up, self._reason, self._since = True, "", self._clock()

    def snapshot(self) -> dict[str, Any]:
        """For ``/readyz``: ``{"state": "up"|"down", "for_seconds": ..., "reason"?: ...}``."""
        with self._lock:
            body: dict[str, Any] = {"state": "up" if self._up else "down"}
            body["for_seconds"] = round(self._clock() - self._since, 1)
            if not self._up:
                body["reason"] = self._reason
            return body


class BrokerLink:
    """Runs the broker set-up steps until they all succeed, then watches the broker; both until ``stop``."""

    def __init__(self, *, transport: Transport, state: BrokerState, stop: threading.Event) -> None:
        self.transport = transport
        self.state = state
        self.stop = stop
        self.connected = threading.Event()
        self._suspect = threading.Event()

    def suspect(self, _reason: str = "") -> None:
        """A client saw every broker down: probe now (called from the client's poll, so it must not block)."""
        self._suspect.set()

    def probe(self) -> None:
        """Ask the broker something: it is up when it answers, else ``BrokerUnavailable``."""
        self.transport.probe()
        self.state.mark_up()

    def set_up(self, steps: Sequence[Step]) -> bool:
        """Run ``steps`` in order, each retried with backoff until it succeeds; False if stopped first."""
        backoff = Backoff(first=0.5, cap=10.0)
        for name, step in [("probe the broker", self.probe), *steps]:
            while True:
                if self.stop.is_set():
                    return False
                try:
                    step()
                    backoff.reset()
                    break
                except Retryable as e:
                    self.state.down(str(e))
                    delay = backoff.next()
                    log.warning("%s set-up (%s) failed, retrying in %.1fs: %s", self.state.display, name, delay, e)
                    self.stop.wait(delay)
        self.connected.set()
        return True

    def watch(self) -> None:
        """Serve the transport's background callbacks; while the broker is marked down, probe it until it answers."""
        while not self.stop.is_set():
            self._suspect.wait(WATCH_INTERVAL_S)
            self.transport.poll()
            if self._suspect.is_set() or not self.state.up:
                self._suspect.clear()
                try:
                    self.probe()
                except BrokerUnavailable as e:
                    self.state.down(str(e))
