"""Who this replica is across restarts, and so how it is a member of its consumer group and holds the outbox lease.

A process id changes on every restart; a replica identity does not. Kubernetes gives each Pod a name that survives
its container's restarts (the chart passes it in as ``ORDERFLOW_REPLICA_ID`` through the downward API); elsewhere the
operator of the process configures one. With an identity:

* the consumer is a **static member** of its group (``group.instance.id``): a replica that crashes and comes back
  within the session timeout gets its own partitions back at once, without a rebalance, instead of waiting for the
  group to time its old self out;
* the outbox relay's lease is held in that name, so a restarted replica takes its own lease back at once.

Without one the replica is a dynamic member and its lease holder is ``host:pid``, as before. The trade-off of static
membership: a replica that stops for good (scale-down, a Pod rescheduled under a new name) keeps its partitions
until its session times out, because a static member does not leave the group on close.
"""

from __future__ import annotations

import os
import socket
from typing import Final

from orderflow.runtime.config import KafkaConfig, Settings

# How long the group waits for a member that stopped heartbeating (a crash), with either membership.
SESSION_TIMEOUT_MS: Final = 10_000
HEARTBEAT_INTERVAL_MS: Final = 1_000


def lease_holder(settings: Settings) -> str:
    """The name the outbox lease is held in: the replica identity, else this process (``host:pid``)."""
    return settings.replica_id or f"{socket.gethostname()}:{os.getpid()}"


def consumer_config(settings: Settings, *, client_id: str) -> KafkaConfig:
    """The consumer's librdkafka settings: group, offsets, membership (static when the replica has an identity).

    With the KIP-848 protocol (``ORDERFLOW_KAFKA_GROUP_PROTOCOL=consumer``) the broker owns the session and the
    heartbeat interval, and librdkafka refuses them from the client, so they are set only for the classic protocol.
    """
    defaults: KafkaConfig = {"auto.offset.reset": "earliest", "client.id": client_id}
    if settings.kafka_options.get("group.protocol", "classic") == "classic":
        defaults |= {"session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS}
    if settings.replica_id:
        defaults["group.instance.id"] = settings.replica_id
    required: KafkaConfig = {"group.id": settings.group, "enable.auto.commit": False}
    return settings.kafka_config(defaults, **required)
