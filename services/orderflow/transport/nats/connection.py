"""One nats-py connection per transport, made lazily and kept up by nats-py; nats-py's errors mapped here.

A transport is made before its broker may be up (``orderflow.transport.connect`` connects lazily), so the first
caller that needs the server starts a connect that never gives up (``max_reconnect_attempts=-1``) and waits for it
no longer than it can afford: ``probe``, ``ensure_channels`` and ``publish`` raise ``BrokerUnavailable`` after
``connect_timeout`` (at once when an established connection is reconnecting), a subscription just goes on trying.
Once up, nats-py reconnects by itself after a server restart (every 0.5 s) and resubscribes; its callbacks tell
readiness at once (``on_all_brokers_down``) and tell subscriptions to re-issue their pull requests, which a
restarted server no longer holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from orderflow.errors import BrokerUnavailable
from orderflow.transport.nats.options import Options

log = logging.getLogger(__name__)

#: Between reconnect attempts; a restarted local server is back within a second.
RECONNECT_WAIT: Final = 0.5
#: JetStream API calls (stream/consumer info, PubAck of one publish when no longer deadline is given).
API_TIMEOUT: Final = 5.0


def unavailable(what: str, exc: BaseException) -> BrokerUnavailable:
    """The project's error for a nats-py one (every call site maps through here, and chains it)."""
    if isinstance(exc, nats.js.errors.APIError):
        detail = f"{exc.description or 'JetStream API error'} (code {exc.code}, err_code {exc.err_code})"
    elif isinstance(exc, nats.js.errors.NoStreamResponseError):
        detail = "no stream captures the subject (has ensure_channels run?)"
    elif isinstance(exc, asyncio.TimeoutError | TimeoutError):
        detail = "no answer in time"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    error = BrokerUnavailable(f"NATS: {what}: {detail}")
    error.__cause__ = exc
    return error


class Connection:
    """The transport's client; every method runs on the transport's loop."""

    def __init__(
        self,
        url: str,
        options: Options,
        *,
        name: str,
        on_down: Callable[[str], None] | None,
    ) -> None:
        self.url = url
        self.options = options
        self.name = name
        self.nc = Client()
        self.js: JetStreamContext = self.nc.jetstream(timeout=API_TIMEOUT)
        self._on_down = on_down
        self._connector: asyncio.Task[None] | None = None
        self._up: asyncio.Event | None = None
        self._last_error: BaseException | None = None
        self._reconnect_listeners: list[Callable[[], None]] = []
        self._closed = False

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        self._reconnect_listeners.append(listener)

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    def start(self) -> asyncio.Event:
        """Start connecting (once); the event is set while the connection is up."""
        if self._up is None:
            self._up = asyncio.Event()
        if self._connector is None and not self._closed:
            self._connector = asyncio.get_running_loop().create_task(self._connect(), name=f"nats-connect-{self.name}")
        return self._up

    async def ready(self, timeout: float | None = None) -> Client:
        """The connected client, or ``BrokerUnavailable`` if it is not up within ``timeout`` s."""
        if self._closed:
            raise BrokerUnavailable("NATS: the transport is closed")
        up = self.start()
        if self.nc.is_reconnecting:
            # It was up and went away: say so at once (readiness, the relay's retry), nats-py keeps reconnecting.
            reason = f"; last error: {self._last_error}" if self._last_error else ""
            raise BrokerUnavailable(f"NATS at {self.url}: connection lost, reconnecting{reason}")
        if not self.nc.is_connected:
            wait = self.options.connect_timeout if timeout is None else timeout
            try:
                await asyncio.wait_for(up.wait(), wait)
            except TimeoutError:
                reason = f"; last error: {self._last_error}" if self._last_error else ""
                raise BrokerUnavailable(f"NATS at {self.url} is not reachable{reason}") from self._last_error
        return self.nc

    async def _connect(self) -> None:
        await self.nc.connect(
            servers=[self.url],
            name=self.name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]  # nats-py annotates seconds as int
            connect_timeout=self.options.connect_timeout,  # type: ignore[arg-type]
            ping_interval=10,
            max_outstanding_pings=2,
            error_cb=self._error,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
            closed_cb=self._closed_cb,
            **self.options.connect,
        )
        log.info("connected to NATS at %s", self.url)
        assert self._up is not None
        self._up.set()

    async def _error(self, exc: Exception) -> None:
        # Called on every failed (re)connect attempt: log the first of a run, keep the rest for the next caller.
        if self._last_error is None or type(exc) is not type(self._last_error):
            log.warning("NATS client error: %s: %s", type(exc).__name__, exc)
        self._last_error = exc

    async def _disconnected(self) -> None:
        if self._up is not None:
            self._up.clear()
        if self._closed:
            return
        log.warning("lost the connection to NATS at %s; reconnecting", self.url)
        if self._on_down is not None:
            self._on_down(f"NATS connection to {self.url} lost")

    async def _reconnected(self) -> None:
        log.info("reconnected to NATS at %s", self.url)
        self._last_error = None
        if self._up is not None:
            self._up.set()
        for listener in self._reconnect_listeners:
            listener()

    async def _closed_cb(self) -> None:
        if self._up is not None:
            self._up.clear()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        if not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.close(), 5)
            except (TimeoutError, OSError, nats.errors.Error) as e:  # closing while the server is away
                log.debug("closing the NATS connection: %s", e)
