"""NATS JetStream as OrderFlow's broker (nats-py on Debian's ``nats-server -js``), behind the transport seam.

``ORDERFLOW_TRANSPORT=nats`` with ``ORDERFLOW_NATS_URL=nats://host:4222``; TLS, auth and JetStream tuning come
from the other ``ORDERFLOW_NATS_*`` variables, listed in :mod:`orderflow.transport.nats.options` (``tls_ca``,
``tls_cert``, ``tls_key``, ``tls_hostname``, ``user``, ``password``, ``token``, ``creds``, ``connect_timeout``,
``ack_wait``, ``max_ack_pending``, ``max_age``, ``duplicate_window``).

How the seam maps onto JetStream (one module each):

* ``naming`` — a channel is one stream (``<prefix>.orders`` -> ``<prefix>_orders``, subjects ``<channel>.>``, file
  storage, limits retention like a Kafka topic); a record goes to ``<channel>.<crc32(key) % partitions>``;
* ``binding`` — CloudEvents NATS protocol binding 1.0.3, binary content mode over NATS headers (1.0.2, the last
  released text, had structured mode only); structured messages are read too;
* ``publisher`` — JetStream publish with a PubAck per record, pipelined across keys, in order within a key;
  ``Nats-Msg-Id`` = the event id, so a republished event is stored once within the duplicate window;
* ``subscription`` — one durable pull consumer per (group, stream), explicit acks, ``ack_wait`` 10 s (kept in
  progress while a member works on a message, so it only bounds crash recovery), unlimited ``max_deliver`` (the
  runtime dead-letters past its limit from ``Received.deliveries`` = ``num_delivered``);
* ``backlog`` — ``read(url, options, group=..., channels=...)``: ``num_pending + num_ack_pending`` per channel;
* ``connection``, ``loop``, ``options`` — one nats-py connection on one private event loop thread per transport
  (the seam is synchronous and called from the runtime's threads); reconnects for ever by itself.

What holds (README: Transports):

* **at-least-once**: a message is acked only by ``settle`` (after the runtime's commit); one fetched and not settled
  comes back at once after a graceful ``close`` (which nak's it), and ``ack_wait`` after a crash (SIGKILL);
* **publication**: a record reported acknowledged is stored in a file-backed stream (PubAck); never lost;
* **per-order ordering with one replica**: one member pulls each stream alone, in stream order, and the publisher
  sends a key's next record only once the previous one is stored — so an order's events arrive in order (a
  redelivery after ``ack_wait`` can repeat an earlier one; the inbox drops it);
* **two or more replicas: scale-out, not per-order ordering.** The replicas share the group's durable consumer, so
  JetStream hands each message to whichever member's pull request is waiting: the work is shared, but two events
  of one order can be processed by two replicas at the same time, and so in either order. The services' state
  machines are order-insensitive (``tests/statemachines`` proves every interleaving reaches the same outcome), so
  outcomes are still right. Not done, and why: per-key order across replicas needs each subject partition to be
  pulled by one member at a time. ``max_ack_pending=1`` per partition would give it at one message per partition in
  flight (no batching: the runtime's throughput comes from batches); per-partition consumers claimed by a lease (a
  KV key with a TTL) cannot be fenced — a replica paused past its lease keeps acking what the new owner also
  got — so it would promise an order it does not always keep. JetStream's own answer, priority groups with a
  pinned client (nats-server 2.11, ADR-42), is not in Debian's 2.9; with it, one pinned consumer per partition
  would be the sound scheme.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from orderflow.errors import ConfigError
from orderflow.transport.nats import backlog, binding, options
from orderflow.transport.nats.transport import NatsTransport

if TYPE_CHECKING:
    from orderflow.runtime.config import Settings

__all__ = ["NatsTransport", "backlog", "binding", "make", "options"]


def make(
    settings: Settings, *, client_id: str, on_all_brokers_down: Callable[[str], None] | None = None
) -> NatsTransport:
    """A NATS transport for ``settings`` (``transport_url``, ``transport_options``, ``topic_partitions``).

    No server is needed to make one: it connects on first use and keeps reconnecting."""
    if not settings.transport_url:
        raise ConfigError("ORDERFLOW_NATS_URL is not set (`orderflow nats start` starts a local server)")
    return NatsTransport(
        settings.transport_url,
        options.parse(settings.transport_options),
        client_id=client_id,
        partitions=settings.topic_partitions,
        on_all_brokers_down=on_all_brokers_down,
    )
