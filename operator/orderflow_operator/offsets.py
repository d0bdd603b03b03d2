"""Reading lag and offsets from Kafka with confluent-kafka's AdminClient.

One call per tick reads everything a flow needs: partition counts (DescribeTopics), end offsets (ListOffsets
latest), each consumer group's committed offsets (OffsetFetch) and, for partitions a group has never
committed, the start offsets (ListOffsets earliest: a consumer that starts there with
``auto.offset.reset=earliest`` has all of it ahead of it). These calls block, so the reconciler runs them in
a worker thread; each has a request timeout, so a broker that went away costs one timeout per tick, not a
hung loop.

Errors are sorted into the operator's own: a missing topic belongs to the stages that read it (the others go
on being scaled), anything that means the cluster did not answer is :class:`errors.BrokerUnavailable`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewPartitions, OffsetSpec

from orderflow_operator import errors

__all__ = [
    "GroupQuery",
    "StageOffsets",
    "connect",
    "grow_partitions",
    "read",
]

logger = logging.getLogger(__name__)

_TOPIC_MISSING = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.UNKNOWN_TOPIC_ID}
_DENIED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTHENTICATION,
}
#: librdkafka's OFFSET_INVALID: the group has no committed offset for the partition.
_NO_OFFSET = -1001


@dataclasses.dataclass(frozen=True)
class GroupQuery:
    """What to read for one stage: its consumer group over its topics."""

    stage: str
    group: str
    topics: tuple[str, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageOffsets:
    """One stage's view of Kafka at one instant.

    ``end_total`` and ``committed_total`` are sums over the stage's partitions, so their growth between two
    reads is the stage's arrival rate and consume rate. ``partitions`` is the most partitions any one of its
    topics has: with the default range assignor, consumer *k* gets a partition of a topic only when that
    topic has more than *k* partitions, so more replicas than that are idle. ``partitions_by_topic`` lets the
    caller grow exactly the topics that are short.
    """

    stage: str
    lag: int
    end_total: int
    committed_total: int
    partitions: int
    partitions_by_topic: Mapping[str, int]


def connect(config: Mapping[str, str], *, client_id: str = "orderflow-operator") -> AdminClient:
    """An AdminClient for ``config`` (librdkafka names); :class:`errors.KafkaConfigInvalid` when refused."""
    conf: dict[str, Any] = {"client.id": client_id, "logger": logger, **config}
    try:
        return AdminClient(conf)
    except (KafkaException, ValueError, TypeError) as e:
        raise errors.KafkaConfigInvalid(f"Kafka client settings rejected: {e}") from e


def _kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def _unavailable(exc: BaseException, what: str) -> errors.OperatorError:
    err = _kafka_error(exc)
    if err is not None and err.code() in _DENIED:
        return errors.KafkaAccessDenied(f"{what}: {err.str()}")
    detail = err.str() if err is not None else f"{type(exc).__name__}: {exc}"
    return errors.BrokerUnavailable(f"{what}: {detail}")


def _result(future: concurrent.futures.Future[Any], timeout: float, what: str) -> Any:
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError as e:
        raise errors.BrokerUnavailable(f"{what}: no answer within {timeout:g}s") from e


def read(
    admin: AdminClient, queries: Sequence[GroupQuery], *, timeout: float
) -> dict[str, StageOffsets | errors.OperatorError]:
    """Read every stage's offsets. Per-stage problems (a missing topic) come back as the stage's value; a
    cluster that does not answer raises :class:`errors.BrokerUnavailable` (or ``KafkaAccessDenied``)."""
    wait = timeout + 2.0  # librdkafka enforces request_timeout; this only guards against a lost future
    topics = list(dict.fromkeys(t for q in queries for t in q.topics))
    # 1. Partition counts. 2. End offsets and each group's commits, requested in parallel. 3. Where a group has
    # not committed yet, its backlog starts at the partition's first offset.
    partitions, topic_errors = _partition_counts(admin, topics, timeout=timeout, wait=wait)
    tps = [TopicPartition(t, p) for t, n in partitions.items() for p in range(n)]
    ends_f = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps}, request_timeout=timeout) if tps else {}
    group_f = _request_group_offsets(admin, queries, partitions, timeout=timeout)
    ends = _offsets_of(ends_f, wait, "listing end offsets")
    committed = _committed(group_f, wait)
    uncommitted = {
        (t, p)
        for q in queries
        for t in q.topics
        if t in partitions
        for p in range(partitions[t])
        if (q.group, t, p) not in committed
    }
    starts: dict[tuple[str, int], int] = {}
    if uncommitted:
        start_f = admin.list_offsets(
            {TopicPartition(t, p): OffsetSpec.earliest() for t, p in sorted(uncommitted)},
            request_timeout=timeout,
        )
        starts = _offsets_of(start_f, wait, "listing start offsets")
    out: dict[str, StageOffsets | errors.OperatorError] = {
        q.stage: _stage_offsets(q, partitions, topic_errors, ends, committed, starts) for q in queries
    }
    with contextlib.suppress(KafkaException, RuntimeError):
        admin.poll(0)  # serve queued librdkafka log lines to the Python logger
    return out


def _partition_counts(
    admin: AdminClient, topics: list[str], *, timeout: float, wait: float
) -> tuple[dict[str, int], dict[str, errors.OperatorError]]:
    """Each topic's partition count. A missing topic is a per-topic answer; a timeout means the cluster is gone."""
    partitions: dict[str, int] = {}
    topic_errors: dict[str, errors.OperatorError] = {}
    if not topics:
        return partitions, topic_errors
    described = admin.describe_topics(TopicCollection(topics), request_timeout=timeout)
    for topic, future in described.items():
        try:
            partitions[topic] = len(_result(future, wait, "describing topics").partitions)
        except KafkaException as e:
            err = _kafka_error(e)
            if err is not None and err.code() in _TOPIC_MISSING:
                topic_errors[topic] = errors.TopicMissing(f"topic {topic} does not exist", topics=(topic,))
            else:
                raise _unavailable(e, "describing topics") from e
    return partitions, topic_errors


def _request_group_offsets(
    admin: AdminClient, queries: Sequence[GroupQuery], partitions: Mapping[str, int], *, timeout: float
) -> dict[str, concurrent.futures.Future[Any]]:
    """Ask for each consumer group's committed offsets on the partitions that exist (one request per group)."""
    group_f: dict[str, concurrent.futures.Future[Any]] = {}
    for q in queries:
        if q.group in group_f:
            continue
        group_tps = [
            TopicPartition(t, p)
            for t in _group_topics(queries, q.group)
            if t in partitions
            for p in range(partitions[t])
        ]
        if group_tps:
            request = [ConsumerGroupTopicPartitions(q.group, group_tps)]
            group_f[q.group] = admin.list_consumer_group_offsets(request, request_timeout=timeout)[q.group]
    return group_f


def _offsets_of(
    futures: Mapping[TopicPartition, concurrent.futures.Future[Any]], wait: float, what: str
) -> dict[tuple[str, int], int]:
    found: dict[tuple[str, int], int] = {}
    for tp, future in futures.items():
        try:
            found[(tp.topic, tp.partition)] = _result(future, wait, what).offset
        except KafkaException as e:
            raise _unavailable(e, what) from e
    return found


def _committed(
    group_f: Mapping[str, concurrent.futures.Future[Any]], wait: float
) -> dict[tuple[str, str, int], int]:
    committed: dict[tuple[str, str, int], int] = {}
    for group, future in group_f.items():
        try:
            result = _result(future, wait, f"fetching offsets of group {group}")
        except KafkaException as e:
            raise _unavailable(e, f"fetching offsets of group {group}") from e
        for tp in result.topic_partitions or ():
            if tp.error is None and tp.offset >= 0:
                committed[(group, tp.topic, tp.partition)] = tp.offset
    return committed


def _stage_offsets(
    q: GroupQuery,
    partitions: Mapping[str, int],
    topic_errors: Mapping[str, errors.OperatorError],
    ends: Mapping[tuple[str, int], int],
    committed: Mapping[tuple[str, str, int], int],
    starts: Mapping[tuple[str, int], int],
) -> StageOffsets | errors.OperatorError:
    """One stage's lag and totals over its topics, or ``TopicMissing`` naming the topics that do not exist."""
    missing = tuple(t for t in q.topics if t in topic_errors)
    if missing:
        return errors.TopicMissing(
            f"stage {q.stage}: topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"{'do' if len(missing) > 1 else 'does'} not exist",
            topics=missing,
        )
    lag = end_total = committed_total = 0
    for t in q.topics:
        for p in range(partitions[t]):
            end = ends[(t, p)]
            position = committed.get((q.group, t, p), starts.get((t, p), 0))
            lag += max(end - position, 0)
            end_total += end
            committed_total += min(position, end)
    return StageOffsets(
        stage=q.stage,
        lag=lag,
        end_total=end_total,
        committed_total=committed_total,
        partitions=max((partitions[t] for t in q.topics), default=0),
        partitions_by_topic={t: partitions[t] for t in q.topics},
    )


def _group_topics(queries: Iterable[GroupQuery], group: str) -> list[str]:
    return list(dict.fromkeys(t for q in queries if q.group == group for t in q.topics))


def grow_partitions(admin: AdminClient, counts: Mapping[str, int], *, timeout: float) -> None:
    """Raise each topic's partition count to the given total (never lowers; Kafka cannot)."""
    if not counts:
        return
    futures = admin.create_partitions(
        [NewPartitions(topic, total) for topic, total in counts.items()], request_timeout=timeout
    )
    for topic, future in futures.items():
        try:
            _result(future, timeout + 2.0, f"growing partitions of {topic}")
        except KafkaException as e:
            err = _kafka_error(e)
            if err is not None and err.code() == KafkaError.INVALID_PARTITIONS:
                continue  # someone else grew it first: already at or above the count
            raise _unavailable(e, f"growing partitions of {topic}") from e
