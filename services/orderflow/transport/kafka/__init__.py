"""Apache Kafka (confluent-kafka, librdkafka): the default transport, and the one the others are measured against.

* A channel is a topic with ``ORDERFLOW_TOPIC_PARTITIONS`` partitions; the key (the order id) picks the partition,
  so the events of one order keep their order whatever the number of replicas (a partition has one consumer in a
  group at a time).
* A group is a Kafka consumer group; ``settle`` commits the next offsets asynchronously, at most every
  ``COMMIT_INTERVAL_S`` (a lost or late commit is a redelivery the inbox absorbs), ``close`` commits synchronously.
  With a replica identity the member is static (``group.instance.id``, see ``orderflow.runtime.identity``).
* Publishing is idempotent with ``acks=all``; ``publish`` returns once every record has its delivery report.
* Every librdkafka setting passes through as ``ORDERFLOW_KAFKA_<NAME>`` (``Settings.kafka_config``); the clients' own
  logs and errors go through the service's JSON log (:mod:`.clientlog`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from orderflow.errors import BrokerUnavailable
from orderflow.runtime.config import KafkaConfig, Settings
from orderflow.transport import Headers, Publisher, Received, Record, Subscription, Transport
from orderflow.transport.kafka import clientlog as kafkalog
from orderflow.transport.kafka import topics

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S: Final = 3.0
# How long the group waits for a member that stopped heartbeating (a crash), with either membership.
SESSION_TIMEOUT_MS: Final = 10_000
HEARTBEAT_INTERVAL_MS: Final = 1_000
# How often settled offsets go to the broker, at most. One commit per batch cost the broker more than the events
# themselves when orders trickle in (each batch one event, three per order per service); a crash redelivers at most
# this much more, which the inbox absorbs, and the lag a scaler reads is at most this much (plus a fetch) staler.
COMMIT_INTERVAL_S: Final = 0.2


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


def producer_config(settings: Settings) -> KafkaConfig:
    """The relay's producer: idempotent with ``acks=all`` whatever the user sets, batching tunable.

    ``linger.ms`` is 0: the relay hands librdkafka a whole committed batch and then waits for its delivery, so a
    linger only delays the batch; under load the records queued behind a request in flight still go together.
    """
    required: KafkaConfig = {"enable.idempotence": True, "acks": "all"}
    return settings.kafka_config({"linger.ms": 0, "message.timeout.ms": 15000}, **required)


def headers_of(m: Message) -> Headers:
    """A consumed message's headers, ``[]`` when it has none."""
    # cast: librdkafka hands a consumed message's headers back as a list of (name, bytes-or-None) pairs; the
    # stub's wider type (a dict, or str values) is what ``produce``/``set_headers`` accept, never what is read.
    return cast(Headers, m.headers() or [])


def received(m: Message) -> Received:
    """A consumed message as the seam hands it on (Kafka's wire form is the neutral form)."""
    topic, partition, offset = m.topic(), m.partition(), m.offset()
    # Kafka's contract: a message ``consume()`` returns without an error always has a position.
    assert topic is not None and partition is not None and offset is not None, "a consumed message has a position"
    return Received(topic, partition, offset, m.key(), m.value(), headers_of(m), token=m)


class KafkaSubscription:
    """A consumer in the service's group; ``fetch`` takes what librdkafka has prefetched, else waits for one."""

    def __init__(self, consumer: Consumer, on_assigned: Callable[[int], None]) -> None:
        self.consumer = consumer
        self.on_assigned = on_assigned
        self.joined = threading.Event()
        self._assigned: set[tuple[str, int]] = set()
        # The last offset settled per partition, committed once more, synchronously, on close.
        self._settled: dict[tuple[str, int], int] = {}
        # Settled but not yet committed (``COMMIT_INTERVAL_S``), and when the last commit went out.
        self._pending: dict[tuple[str, int], int] = {}
        self._committed_at = 0.0
        self._closed = False

    def on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Called by librdkafka (inside ``consume``) when the group hands this member its partitions."""
        self._assigned = {(tp.topic, tp.partition) for tp in partitions if tp.topic is not None}
        self.joined.set()
        log.info("assigned %d partition(s): %s", len(self._assigned), sorted(self._assigned))
        self.on_assigned(len(self._assigned))

    def on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._assigned -= revoked
        # What was settled goes with them, so that their next owner does not re-apply it; asynchronously, since the
        # broker may be the reason for the rebalance, and the commit reaches the coordinator before this member's
        # rejoin does. Then forget them: another member owns them, and an older offset must never go over theirs.
        handed = {where: self._pending.pop(where) for where in revoked if where in self._pending}
        if handed:
            self._commit(handed, asynchronous=True)
        for where in revoked:
            self._settled.pop(where, None)
        log.info("revoked %d partition(s)", len(partitions))
        self.on_assigned(len(self._assigned))

    def assigned(self) -> int:
        return len(self._assigned)

    def fetch(self, max_messages: int, timeout: float) -> list[Received]:
        """What has already been fetched, up to a batch; else wait (up to ``timeout``) for the first message.

        ``consume(n, timeout)`` alone would wait the whole timeout for ``n`` messages whenever fewer are queued,
        adding that timeout to every hop of the saga at low load. Taking what is there keeps latency low when idle
        and batches full under load, when librdkafka's prefetch queue is never empty. Offsets settled since the last
        commit go out here once ``COMMIT_INTERVAL_S`` has passed, so the last ones of a quiet spell are not held.
        """
        self._commit_due()
        messages = self.consumer.consume(num_messages=max_messages, timeout=0)
        if not messages:
            messages = self.consumer.consume(num_messages=1, timeout=timeout)
            if messages and max_messages > 1:
                messages += self.consumer.consume(num_messages=max_messages - 1, timeout=0)
        out: list[Received] = []
        for m in messages:
            err = m.error()
            if err is not None:
                if err.fatal():  # not to be retried (e.g. a fenced static member): the service stops
                    raise KafkaException(err)
                log.warning("consumer error: %s", err)
                continue
            out.append(received(m))
        return out

    def settle(self, messages: Sequence[Received]) -> None:
        """Commit the offsets after ``messages`` asynchronously, with those of the batches before it, once
        ``COMMIT_INTERVAL_S`` has passed since the last commit: the state is already durable, so the consumer
        need not wait a broker round trip per batch, nor send one per batch."""
        offsets: dict[tuple[str, int], int] = {}
        for r in messages:
            where = (r.channel, r.partition)
            offsets[where] = max(offsets.get(where, -1), r.offset)
        if offsets:
            self._settled.update(offsets)
            self._pending.update(offsets)
            self._commit_due()

    def _commit_due(self) -> None:
        now = time.monotonic()
        if self._pending and now - self._committed_at >= COMMIT_INTERVAL_S:
            pending, self._pending = self._pending, {}
            self._committed_at = now
            self._commit(pending, asynchronous=True)

    def _commit(self, offsets: dict[tuple[str, int], int], *, asynchronous: bool) -> None:
        positions = [TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()]
        try:
            # Two calls, not one with ``asynchronous=asynchronous``: the client's overloads type each on its literal.
            if asynchronous:
                self.consumer.commit(offsets=positions, asynchronous=True)
            else:
                self.consumer.commit(offsets=positions, asynchronous=False)
        except KafkaException as e:
            # The state is committed; the worst case is a redelivery that the inbox absorbs.
            log.warning("offset commit failed (the batch will be redelivered and skipped): %s", e)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._settled:
            self._commit(self._settled, asynchronous=False)
        self.consumer.close()


class KafkaPublisher:
    """An idempotent ``acks=all`` producer; ``publish`` waits for every record's delivery report."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer

    def publish(self, records: Sequence[Record], *, timeout: float = 30.0) -> tuple[list[int], dict[int, str]]:
        errors: dict[int, str] = {}
        delivered: list[int] = []

        def on_delivery(i: int) -> Callable[[KafkaError | None, Any], None]:
            def callback(err: KafkaError | None, _msg: Any) -> None:
                if err is None:
                    delivered.append(i)
                else:
                    errors[i] = err.str()

            return callback

        for i, record in enumerate(records):
            while True:
                try:
                    self.producer.produce(
                        record.channel,
                        value=record.value,
                        key=record.key,
                        headers=list(record.headers),
                        on_delivery=on_delivery(i),
                    )
                    break
                except BufferError:
                    self.producer.poll(0.05)
                except KafkaException as e:
                    raise BrokerUnavailable(f"cannot produce to {record.channel}: {e}") from e
        self.producer.flush(timeout)
        return delivered, errors

    def poll(self) -> None:
        self.producer.poll(0)

    def close(self) -> None:
        self.producer.flush(10)


class KafkaTransport:
    name = "kafka"
    display = "Kafka"

    def __init__(
        self, settings: Settings, *, client_id: str, on_all_brokers_down: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.log = kafkalog.KafkaLog(level=settings.kafka_log_level, on_all_brokers_down=on_all_brokers_down)
        logging.getLogger(kafkalog.log.name).setLevel(settings.kafka_log_level)
        self.hooks = self.log.config()
        self.admin = AdminClient({**settings.kafka_config(**{"client.id": f"{client_id}-admin"}), **self.hooks})
        self._publishers: list[KafkaPublisher] = []
        self._idle: list[KafkaPublisher] = []  # rarely used (dead letters): polled by ``poll``

    def probe(self) -> None:
        """One metadata request: the broker is up when it answers, else ``BrokerUnavailable``."""
        try:
            metadata = self.admin.list_topics(timeout=PROBE_TIMEOUT_S)
        except KafkaException as e:
            raise BrokerUnavailable(f"no answer to a metadata request: {e.args[0].str() if e.args else e}") from e
        if not metadata.brokers:
            raise BrokerUnavailable("the cluster lists no brokers")

    def ensure_channels(self, channels: Sequence[str], *, partitions: int, replication: int) -> None:
        topics.ensure(self.admin, channels, partitions=partitions, replication=replication, timeout=10)

    def subscribe(self, channels: Sequence[str], *, group: str, on_assigned: Callable[[int], None]) -> Subscription:
        settings = self.settings if group == self.settings.group else _with_group(self.settings, group)
        consumer = Consumer({**consumer_config(settings, client_id=self.client_id), **self.hooks})
        subscription = KafkaSubscription(consumer, on_assigned)
        consumer.subscribe(list(channels), on_assign=subscription.on_assign, on_revoke=subscription.on_revoke)
        return subscription

    def publisher(self, role: str) -> Publisher:
        if role == "relay":
            config = producer_config(self.settings)
        else:
            required: KafkaConfig = {"acks": "all", "enable.idempotence": True}
            config = self.settings.kafka_config(**required)
        publisher = KafkaPublisher(Producer({**config, "client.id": f"{self.client_id}-{role}", **self.hooks}))
        self._publishers.append(publisher)
        if role != "relay":  # the relay's own thread serves its producer's callbacks, inside ``publish``
            self._idle.append(publisher)
        return publisher

    def poll(self) -> None:
        """Serve the admin client's and the rarely used publishers' callbacks (the dead-letter producer would
        otherwise queue its logs and errors while the broker is down)."""
        self.admin.poll(0)
        for publisher in self._idle:
            publisher.poll()

    def close(self) -> None:
        for publisher in self._publishers:
            publisher.close()


def _with_group(settings: Settings, group: str) -> Settings:
    return dataclasses.replace(settings, consumer_group=group)


def make(
    settings: Settings, *, client_id: str, on_all_brokers_down: Callable[[str], None] | None = None
) -> Transport:
    return KafkaTransport(settings, client_id=client_id, on_all_brokers_down=on_all_brokers_down)
