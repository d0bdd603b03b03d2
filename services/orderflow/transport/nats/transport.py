"""The NATS JetStream transport: one connection on one private loop, streams for channels, pull consumers for groups."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import nats.errors
import nats.js.errors
from nats.js import api

from orderflow.errors import BrokerUnavailable
from orderflow.transport.nats import naming, options
from orderflow.transport.nats.connection import Connection, unavailable
from orderflow.transport.nats.loop import LoopThread
from orderflow.transport.nats.publisher import NatsPublisher
from orderflow.transport.nats.subscription import NatsSubscription

log = logging.getLogger(__name__)

T = TypeVar("T")

# JetStream's err_code for "stream name already in use": a concurrent replica created it first.
STREAM_NAME_IN_USE: Final = 10058


class NatsTransport:
    """``orderflow.transport.Transport`` for NATS JetStream (see the package docstring for what it guarantees)."""

    name = "nats"
    display = "NATS"

    def __init__(
        self,
        url: str,
        settings: options.Options,
        *,
        client_id: str,
        partitions: int,
        on_all_brokers_down: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self._partitions = partitions
        self._loop = LoopThread(f"nats-{client_id}")
        self._conn = Connection(url, settings, name=client_id, on_down=on_all_brokers_down)
        self._subscriptions: list[NatsSubscription] = []
        self._closed = False

    def _run(self, what: str, coro: Any, timeout: float) -> Any:
        try:
            return self._loop.run(coro, timeout=timeout)
        except TimeoutError as e:
            raise BrokerUnavailable(f"NATS: {what}: {e}") from e
        except (nats.errors.Error, nats.js.errors.Error) as e:
            raise unavailable(what, e) from e
        except RuntimeError as e:  # the transport is closed
            raise BrokerUnavailable(f"NATS: {what}: {e}") from e

    def probe(self) -> None:
        async def probe() -> None:
            await self._conn.ready()
            await self._conn.js.account_info()

        self._run("probe", probe(), self._conn.options.connect_timeout + 5.0)

    def ensure_channels(self, channels: Sequence[str], *, partitions: int, replication: int) -> None:
        async def ensure() -> None:
            await self._conn.ready()
            for channel in channels:
                await self._ensure_stream(channel, partitions=partitions, replication=replication)

        self._run(f"ensure_channels {', '.join(channels)}", ensure(), self._conn.options.connect_timeout + 30.0)

    async def _ensure_stream(self, channel: str, *, partitions: int, replication: int) -> None:
        js = self._conn.js
        name = naming.stream(channel)
        try:
            await js.stream_info(name)
            return
        except nats.js.errors.NotFoundError:
            pass
        config = api.StreamConfig(
            name=name,
            description=f"OrderFlow channel {channel}: subjects {channel}.p.<0..{partitions - 1}> by key",
            subjects=naming.subjects(channel),
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=self._conn.options.max_age,
            duplicate_window=self._conn.options.duplicate_window,
            num_replicas=replication,
            discard=api.DiscardPolicy.OLD,
        )
        try:
            await js.add_stream(config)
            log.info("created JetStream stream %s for %s", name, channel)
        except nats.js.errors.APIError as e:
            if e.err_code != STREAM_NAME_IN_USE:
                raise
            await js.stream_info(name)  # created by a concurrent caller (with its settings): it exists now

    def subscribe(self, channels: Sequence[str], *, group: str, on_assigned: Callable[[int], None]) -> NatsSubscription:
        self._conn_started()
        subscription = NatsSubscription(self._conn, self._loop, channels=channels, group=group, on_assigned=on_assigned)
        self._subscriptions.append(subscription)
        return subscription

    def publisher(self, role: str) -> NatsPublisher:
        self._conn_started()
        return NatsPublisher(self._conn, self._loop, role=role, partitions=self._partitions)

    def _conn_started(self) -> None:
        self._loop.loop.call_soon_threadsafe(self._conn.start)

    def poll(self) -> None:
        """Nothing to serve: nats-py's callbacks run on the transport's own loop."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in self._subscriptions:
            subscription.close()
        try:
            self._loop.run(self._conn.close(), timeout=10.0)
        except (TimeoutError, RuntimeError) as e:
            log.debug("closing the NATS connection: %s", e)
        self._loop.stop()
