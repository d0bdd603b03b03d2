"""The transport seam: what the runtime needs from a broker, and nothing of any broker's client.

The runtime core (consumer loop, apply, outbox relay, inbox, dead-letter decisions, service assembly) talks to a
:class:`Transport` only. Each broker is one package below this one, with the same modules over this interface:

* ``orderflow.transport.kafka`` — Apache Kafka (confluent-kafka), the default;
* ``orderflow.transport.nats`` — NATS JetStream (nats-py);
* ``orderflow.transport.rabbitmq`` — RabbitMQ (pika);
* ``orderflow.transport.memory`` — in this process, for the contract and state-machine tests.

What crosses the seam is a :class:`Record` going out and a :class:`Received` coming in, both in one neutral form:
a CloudEvent in binary content mode whose attributes are headers named ``ce_<attribute>`` (plus ``content-type``)
and whose data is the value; the key is the order id. That is the form the outbox stores and the codec reads. Each
transport's ``binding`` maps it to and from its own protocol binding on the wire (Kafka: the same names; NATS:
``ce-`` headers; AMQP: ``ce-`` headers with ``content_type`` as the property), so every broker carries every
attribute. A channel is a catalog topic name (``<prefix>.orders``): a Kafka topic, a JetStream stream, a RabbitMQ
exchange.

Guarantees every transport gives the runtime: at-least-once delivery (redelivery until settled), publication that
is known to be acknowledged before the outbox deletes a row, and a consumer group per service (``group``): each
event reaches every group once-or-more. Per-order ordering is the transport's to say (README: Transports).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from orderflow.runtime.config import Settings

NAMES: Final = ("kafka", "nats", "rabbitmq", "memory")

Headers = list[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class Record:
    """One event going out, ready to publish: the outbox's row, the dead-letter publisher's letter."""

    channel: str
    key: bytes
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def topic(self) -> str:  # the name the Kafka-era code and tests use
        return self.channel


@dataclass(frozen=True, slots=True)
class Received:
    """One message a subscription handed over: where from, what, and the transport's handle to settle it.

    ``partition``/``offset`` say where it came from for logs and dead letters (Kafka: partition and offset;
    JetStream: subject partition and stream sequence; RabbitMQ: queue shard and delivery tag). ``deliveries`` counts
    this message's deliveries to the group when the broker knows it (1 = first; Kafka does not say: always 1).
    """

    channel: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    deliveries: int = 1
    token: object = field(default=None, compare=False, repr=False)


class Subscription(Protocol):
    """A service's membership of its group on its channels; used by one thread, the consumer loop's."""

    #: set once the broker has taken this member in (its share may be empty: more replicas than partitions)
    joined: threading.Event

    def fetch(self, max_messages: int, timeout: float) -> list[Received]:
        """What has already arrived, up to ``max_messages``; if nothing has, wait up to ``timeout`` s for the first
        (and take what came with it). ``[]`` on timeout. ``BrokerUnavailable`` only for what will not pass."""
        ...

    def settle(self, messages: Sequence[Received]) -> None:
        """``messages`` are applied and durable: never deliver them to this group again (commit offsets, ack).

        May be asynchronous: a lost settle only means a redelivery, which the inbox absorbs."""
        ...

    def assigned(self) -> int:
        """How many partitions/queues this member consumes now (a metric)."""
        ...

    def close(self) -> None:
        """Settle what is outstanding synchronously and leave the group."""
        ...


class Publisher(Protocol):
    """Publishes records and knows when the broker has them; used by one thread at a time."""

    def publish(self, records: Sequence[Record], *, timeout: float = 30.0) -> tuple[list[int], dict[int, str]]:
        """Publish ``records`` in order; return the indexes the broker acknowledged, and an error per index it
        refused. Raises ``BrokerUnavailable`` when it cannot even send. Records of one key keep their order."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    """One service's connection to its broker."""

    name: str
    #: what /readyz and logs call the broker ("Kafka", "NATS", "RabbitMQ")
    display: str

    def probe(self) -> None:
        """Ask the broker something; ``BrokerUnavailable`` unless it answers."""
        ...

    def ensure_channels(self, channels: Sequence[str], *, partitions: int, replication: int) -> None:
        """Create each channel that does not exist yet (topic, stream, exchange); ``BrokerUnavailable`` if not."""
        ...

    def subscribe(self, channels: Sequence[str], *, group: str, on_assigned: Callable[[int], None]) -> Subscription:
        """Join ``group`` on ``channels`` (creating the group's consumers/queues where the broker needs them).

        ``on_assigned(count)`` is called from ``fetch`` whenever this member's share changes."""
        ...

    def publisher(self, role: str) -> Publisher:
        """A publisher for ``role`` ("relay", "dlq"): its own client or channel, ``acks=all`` or confirms."""
        ...

    def poll(self) -> None:
        """Serve background callbacks (logs, errors) of clients that are rarely used; cheap, never blocks."""
        ...

    def close(self) -> None: ...


Factory = Callable[..., Transport]


def connect(
    settings: Settings, *, client_id: str, on_all_brokers_down: Callable[[str], None] | None = None
) -> Transport:
    """The transport ``settings.transport`` names, connected lazily (no broker is needed to make one).

    ``on_all_brokers_down(reason)`` is called (from a client's poll, so it must not block) when the transport sees
    its broker go away, so that readiness probes at once."""
    module = importlib.import_module(f"orderflow.transport.{settings.transport}")
    make: Factory = module.make
    return make(settings, client_id=client_id, on_all_brokers_down=on_all_brokers_down)


def header(headers: Headers | Sequence[tuple[str, bytes]], name: str) -> bytes | None:
    """The first value of header ``name`` (neutral form), or None."""
    for k, v in headers:
        if k == name:
            return v
    return None


def records_by_key(records: Sequence[Record]) -> Mapping[bytes, list[int]]:
    """Indexes of ``records`` per key, in order: what a transport must keep in order."""
    out: dict[bytes, list[int]] = {}
    for i, r in enumerate(records):
        out.setdefault(r.key, []).append(i)
    return out
