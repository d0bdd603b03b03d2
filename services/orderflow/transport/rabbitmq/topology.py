"""The names and declarations of everything the transport puts on the broker, in one place.

::

    <channel>            fanout exchange, durable: one per channel (``<prefix>.orders``); publishers send here
      └─ <group>         x-consistent-hash exchange, durable, bound to every channel exchange the group reads
           └─ <group>.<i>   quorum queues, i < partitions, bound with weight 1; single active consumer,
                            delivery limit, dead-lettered (at-least-once) into the service's DLQ channel
    <prefix>.<svc>.dlq   a DLQ channel is a fanout exchange too, with one durable quorum queue of the same
                         name that keeps its letters (an exchange alone would drop them)
    <group>.member.<k>   exclusive queue: slot k of the group's membership, held while its member is connected

Every declaration is idempotent (same name, same arguments), so replicas racing each other is harmless. A queue
declared earlier with other arguments is refused by the broker (PRECONDITION_FAILED): the message names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from pika.adapters.blocking_connection import BlockingChannel

GROUP_EXCHANGE_TYPE: Final = "x-consistent-hash"
DLQ_SUFFIX: Final = ".dlq"
DEFAULT_DELIVERY_LIMIT: Final = 20


def queue_name(group: str, index: int) -> str:
    return f"{group}.{index}"


def slot_name(group: str, slot: int) -> str:
    return f"{group}.member.{slot}"


def is_dlq(channel: str) -> bool:
    return channel.endswith(DLQ_SUFFIX)


def _quorum(replication: int) -> dict[str, object]:
    args: dict[str, object] = {"x-queue-type": "quorum"}
    if replication > 1:
        args["x-quorum-initial-group-size"] = replication
    return args


def declare_channel(ch: BlockingChannel, channel: str, *, replication: int = 1) -> None:
    """The channel's exchange; for a DLQ channel also the queue that keeps its letters."""
    ch.exchange_declare(channel, "fanout", durable=True)
    if is_dlq(channel):
        ch.queue_declare(channel, durable=True, arguments=_quorum(replication))
        ch.queue_bind(channel, channel)


def group_queue_arguments(*, dead_letter: str, delivery_limit: int, replication: int) -> Mapping[str, object]:
    return {
        **_quorum(replication),
        "x-single-active-consumer": True,
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": dead_letter,
        # at-least-once dead-lettering (quorum queues, 3.10+) needs reject-publish overflow
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def declare_group(
    ch: BlockingChannel,
    *,
    group: str,
    channels: list[str],
    partitions: int,
    dead_letter: str,
    delivery_limit: int,
    replication: int = 1,
) -> list[str]:
    """The group's hash exchange bound to ``channels`` and its ``partitions`` queues; their names, in order."""
    declare_channel(ch, dead_letter, replication=replication)
    ch.exchange_declare(group, GROUP_EXCHANGE_TYPE, durable=True)
    for channel in channels:
        declare_channel(ch, channel, replication=replication)
        ch.exchange_bind(destination=group, source=channel)
    arguments = dict(
        group_queue_arguments(dead_letter=dead_letter, delivery_limit=delivery_limit, replication=replication)
    )
    names = [queue_name(group, i) for i in range(partitions)]
    for name in names:
        ch.queue_declare(name, durable=True, arguments=arguments)
        ch.queue_bind(name, group, routing_key="1")  # the weight of this queue on the hash ring
    return names
