"""A group's membership on JetStream: one durable pull consumer per (group, stream), pulled on demand.

Why pull, and why on demand: a pull consumer hands each message to whichever member asks, so the replicas of a
service share one durable consumer and the work, and a member gets only what it asked for. ``fetch`` keeps one pull
request per stream outstanding, for as many messages as the runtime's batch (``expires`` 1 s, re-issued when it is
used up, expired, or lost with a restarted server); what arrives waits in one buffer, so a busy stream fills the
batch and an idle one costs one request a second rather than one per 100 ms poll.

Settling is ``ack`` (explicit acks; fire-and-forget like every NATS publish, so ``settle`` only queues it: a lost
ack is a redelivery, which the inbox absorbs). A fetched message that is not settled comes back after ``ack_wait``:
10 s by default rather than JetStream's 30, because that is how long a crashed replica's messages wait (Kafka's
session timeout here is 10 s too, and an order's deadline is 30 s). So that a slow batch is not redelivered while it
is still being worked on, the member tells JetStream every ``ack_wait``/3 that what it holds is in progress
(``+WPI``), for at most ``MAX_HOLD`` (5 minutes, Kafka's ``max.poll.interval.ms``): a consumer that hangs rather
than crashes lets go of its messages then. ``close`` nak's everything fetched but unsettled (and what was still
buffered), so it comes back at once to another member. It first lets this member's pull requests end (at most
``expires``) while still listening: nats-server 2.9 re-sends a nak'd message to a waiting request whose inbox is
gone, finds no interest, and rolls the delivery back as if it had never been delivered, so its delivery count would
restart at 1.

``Received.deliveries`` is JetStream's ``num_delivered``; ``max_deliver`` is unlimited, the runtime dead-letters
past its own limit.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSub
from nats.js import api

from orderflow.errors import BrokerUnavailable
from orderflow.transport import Received
from orderflow.transport.nats import binding, naming
from orderflow.transport.nats.connection import Connection, unavailable
from orderflow.transport.nats.loop import LoopThread

log = logging.getLogger(__name__)

#: How long one pull request lingers on the server; re-issued once used up, expired or lost.
PULL_EXPIRES: Final = 1.0
#: How long a member keeps a fetched, unsettled message from redelivery by telling JetStream it is in progress.
MAX_HOLD: Final = 300.0
#: Between attempts to create/bind the group's consumers while the server is down or a stream is missing.
JOIN_RETRY: Final = 1.0
# Status codes that end a pull request: no messages (no_wait), request timeout (expired), conflict (409:
# consumer deleted, leadership change, exceeded max waiting).
_ENDS_REQUEST: Final = frozenset({"404", "408", "409"})


@dataclass(eq=False)
class _Pull:
    """One stream's consumer as this member pulls it."""

    channel: str
    stream: str
    inbox: str
    requested: int = 0
    expires_at: float = 0.0
    sub: NatsSub | None = None

    def alive(self, now: float) -> bool:
        """A pull request of ours may still be waiting on the server."""
        return self.requested > 0 and now < self.expires_at


@dataclass(frozen=True, slots=True)
class _Token:
    msg: Msg
    pull: _Pull = field(repr=False)
    arrived: float = 0.0


class NatsSubscription:
    """``orderflow.transport.Subscription`` over JetStream pull consumers; used by the consumer loop's thread."""

    def __init__(
        self,
        conn: Connection,
        loop: LoopThread,
        *,
        channels: Sequence[str],
        group: str,
        on_assigned: Callable[[int], None],
    ) -> None:
        self.joined = threading.Event()
        self._conn = conn
        self._loop = loop
        self._group = group
        self._consumer = naming.consumer(group)
        self._on_assigned = on_assigned
        self._reported = 0
        prefix = f"_INBOX.{uuid.uuid4().hex}"
        self._pulls = [_Pull(channel=c, stream=naming.stream(c), inbox=f"{prefix}.{i}") for i, c in enumerate(channels)]
        self._buffer: collections.deque[_Token] = collections.deque()
        self._unsettled: dict[int, _Token] = {}
        self._arrived: asyncio.Event | None = None
        self._ended: asyncio.Event | None = None
        self._bound: asyncio.Event | None = None
        self._closed = False
        self._joiner: asyncio.Future[None] | None = None
        self._keeper: asyncio.Future[None] | None = None
        loop.loop.call_soon_threadsafe(self._start)

    # -- the seam (caller's thread) -----------------------------------------------------------------------------

    def fetch(self, max_messages: int, timeout: float) -> list[Received]:
        if self._closed:
            return []
        try:
            received = self._loop.run(self._fetch(max(1, max_messages), timeout), timeout=timeout + 5.0)
        except TimeoutError:
            return []  # the loop was busy (a reconnect): nothing fetched, nothing lost
        if self.joined.is_set() and self._reported != len(self._pulls):
            self._reported = len(self._pulls)
            self._on_assigned(self._reported)
        return received

    def settle(self, messages: Sequence[Received]) -> None:
        tokens = [m.token for m in messages if isinstance(m.token, _Token)]
        if tokens:
            self._loop.submit(self._ack(tokens))

    def assigned(self) -> int:
        return len(self._pulls) if self.joined.is_set() else 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._close(), timeout=15.0)
        except (TimeoutError, RuntimeError) as e:
            log.warning(
                "closing the NATS subscription of %s: %s (unsettled messages come back after ack_wait)", self._group, e
            )

    # -- on the loop --------------------------------------------------------------------------------------------

    def _start(self) -> None:
        self._arrived = asyncio.Event()
        self._ended = asyncio.Event()
        self._bound = asyncio.Event()
        self._conn.on_reconnect(self._forget_requests)
        self._joiner = asyncio.ensure_future(self._join())
        self._keeper = asyncio.ensure_future(self._keep_in_progress())

    def _forget_requests(self) -> None:
        # A restarted server holds none of our pull requests: ask again on the next fetch.
        for pull in self._pulls:
            pull.requested = 0

    async def _join(self) -> None:
        """Create (or find) the group's consumer on each stream and subscribe to its inbox; retry until done."""
        assert self._bound is not None
        warned = False
        while not self._closed:
            try:
                nc = await self._conn.ready(timeout=JOIN_RETRY * 5)
                for pull in self._pulls:
                    await self._ensure_consumer(pull)
                    if pull.sub is None:
                        pull.sub = await nc.subscribe(pull.inbox, cb=self._receiver(pull))
                self._bound.set()
                self.joined.set()
                return
            except BrokerUnavailable as e:
                if not warned:
                    log.warning("group %s cannot join its NATS consumers yet: %s; retrying", self._group, e)
                    warned = True
            except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as e:
                if not warned:
                    log.warning(
                        "group %s cannot join its NATS consumers yet: %s; retrying", self._group, unavailable("join", e)
                    )
                    warned = True
            await asyncio.sleep(JOIN_RETRY)  # a retry backoff, not a synchronisation

    async def _ensure_consumer(self, pull: _Pull) -> None:
        js = self._conn.js
        try:
            await js.consumer_info(pull.stream, self._consumer)
            return
        except nats.js.errors.NotFoundError:
            pass
        options = self._conn.options
        config = api.ConsumerConfig(
            durable_name=self._consumer,
            description=f"OrderFlow group {self._group} on {pull.channel}",
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=options.ack_wait,
            max_deliver=-1,
            max_ack_pending=options.max_ack_pending,
            replay_policy=api.ReplayPolicy.INSTANT,
        )
        try:
            await js.add_consumer(pull.stream, config=config)
        except nats.js.errors.BadRequestError:
            # Another replica created it first, with settings of its own: use what is there.
            await js.consumer_info(pull.stream, self._consumer)

    def _receiver(self, pull: _Pull) -> Callable[[Msg], Awaitable[None]]:
        async def receive(msg: Msg) -> None:
            status = msg.headers.get(api.Header.STATUS) if msg.headers and not msg.data else None
            if status is not None:
                if status in _ENDS_REQUEST:
                    pull.requested = 0
                    if "Consumer Deleted" in (msg.headers or {}).get(api.Header.DESCRIPTION, ""):
                        self._rejoin()
            else:
                pull.requested -= 1
                self._buffer.append(_Token(msg, pull, asyncio.get_running_loop().time()))
                if self._arrived is not None:
                    self._arrived.set()
            if pull.requested <= 0 and self._ended is not None:
                self._ended.set()

        return receive

    def _rejoin(self) -> None:
        assert self._bound is not None
        if self._joiner is not None and not self._joiner.done():
            return
        self._bound.clear()
        self._joiner = asyncio.ensure_future(self._join())
        self._keeper = asyncio.ensure_future(self._keep_in_progress())

    async def _fetch(self, max_messages: int, timeout: float) -> list[Received]:
        assert self._arrived is not None and self._bound is not None
        if not self._bound.is_set():
            try:
                await asyncio.wait_for(self._bound.wait(), timeout)
            except TimeoutError:
                return []
        if len(self._buffer) < max_messages:
            await self._request(max_messages)
        if not self._buffer:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                return []
        out: list[Received] = []
        while self._buffer and len(out) < max_messages:
            token = self._buffer.popleft()
            self._unsettled[id(token)] = token
            out.append(_received(token))
        return out

    async def _request(self, batch: int) -> None:
        """Ask each stream with no live pull request for up to ``batch`` messages."""
        if not self._conn.connected:
            return
        now = asyncio.get_running_loop().time()
        for pull in self._pulls:
            if pull.requested > 0 and now < pull.expires_at:
                continue
            request = {"batch": batch, "expires": int(PULL_EXPIRES * 1e9)}
            subject = f"{api.DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{pull.stream}.{self._consumer}"
            try:
                await self._conn.nc.publish(subject, json.dumps(request).encode(), reply=pull.inbox)
            except nats.errors.Error as e:
                log.debug("pull request on %s: %s", pull.stream, e)
                return
            pull.requested = batch
            pull.expires_at = now + PULL_EXPIRES + 1.0

    async def _keep_in_progress(self) -> None:
        """Every ``ack_wait``/3, tell JetStream that what this member holds is still being worked on."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            await asyncio.sleep(self._conn.options.ack_wait / 3)  # a heartbeat period, not a synchronisation
            if not self._conn.connected:
                continue
            now = loop.time()
            for token in [*self._unsettled.values(), *self._buffer]:
                if now - token.arrived < MAX_HOLD:
                    try:
                        await token.msg.in_progress()
                    except nats.errors.Error as e:
                        log.debug("in-progress on %s: %s", token.pull.stream, e)
                        break

    async def _ack(self, tokens: Sequence[_Token]) -> None:
        for token in tokens:
            self._unsettled.pop(id(token), None)
            try:
                await token.msg.ack()
            except nats.errors.MsgAlreadyAckdError:
                pass
            except nats.errors.Error as e:
                log.warning("ack on %s failed (it will be redelivered): %s", token.pull.stream, e)
                return

    async def _close(self) -> None:
        for task in (self._joiner, self._keeper):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._unsettled or self._buffer:
            await self._requests_ended()
        await self._nak_all()
        for pull in self._pulls:
            if pull.sub is not None:
                # drain: stop the inbox, and hand what the server already sent to the buffer first
                try:
                    await asyncio.wait_for(pull.sub.drain(), 5)  # type: ignore[no-untyped-call]
                except (TimeoutError, nats.errors.Error) as e:
                    log.debug("draining %s: %s", pull.inbox, e)
                pull.sub = None
        await self._nak_all()  # what the server had sent before the inboxes went
        if self._conn.connected:
            try:
                await self._conn.nc.flush(5)
            except (TimeoutError, nats.errors.Error) as e:
                log.warning("flushing acks of group %s: %s", self._group, e)

    async def _requests_ended(self) -> None:
        """Wait (listening still) until none of this member's pull requests can take a message any more."""
        assert self._ended is not None
        loop = asyncio.get_running_loop()
        deadline = max(pull.expires_at for pull in self._pulls)
        while self._conn.connected and any(pull.alive(loop.time()) for pull in self._pulls):
            self._ended.clear()
            try:
                await asyncio.wait_for(self._ended.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return

    async def _nak_all(self) -> None:
        unsettled = [*self._unsettled.values(), *self._buffer]
        self._unsettled.clear()
        self._buffer.clear()
        for token in unsettled:
            try:
                await token.msg.nak()
            except nats.errors.Error as e:
                log.debug("nak on %s: %s", token.pull.stream, e)


def _received(token: _Token) -> Received:
    msg = token.msg
    key, headers = binding.from_wire(msg.headers)
    metadata = msg.metadata
    return Received(
        channel=token.pull.channel,
        partition=naming.partition_of(msg.subject),
        offset=metadata.sequence.stream,
        key=key,
        value=msg.data,
        headers=headers,
        deliveries=metadata.num_delivered,
        token=token,
    )
