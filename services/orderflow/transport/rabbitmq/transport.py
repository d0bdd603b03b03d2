"""The :class:`~orderflow.transport.Transport` on RabbitMQ: a factory of connections, each owned by one user.

It holds no connection of its own: the probe and ``ensure_channels`` open a short-lived one each time (they run
on the probe thread and at start-up), every subscription and publisher opens its own (see their modules).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Final

import pika.exceptions

from orderflow.events import catalog
from orderflow.transport import Publisher, Subscription
from orderflow.transport.rabbitmq import connect, topology
from orderflow.transport.rabbitmq.publisher import RabbitMQPublisher
from orderflow.transport.rabbitmq.subscription import RabbitMQSubscription

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S: Final = 3.0
DECLARE_TIMEOUT_S: Final = 15.0


class RabbitMQTransport:
    name = "rabbitmq"
    display = "RabbitMQ"

    def __init__(
        self,
        url: str,
        options: dict[str, str],
        *,
        client_id: str,
        service: str,
        prefix: str,
        partitions: int,
        replication: int,
        batch_size: int,
        on_all_brokers_down: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.options = options
        self.client_id = client_id
        self.prefix = prefix
        self.dead_letter = catalog.dlq_topic(prefix, service)
        self.partitions = partitions
        self.replication = replication
        self.delivery_limit = int(options.get("delivery_limit", topology.DEFAULT_DELIVERY_LIMIT))
        self.prefetch = int(options.get("prefetch", max(1, batch_size)))
        self.on_all_brokers_down = on_all_brokers_down
        self._serial = itertools.count(1)

    def probe(self) -> None:
        with connect.short_lived(self.url, self.options, name=f"{self.client_id} probe", timeout=PROBE_TIMEOUT_S) as c:
            c.channel().close()

    def ensure_channels(self, channels: Sequence[str], *, partitions: int, replication: int) -> None:
        name = f"{self.client_id} setup"
        with connect.short_lived(self.url, self.options, name=name, timeout=DECLARE_TIMEOUT_S) as connection:
            ch = connection.channel()
            for channel in sorted(set(channels)):
                topology.declare_channel(ch, channel, replication=replication)
            for group, consumed, dead_letter in self._consuming_groups(channels):
                try:
                    topology.declare_group(
                        ch,
                        group=group,
                        channels=consumed,
                        partitions=self.partitions,
                        dead_letter=dead_letter,
                        delivery_limit=self.delivery_limit,
                        replication=replication,
                    )
                except pika.exceptions.ChannelClosedByBroker as e:
                    # Declared before with other arguments (another delivery limit): that group's own are kept.
                    log.warning("queues of group %s kept as they are: %s", group, e)
                    ch = connection.channel()

    def _consuming_groups(self, channels: Sequence[str]) -> list[tuple[str, list[str], str]]:
        """The groups (default names, ``<prefix>-<service>``) that consume ``channels``, per the event catalog, each
        with every channel it consumes and its dead-letter channel.

        Declared with the channels, so that a group's queues exist before anything is published to it: RabbitMQ
        drops what a fanout exchange has no queue for, and on a first deployment the order service can publish
        before inventory has ever started. (A group renamed with ``ORDERFLOW_CONSUMER_GROUP`` is declared only by
        its own service, at its first start.)"""
        wanted = set(channels)
        consumers = sorted({c for e in catalog.CATALOG.values() if e.topic(self.prefix) in wanted for c in e.consumers})
        return [
            (
                f"{self.prefix}-{consumer}",
                sorted({e.topic(self.prefix) for e in catalog.consumed_by(consumer)}),
                catalog.dlq_topic(self.prefix, consumer),
            )
            for consumer in consumers
        ]

    def subscribe(self, channels: Sequence[str], *, group: str, on_assigned: Callable[[int], None]) -> Subscription:
        return RabbitMQSubscription(
            self.url,
            self.options,
            name=f"{self.client_id} {group} #{next(self._serial)}",
            group=group,
            channels=channels,
            partitions=self.partitions,
            dead_letter=self.dead_letter,
            delivery_limit=self.delivery_limit,
            prefetch=self.prefetch,
            replication=self.replication,
            on_assigned=on_assigned,
            on_down=self.on_all_brokers_down,
        )

    def publisher(self, role: str) -> Publisher:
        name = f"{self.client_id} {role} #{next(self._serial)}"
        return RabbitMQPublisher(self.url, self.options, name=name, on_down=self.on_all_brokers_down)

    def poll(self) -> None:
        """Nothing to serve: pika's blocking connections do their I/O in their owners' calls."""

    def close(self) -> None:
        """Nothing to close: each subscription and publisher closes its own connection."""
