"""An in-process broker: the transport the contract and state-machine tests use, with Kafka's semantics in miniature.

Not for production, and not selectable by ``ORDERFLOW_TRANSPORT``: it lives in one process. It keeps the
guarantees the runtime relies on, so the code that runs on it is the code that runs on a real broker:

* a channel has ``partitions`` logs; the key picks the partition (crc32), so one order's events keep their order;
* a group has one committed position per partition; its members share the partitions (assigned again whenever one
  joins or leaves); a member that closes without settling leaves its messages to be delivered again from the
  committed position, with ``deliveries`` counted per message;
* ``publish`` appends at once and acknowledges everything (``refuse`` makes it refuse, to test the failure path).

Brokers are named (``Settings.transport_url``, default ``"default"``) and found with :func:`broker`; every
``make`` with the same name shares one.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from orderflow.errors import BrokerUnavailable
from orderflow.runtime.config import Settings
from orderflow.transport import Publisher, Received, Record, Subscription, Transport


@dataclass
class _Group:
    committed: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset to deliver, per partition
    deliveries: dict[tuple[str, int, int], int] = field(default_factory=lambda: defaultdict(int))
    members: list[MemorySubscription] = field(default_factory=list)


class Broker:
    """Channels of partitioned logs, and groups with committed positions; thread-safe."""

    def __init__(self, partitions: int = 3) -> None:
        self.partitions = partitions
        self.logs: dict[str, list[list[Record]]] = {}
        self.groups: dict[str, _Group] = {}
        self.down: str | None = None  # the reason, while "the broker is down"
        self._changed = threading.Condition()

    def ensure(self, channels: Sequence[str], partitions: int | None = None) -> None:
        with self._changed:
            for channel in channels:
                self.logs.setdefault(channel, [[] for _ in range(partitions or self.partitions)])

    def append(self, record: Record) -> tuple[int, int]:
        with self._changed:
            if record.channel not in self.logs:
                raise BrokerUnavailable(f"no such channel: {record.channel}")
            partitions = self.logs[record.channel]
            partition = zlib.crc32(record.key) % len(partitions)
            partitions[partition].append(record)
            self._changed.notify_all()
            return partition, len(partitions[partition]) - 1

    def records(self, channel: str) -> list[Record]:
        """Everything published on ``channel``, partition by partition."""
        with self._changed:
            return [r for log in self.logs.get(channel, []) for r in log]

    def backlog(self, group: str, channels: Sequence[str]) -> dict[str, int]:
        """Messages on ``channels`` that ``group`` has not settled, per channel."""
        with self._changed:
            g = self.groups.get(group, _Group())
            return {
                c: sum(len(log) - g.committed.get((c, p), 0) for p, log in enumerate(self.logs.get(c, [])))
                for c in channels
            }

    # -- membership -----------------------------------------------------------------------------------------

    def join(self, member: MemorySubscription) -> None:
        with self._changed:
            g = self.groups.setdefault(member.group, _Group())
            g.members.append(member)
            self._rebalance(g)

    def leave(self, member: MemorySubscription) -> None:
        with self._changed:
            g = self.groups[member.group]
            if member in g.members:
                g.members.remove(member)
                self._rebalance(g)

    def _rebalance(self, g: _Group) -> None:
        every = sorted({(c, p) for m in g.members for c in m.channels for p in range(len(self.logs.get(c, [])))})
        shares: dict[int, set[tuple[str, int]]] = defaultdict(set)
        for i, where in enumerate(every):
            candidates = [n for n, m in enumerate(g.members) if where[0] in m.channels]
            shares[candidates[i % len(candidates)]].add(where)
        for n, m in enumerate(g.members):
            m.reassign(shares[n], dict(g.committed))

    def fetch(self, member: MemorySubscription, max_messages: int, timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self.down is not None:
                    raise BrokerUnavailable(self.down)
                out = self._take(member, max_messages)
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    return out
                self._changed.wait(remaining)

    def _take(self, member: MemorySubscription, max_messages: int) -> list[Received]:
        g = self.groups[member.group]
        out: list[Received] = []
        for where in sorted(member.share):
            channel, partition = where
            log = self.logs[channel][partition]
            while member.position[where] < len(log) and len(out) < max_messages:
                offset = member.position[where]
                record = log[offset]
                g.deliveries[(channel, partition, offset)] += 1
                count = g.deliveries[(channel, partition, offset)]
                out.append(
                    Received(channel, partition, offset, record.key, record.value, list(record.headers), count)
                )
                member.position[where] = offset + 1
        return out

    def settle(self, member: MemorySubscription, messages: Sequence[Received]) -> None:
        with self._changed:
            g = self.groups[member.group]
            for m in messages:
                where = (m.channel, m.partition)
                if where in member.share:
                    g.committed[where] = max(g.committed.get(where, 0), m.offset + 1)


class MemorySubscription:
    def __init__(self, broker: Broker, channels: Sequence[str], group: str, on_assigned: Callable[[int], None]):
        self.broker = broker
        self.channels = set(channels)
        self.group = group
        self.on_assigned = on_assigned
        self.joined = threading.Event()
        self.share: set[tuple[str, int]] = set()
        self.position: dict[tuple[str, int], int] = {}
        self._closed = False

    def reassign(self, share: set[tuple[str, int]], committed: dict[tuple[str, int], int]) -> None:
        """Called by the broker, under its lock: this member's partitions, each from its committed position."""
        self.share = share
        self.position = {where: committed.get(where, 0) for where in share}
        self.joined.set()
        self.on_assigned(len(share))

    def fetch(self, max_messages: int, timeout: float) -> list[Received]:
        return self.broker.fetch(self, max_messages, timeout)

    def settle(self, messages: Sequence[Received]) -> None:
        self.broker.settle(self, messages)

    def assigned(self) -> int:
        return len(self.share)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.broker.leave(self)


class MemoryPublisher:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.refuse: str | None = None  # set to refuse every record with this error

    def publish(self, records: Sequence[Record], *, timeout: float = 30.0) -> tuple[list[int], dict[int, str]]:
        if self.broker.down is not None:
            raise BrokerUnavailable(self.broker.down)
        if self.refuse is not None:
            return [], {i: self.refuse for i in range(len(records))}
        for record in records:
            self.broker.append(record)
        return list(range(len(records))), {}

    def close(self) -> None:
        pass


class MemoryTransport:
    name = "memory"
    display = "the in-memory broker"

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def probe(self) -> None:
        if self.broker.down is not None:
            raise BrokerUnavailable(self.broker.down)

    def ensure_channels(self, channels: Sequence[str], *, partitions: int, replication: int) -> None:
        self.probe()
        self.broker.ensure(channels, partitions)

    def subscribe(self, channels: Sequence[str], *, group: str, on_assigned: Callable[[int], None]) -> Subscription:
        member = MemorySubscription(self.broker, channels, group, on_assigned)
        self.broker.join(member)
        return member

    def publisher(self, role: str) -> Publisher:
        return MemoryPublisher(self.broker)

    def poll(self) -> None:
        pass

    def close(self) -> None:
        pass


_BROKERS: dict[str, Broker] = {}
_LOCK = threading.Lock()


def broker(name: str = "default") -> Broker:
    """The in-process broker called ``name`` (made on first use)."""
    with _LOCK:
        return _BROKERS.setdefault(name, Broker())


def make(
    settings: Settings, *, client_id: str, on_all_brokers_down: Callable[[str], None] | None = None
) -> Transport:
    return MemoryTransport(broker(settings.transport_url or "default"))
