"""Who this replica is across restarts, and so how it is a member of its consumer group and holds the outbox lease.

A process id changes on every restart; a replica identity does not. Kubernetes gives each Pod a name that survives
its container's restarts (the chart passes it in as ``ORDERFLOW_REPLICA_ID`` through the downward API); elsewhere the
operator of the process configures one. With an identity:

* on Kafka the consumer is a **static member** of its group (``group.instance.id``, set by
  ``orderflow.transport.kafka.consumer_config``): a replica that crashes and comes back within the session timeout
  gets its own partitions back at once, without a rebalance, instead of waiting for the group to time its old self out;
* the outbox relay's lease is held in that name, so a restarted replica takes its own lease back at once.

Without one the replica is a dynamic member and its lease holder is ``host:pid``, as before. The trade-off of static
membership: a replica that stops for good (scale-down, a Pod rescheduled under a new name) keeps its partitions
until its session times out, because a static member does not leave the group on close.
"""

from __future__ import annotations

import os
import socket

from orderflow.runtime.config import Settings


def lease_holder(settings: Settings) -> str:
    """The name the outbox lease is held in: the replica identity, else this process (``host:pid``)."""
    return settings.replica_id or f"{socket.gethostname()}:{os.getpid()}"
