"""Assembling one service from its definition: store, consumer loop, outbox relay, HTTP, periodic jobs.

A service module only declares its tables, its event handlers, its routes and its periodic jobs (a
``Definition``); everything about delivery guarantees lives here and in the runtime modules it wires together.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from orderflow import transport as transports
from orderflow.errors import Retryable
from orderflow.events import catalog
from orderflow.runtime import openapi, readiness, tracing
from orderflow.runtime.config import Settings
from orderflow.runtime.consumer import ConsumerLoop
from orderflow.runtime.context import Runtime
from orderflow.runtime.definition import Definition, Ticker
from orderflow.runtime.dlq import DeadLetterPublisher
from orderflow.runtime.http import HttpServer, Request, Response, Route

log = logging.getLogger(__name__)

LIVENESS_WINDOW_S = 60.0


class Service:
    """One running service. ``start()`` returns once it consumes and serves; ``stop()`` shuts down gracefully."""

    def __init__(self, definition: Definition, settings: Settings) -> None:
        self.definition = definition
        self.settings = settings
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._tickers_alive: dict[str, float] = {}
        # The broker (the transport the settings name), its state, and the background set-up that needs no broker
        # to start.
        self.transport = transports.connect(
            settings, client_id=f"orderflow-{definition.name}", on_all_brokers_down=self._suspect_broker
        )
        self.broker = readiness.BrokerState(display=self.transport.display)
        self.runtime = Runtime(
            service=definition.name, metadata=definition.metadata, settings=settings, transport=self.transport
        )
        self.link = readiness.BrokerLink(transport=self.transport, state=self.broker, stop=self.stopping)
        self.subscription: transports.Subscription | None = None
        self.loop = ConsumerLoop(
            definition=definition,
            prefix=settings.topic_prefix,
            subscription=None,
            store=self.runtime.store,
            tables=self.runtime.tables,
            dlq=DeadLetterPublisher(
                publisher=self.transport.publisher("dlq"),
                topic=catalog.dlq_topic(settings.topic_prefix, definition.name),
                service=definition.name,
            ),
            metrics=self.runtime.metrics,
            relay=self.runtime.relay,
            batch_size=settings.batch_size,
            batch_timeout=settings.batch_timeout_ms / 1000,
        )
        routes = [
            Route("GET", "/healthz", self._healthz),
            Route("GET", "/readyz", self._readyz),
            Route("GET", "/metrics", self._metrics),
            *definition.routes(self.runtime),
        ]
        routes.append(openapi.route(definition.name, routes))
        self.http = HttpServer(host=settings.http_host, port=settings.http_port, routes=routes)
        self._ready = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        return sorted({catalog.get(t).topic(self.settings.topic_prefix) for t in self.definition.handlers})

    def start(self) -> None:
        """Serve HTTP and run the periodic jobs at once; broker set-up, then consuming and relaying, follow in the
        background (``readiness.BrokerLink``), however long the broker takes to answer."""
        s = self.settings
        tracing.configure(self.definition.name, system=self.transport.name)
        self.http.start()
        for ticker in self.definition.tickers:
            self._spawn(f"ticker-{ticker.name}", functools.partial(self._tick, ticker))
        self._spawn("kafka", self._connect)
        self._ready = True
        log.info(
            "%s started: http on %s:%d; connecting to %s at %s",
            self.definition.name,
            s.http_host,
            self.http.port,
            self.transport.display,
            s.kafka_bootstrap if s.transport == "kafka" else _redacted(s.transport_url),
        )

    def _suspect_broker(self, reason: str) -> None:
        self.link.suspect(reason)

    def _connect(self) -> None:
        if not self.link.set_up([("create channels", self._ensure_topics), ("subscribe", self._subscribe)]):
            return
        self._spawn("relay", lambda: self.runtime.relay.run(self.stopping))
        self._spawn("consumer", lambda: self.loop.run(self.stopping))
        log.info("%s consuming %s as %s", self.definition.name, ", ".join(self.subscriptions()), self.settings.group)
        self.link.watch()

    def _ensure_topics(self) -> None:
        s = self.settings
        if not s.create_topics:
            return
        produced = [e.topic(s.topic_prefix) for e in catalog.produced_by(self.definition.name)]
        self.transport.ensure_channels(
            [*self.subscriptions(), *produced, catalog.dlq_topic(s.topic_prefix, self.definition.name)],
            partitions=s.topic_partitions,
            replication=s.topic_replication,
        )

    def _subscribe(self) -> None:
        if self.subscription is None:
            self.subscription = self.transport.subscribe(
                self.subscriptions(), group=self.settings.group, on_assigned=self.loop.on_assigned
            )
            self.loop.attach(self.subscription)

    def stop(self, drain_s: float = 5.0) -> None:
        """Finish the batch in hand, commit it, publish what the outbox holds (within ``drain_s``), close."""
        self._ready = False
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=60)
        if self.broker.up:
            self.runtime.relay.drain(drain_s)
        else:
            log.warning("%s unreachable: what the outbox holds is published at the next start", self.transport.display)
        self.runtime.relay.release()
        if self.subscription is not None:
            self.subscription.close()
        self.transport.close()
        self.http.stop()
        self.runtime.store.dispose()
        tracing.shutdown()
        log.info("%s stopped", self.definition.name)

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully."""
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        self.start()
        while not self.stopping.wait(1.0):
            dead = [t.name for t in self._threads if not t.is_alive()]
            if dead:
                log.error("a service thread died (%s); shutting down", ", ".join(dead))
                break
        self.stop()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=self._guard(name, target), name=name, daemon=True)
        # Started before it is listed: the watchdog (``run_forever``) and ``/healthz`` take a listed thread that is
        # not alive for a dead one, and a thread is not alive until ``start`` has run.
        thread.start()
        self._threads.append(thread)

    def _guard(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception:
                log.exception("thread %s crashed", name)
                self.stopping.set()

        return run

    def _tick(self, ticker: Ticker) -> None:
        interval = ticker.interval(self.settings)
        while not self.stopping.wait(interval):
            self._tickers_alive[ticker.name] = time.monotonic()
            try:
                ticker.run(self.runtime)
            except Retryable as e:
                log.warning("%s: %s", ticker.name, e)
            except Exception:
                log.exception("%s failed", ticker.name)

    # -- probes ----------------------------------------------------------------------------------------------

    def _healthz(self, _request: Request) -> Response:
        dead = [t.name for t in self._threads if not t.is_alive()]
        if dead and not self.stopping.is_set():
            return 503, {"status": "unhealthy", "dead_threads": dead}
        return 200, {"status": "ok"}

    def _readyz(self, _request: Request) -> Response:
        problems: list[str] = []
        kafka: list[str] = []  # what the broker's state stops; a service ready without a broker only reports them
        broker = self.broker.snapshot()
        name = self.transport.display
        if not self._ready:
            problems.append("not started or stopping")
        if not self.link.connected.is_set():
            kafka.append(f"setting up {name} (channels, subscription), retrying: {broker.get('reason', '')}")
        elif not self.broker.up:
            kafka.append(f"{name} unreachable: {broker.get('reason', '')}")
        elif not self.loop.joined.is_set():
            # Ready once the group has taken this replica in (its assignment may be empty: more replicas than
            # partitions), so that a client that waits for readiness does not wait out the first rebalance.
            kafka.append("waiting for the consumer group to assign partitions")
        now = time.monotonic()
        if self.link.connected.is_set():
            if now - self.loop.last_poll > LIVENESS_WINDOW_S:
                problems.append(f"consumer has not polled for {now - self.loop.last_poll:.0f}s")
            if now - self.runtime.relay.last_cycle > LIVENESS_WINDOW_S:
                problems.append(f"outbox relay idle for {now - self.runtime.relay.last_cycle:.0f}s")
        try:
            self.runtime.store.ping()
            database = "up"
        except Retryable as e:
            problems.append(str(e))
            database = "down"
        if not self.definition.ready_without_broker:
            problems += kafka
        # "kafka" is the broker's state whatever the transport (the field predates the others); "transport" names it.
        body: dict[str, Any] = {
            "kafka": broker,
            "broker": broker,
            "transport": self.transport.name,
            "database": database,
        }
        if problems:
            return 503, {"status": "not ready", "problems": problems, **body}
        if kafka:
            return 200, {"status": "ready", "degraded": kafka, **body}
        return 200, {"status": "ready", **body}

    def _metrics(self, _request: Request) -> tuple[int, Any]:
        return 200, self.runtime.metrics.exposition()


def _redacted(url: str) -> str:
    """``url`` without a password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"
