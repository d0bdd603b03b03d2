"""RabbitMQ (3.10+, AMQP 0-9-1 through pika) behind the transport seam.

Topology (``topology``): a durable fanout exchange per channel; per consuming group a consistent-hash exchange
(plugin ``rabbitmq_consistent_hash_exchange``, bundled) bound to each channel it reads, and
``settings.topic_partitions`` quorum queues ``<group>.<i>`` bound to it with weight 1. The routing key is the
order id, so all of one order's events, from every channel, go to one queue. Every group gets every event
(fan-out across services); the replicas of one group share the queues (``subscription``).

Guarantees, side by side with Kafka's:

* ordering — per order, with any number of replicas: one queue per order, one active consumer per queue
  (``x-single-active-consumer``), queues handed between replicas so that what the giver held is delivered
  first (``subscription`` says how, and what a hand-over costs). Events of one order on *different* channels
  keep their order too (one queue), which Kafka does not promise.
* at-least-once — manual acks after the runtime's commit (``settle``; ``multiple`` where every older delivery
  of that queue is settled too); anything unacked goes back when a connection closes or dies, and
  ``Received.deliveries`` is the quorum queue's ``x-delivery-count`` + 1 (or 2 for ``redelivered``).
* dead letters — the runtime dead-letters poison itself (to the DLQ channel, with its reasons) and past its own
  delivery limit; the broker's ``x-delivery-limit`` (default 20, above the runtime's) is the backstop for a
  message that kills its consumer every time: the queue dead-letters it (``at-least-once`` strategy) into the
  service's DLQ channel ``<prefix>.<service>.dlq``, whose own queue of that name keeps the letters (with the
  broker's ``x-death`` and ``x-first-death-reason: delivery_limit`` headers instead of ``orderflow.dlq.*``).
* publishing — publisher confirms, mandatory, persistent; per-record results (``publisher``).
* a group only receives what is published after its queues exist: they are declared by its first
  ``subscribe``, and by every ``ensure_channels`` of a producer for the groups the event catalog says consume
  those channels (default group names), and are durable from then on: a service that is down loses nothing, and
  neither does one never started yet (unless its group was renamed with ``ORDERFLOW_CONSUMER_GROUP``).
* backlog — ready + unacknowledged of the group's queues, from the management API (``backlog``).
* a broker restart: ``fetch``/``publish`` raise ``BrokerUnavailable`` and call ``on_all_brokers_down`` while it
  is away and reconnect by themselves when it is back (queues are durable, messages persistent).

Settings (``ORDERFLOW_RABBITMQ_*``, in ``settings.transport_options`` lower-cased):

* ``ORDERFLOW_RABBITMQ_URL`` — ``amqp://user:password@host:5672/vhost`` (``amqps://`` for TLS);
* ``TLS_CA`` — CA bundle that verifies the broker (implies TLS); ``TLS_CERT``/``TLS_KEY`` — client certificate
  and key (mutual TLS); ``TLS_SERVER_NAME`` — the name to verify, if not the URL's host;
* ``DELIVERY_LIMIT`` — the queues' ``x-delivery-limit`` (default 20; fixed when a queue is first declared);
* ``PREFETCH`` — unacknowledged messages per queue and member (default: the batch size);
* ``HEARTBEAT`` — AMQP heartbeat in seconds (default 30);
* ``MANAGEMENT_URL`` — the management API, for the backlog (default: the URL's host, port 15672).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from orderflow.transport.rabbitmq.transport import RabbitMQTransport

if TYPE_CHECKING:
    from orderflow.runtime.config import Settings

__all__ = ["RabbitMQTransport", "make"]


def make(
    settings: Settings, *, client_id: str, on_all_brokers_down: Callable[[str], None] | None = None
) -> RabbitMQTransport:
    """The RabbitMQ transport for ``settings``; connects lazily (no broker is needed to make one)."""
    return RabbitMQTransport(
        settings.transport_url,
        dict(settings.transport_options),
        client_id=client_id,
        service=settings.service,
        prefix=settings.topic_prefix,
        partitions=settings.topic_partitions,
        replication=settings.topic_replication,
        batch_size=settings.batch_size,
        on_all_brokers_down=on_all_brokers_down,
    )
