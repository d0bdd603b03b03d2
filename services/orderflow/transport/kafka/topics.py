"""Creating the topics a service needs, with the partitions the deployment asks for, before it subscribes.

The broker used in development and tests has topic auto-creation off on purpose: a missing topic is a deployment
error that should be visible, not papered over with a default of one partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from orderflow.errors import BrokerUnavailable

log = logging.getLogger(__name__)


def ensure(
    admin: AdminClient, topics: Iterable[str], *, partitions: int, replication: int, timeout: float = 30
) -> None:
    """Create each of ``topics`` that does not exist yet; existing ones are left as they are."""
    wanted = sorted(set(topics))
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as e:
        raise BrokerUnavailable(f"cannot list topics: {e}") from e
    missing = [t for t in wanted if t not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=replication) for t in missing],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for topic, future in futures.items():
            try:
                future.result()
                log.info("created topic %s (%d partitions)", topic, partitions, extra={"topic": topic})
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BrokerUnavailable(f"cannot create topic {topic}: {e}") from e
    wait_visible(admin, wanted, timeout=timeout)


def wait_visible(admin: AdminClient, topics: Iterable[str], *, timeout: float = 30) -> None:
    """Wait until the cluster metadata lists every topic with a leader for each partition."""
    wanted = set(topics)
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=timeout)
        ready = {
            name
            for name, t in metadata.topics.items()
            if name in wanted and t.error is None and t.partitions and all(p.leader >= 0 for p in t.partitions.values())
        }
        if ready == wanted:
            return
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"topics not ready after {timeout}s: {sorted(wanted - ready)}")
        time.sleep(0.05)  # polling the broker's metadata until a deadline, not synchronising on time
