"""A member of a group: its lanes (one per queue of the group), its slot, and handing the queues over in order.

Per-order ordering. The group's hash exchange sends every event of one order (one routing key) to the same
queue ``<group>.<i>``, whichever channel it came from, and each queue has a single active consumer: the broker
delivers a queue to one member at a time, in order, and the others wait behind it as standbys.

Spreading the queues. A single-active-consumer queue goes to whoever registered first, so without more a
replica that starts later would only ever stand by. Each member therefore holds a *slot*: an exclusive queue
``<group>.member.<k>`` (the lowest free ``k``), which the broker deletes when its connection goes, so the live
slots are exactly the live members. Every ~2 s a member looks which slots are held; queue ``i`` belongs to the
member of rank ``i mod n`` among the ``n`` live slots. A member that gets deliveries from a queue that is not
its own hands it over: it stops passing that queue's messages on, waits until what it passed on is settled,
then drops that queue's connection, and registers on it again, now at the back. Each queue has its own
connection for that reason: see :func:`connect.abort` — a dropped connection gives its unacknowledged messages
back *before* the next consumer is activated, so the next member receives them first, in order; a clean close
would not. Members register on queues starting at their own slot, so replicas that start together spread at
once; a replica that starts later gets its share within a rebalance interval or two. Convergence is bounded
(each hand-over moves the queue one place down the waiting line) and only happens when membership changes.

What does not hold: while two members see different membership (for up to an interval), a queue may move
twice; each move is a redelivery of what the giver held (counted in ``deliveries``), never a reordering. More
members than queues: the extra ones stand by.

Threading: everything here is used by the consumer loop's thread only, as pika requires.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import pika
import pika.exceptions
import pika.spec
from pika.adapters.blocking_connection import BlockingChannel

from orderflow.errors import BrokerUnavailable
from orderflow.transport import Received
from orderflow.transport.rabbitmq import binding, connect, topology

REBALANCE_S: Final = 2.0
SLICE_S: Final = 0.01  # how long one lane's socket is waited on before the next one's, while nothing arrives
MAX_SLOTS: Final = 256
_HELD: Final = frozenset({405})  # RESOURCE_LOCKED: another member's exclusive slot queue
_FREE: Final = frozenset({404})  # NOT_FOUND: nobody holds it


@dataclass(frozen=True, slots=True)
class Token:
    """Where a message came from, to settle it: lane, the lane connection's generation, delivery tag."""

    lane: int
    generation: int
    tag: int


@dataclass(slots=True)
class _Lane:
    index: int
    queue: str
    generation: int = 0
    connection: pika.BlockingConnection | None = None
    channel: BlockingChannel | None = None
    unacked: deque[int] = field(default_factory=deque)  # delivered to us, not acked, in delivery order
    handed: set[int] = field(default_factory=set)  # passed on by fetch, not settled yet
    active: bool = False  # it delivered to us since we registered: we are its active consumer
    giving: bool = False  # not ours: pass nothing more on, hand it over once ``handed`` is empty


class RabbitMQSubscription:
    def __init__(
        self,
        url: str,
        options: dict[str, str],
        *,
        name: str,
        group: str,
        channels: Sequence[str],
        partitions: int,
        dead_letter: str,
        delivery_limit: int,
        prefetch: int,
        replication: int,
        on_assigned: Callable[[int], None],
        on_down: Callable[[str], None] | None,
    ) -> None:
        self.joined = threading.Event()
        self._url, self._options, self._name = url, options, name
        self._group, self._channels = group, list(channels)
        self._partitions, self._dead_letter = partitions, dead_letter
        self._delivery_limit, self._prefetch, self._replication = delivery_limit, prefetch, replication
        self._on_assigned, self._on_down = on_assigned, on_down
        self._control: pika.BlockingConnection | None = None
        self._lanes = [_Lane(i, topology.queue_name(group, i)) for i in range(partitions)]
        self._buffer: deque[Received] = deque()
        self._slot = -1
        self._mine: frozenset[int] = frozenset()
        self._rebalance_at = 0.0
        self._broken: str | None = "not connected yet"
        self._down_reported = False
        self._closed = False
        with contextlib.suppress(BrokerUnavailable):
            self._open()  # now if the broker is there (so the queues exist before anyone publishes), else in fetch

    # -- joining ----------------------------------------------------------------------------------------------

    def _open(self) -> None:
        self._teardown()
        control = connect.open_connection(self._url, self._options, name=f"{self._name} control")
        try:
            ch = control.channel()
            topology.declare_group(
                ch,
                group=self._group,
                channels=self._channels,
                partitions=self._partitions,
                dead_letter=self._dead_letter,
                delivery_limit=self._delivery_limit,
                replication=self._replication,
            )
            self._control = control
            self._slot = self._claim_slot()
            for j in range(self._partitions):  # starting at our slot: members starting together spread
                self._register(self._lanes[(self._slot + j) % self._partitions])
        except connect.ERRORS as e:
            self._teardown()
            raise BrokerUnavailable(f"cannot join group {self._group}: {connect.describe(e)}") from e
        except BrokerUnavailable:
            self._teardown()
            raise
        self._broken, self._down_reported, self._rebalance_at = None, False, 0.0
        self.joined.set()

    def _claim_slot(self) -> int:
        assert self._control is not None
        for k in range(MAX_SLOTS):
            ch = self._control.channel()
            try:
                ch.queue_declare(topology.slot_name(self._group, k), exclusive=True, auto_delete=True)
                return k
            except pika.exceptions.ChannelClosedByBroker as e:
                if e.reply_code not in _HELD:
                    raise
        raise BrokerUnavailable(f"group {self._group} has {MAX_SLOTS} members already")

    def _register(self, lane: _Lane) -> None:
        lane.generation += 1
        lane.unacked.clear()
        lane.handed.clear()
        lane.active = lane.giving = False
        lane.connection = connect.open_connection(self._url, self._options, name=f"{self._name} {lane.queue}")
        lane.channel = lane.connection.channel()
        lane.channel.basic_qos(prefetch_count=self._prefetch)
        lane.channel.basic_consume(
            lane.queue, functools.partial(self._on_message, lane, lane.generation), auto_ack=False
        )

    def _on_message(
        self,
        lane: _Lane,
        generation: int,
        _ch: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        props: pika.BasicProperties,
        body: bytes,
    ) -> None:
        if generation != lane.generation:
            return  # from a connection we have dropped: the broker gives it to the next member
        tag = method.delivery_tag or 0
        lane.unacked.append(tag)
        lane.active = True
        self._buffer.append(
            Received(
                channel=method.exchange or "",
                partition=lane.index,
                offset=tag,
                key=(method.routing_key or "").encode("utf-8"),
                value=body,
                headers=binding.headers(props),
                deliveries=binding.deliveries(props, redelivered=bool(method.redelivered)),
                token=Token(lane.index, generation, tag),
            )
        )

    # -- rebalancing ------------------------------------------------------------------------------------------

    def _live_slots(self) -> list[int]:
        assert self._control is not None
        live = []
        for k in range(max(self._partitions, self._slot + 1) + 2):
            if k == self._slot:
                live.append(k)
                continue
            ch = self._control.channel()
            try:
                ch.queue_declare(topology.slot_name(self._group, k), passive=True)
                live.append(k)  # declared passively: someone holds it (and lets us see it)
                ch.close()
            except pika.exceptions.ChannelClosedByBroker as e:
                if e.reply_code in _HELD:
                    live.append(k)
                elif e.reply_code not in _FREE:
                    raise
        return live

    def _rebalance(self) -> None:
        live = self._live_slots()
        rank, n = live.index(self._slot), len(live)
        mine = frozenset(i for i in range(self._partitions) if i % n == rank)
        if mine != self._mine:
            self._mine = mine
            self._on_assigned(len(mine))
        for lane in self._lanes:
            lane.giving = lane.index not in mine and lane.active

    def _hand_over(self) -> None:
        for lane in self._lanes:
            if lane.giving and not lane.handed:
                self._flush(lane)
                connect.abort(lane.connection)
                stale = lane.index
                self._buffer = deque(r for r in self._buffer if _lane_of(r) != stale)
                self._register(lane)  # again, behind the member it is for

    def _flush(self, lane: _Lane) -> None:
        """One round trip on the lane's channel: the broker has had every ack we sent before it answers."""
        if lane.channel is not None and lane.channel.is_open:
            lane.channel.basic_qos(prefetch_count=self._prefetch)

    # -- the interface ----------------------------------------------------------------------------------------

    def fetch(self, max_messages: int, timeout: float) -> list[Received]:
        if self._closed:
            return []
        if self._broken is not None:
            self._open()  # BrokerUnavailable while the broker is away; the runtime retries
        try:
            now = time.monotonic()
            if now >= self._rebalance_at:
                self._rebalance()
                self._rebalance_at = now + REBALANCE_S
            self._hand_over()
            self._pump(0)
            deadline = now + timeout
            while not self._ready() and time.monotonic() < deadline:
                self._pump(SLICE_S)
        except connect.ERRORS as e:
            self._break(f"connection to RabbitMQ lost: {connect.describe(e)}")
            raise BrokerUnavailable(self._broken or "") from e
        return self._take(max_messages)

    def _pump(self, slice_s: float) -> None:
        if self._control is not None:
            self._control.process_data_events(0)  # heartbeats
        for lane in self._lanes:
            if lane.connection is not None:
                lane.connection.process_data_events(slice_s)
                if slice_s and self._ready():
                    return

    def _ready(self) -> bool:
        giving = {lane.index for lane in self._lanes if lane.giving}
        return any(_lane_of(r) not in giving for r in self._buffer)

    def _take(self, max_messages: int) -> list[Received]:
        giving = {lane.index for lane in self._lanes if lane.giving}
        out: list[Received] = []
        kept: deque[Received] = deque()
        while self._buffer:
            r = self._buffer.popleft()
            if len(out) < max_messages and _lane_of(r) not in giving:
                out.append(r)
                token = r.token
                assert isinstance(token, Token)
                self._lanes[token.lane].handed.add(token.tag)
            else:
                kept.append(r)
        self._buffer = kept
        return out

    def settle(self, messages: Sequence[Received]) -> None:
        tags: dict[int, set[int]] = {}
        for m in messages:
            token = m.token
            if isinstance(token, Token) and token.generation == self._lanes[token.lane].generation:
                tags.setdefault(token.lane, set()).add(token.tag)
        try:
            for index, settled in tags.items():
                self._ack(self._lanes[index], settled)
        except connect.ERRORS as e:
            # a lost ack is a redelivery, which the inbox absorbs; the next fetch reconnects
            self._break(f"connection to RabbitMQ lost while acking: {connect.describe(e)}")

    def _ack(self, lane: _Lane, settled: set[int]) -> None:
        """Ack ``settled``: one ``multiple`` ack for the run of oldest unacked tags they cover, single ones after."""
        assert lane.channel is not None
        lane.handed -= settled
        last = None
        while lane.unacked and lane.unacked[0] in settled:
            last = lane.unacked.popleft()
            settled.discard(last)
        if last is not None:
            lane.channel.basic_ack(last, multiple=True)
        for tag in sorted(settled):
            with contextlib.suppress(ValueError):
                lane.unacked.remove(tag)
                lane.channel.basic_ack(tag)

    def assigned(self) -> int:
        return len(self._mine)

    def _break(self, reason: str) -> None:
        self._broken = reason
        self._teardown()
        if not self._down_reported:
            self._down_reported = True
            if self._on_down is not None:
                self._on_down(reason)

    def _teardown(self) -> None:
        self.joined.clear()
        self._buffer.clear()
        for lane in self._lanes:
            connect.abort(lane.connection)
            lane.connection = lane.channel = None
            lane.generation += 1
        connect.close_quietly(self._control)
        self._control = None

    def close(self) -> None:
        """Leave the group: what was settled is acked (and confirmed by a round trip); the rest goes back to the
        queues, first in line for the member that takes them over."""
        if self._closed:
            return
        self._closed = True
        for lane in self._lanes:
            with contextlib.suppress(*connect.ERRORS):
                self._flush(lane)
        self._teardown()


def _lane_of(r: Received) -> int:
    token = r.token
    assert isinstance(token, Token)
    return token.lane
