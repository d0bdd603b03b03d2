"""The OrderFlow resource as typed values.

The CRD's schema and CEL rules reject nonsense at the API server; this module turns an accepted ``spec`` into
frozen dataclasses with the schema's defaults applied (an operator may see objects stored before a default was
added), and answers the one question the schema cannot: which upstream links form a cycle.

The transport section works like KEDA's trigger ``type``: ``spec.transport.type`` (``kafka`` when absent, so
every resource written before it existed keeps its meaning) picks the broker whose backlog the operator reads,
and the section of that name says where it is. Kafka's section stays ``spec.kafka``, where it has always been:
one spelling, and the services chart renders Kafka flows that a CRD from before the transport section (Helm
never upgrades ``crds/``) still accepts.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any, NewType

from orderflow_operator import errors
from orderflow_operator.scaling import Policy

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "BrokerSpec",
    "FlowSpec",
    "HealthSpec",
    "KafkaSpec",
    "ScalingSpec",
    "StageName",
    "StageSpec",
    "Transport",
    "parse",
]

GROUP = "orderflow.dev"
VERSION = "v1alpha1"
PLURAL = "orderflows"
KIND = "OrderFlow"

StageName = NewType("StageName", str)

DEFAULT_INTERVAL_SECONDS = 5
DEFAULT_STABILIZATION_SECONDS = 300
DEFAULT_STUCK_AFTER_SECONDS = 300


class Transport(enum.StrEnum):
    """The broker a flow runs on (``spec.transport.type``); the services' ``ORDERFLOW_TRANSPORT``."""

    KAFKA = "kafka"
    NATS = "nats"
    RABBITMQ = "rabbitmq"

    @property
    def display(self) -> str:
        return _DISPLAY[self]


_DISPLAY = {Transport.KAFKA: "Kafka", Transport.NATS: "NATS JetStream", Transport.RABBITMQ: "RabbitMQ"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class KafkaSpec:
    bootstrap_servers: str
    secret_name: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class BrokerSpec:
    """Where a NATS or RabbitMQ broker is: ``url``, or the ``ORDERFLOW_<TRANSPORT>_URL`` key of the Secret
    ``secret_name``, whose other ``ORDERFLOW_<TRANSPORT>_*`` keys are the transport's options (TLS, auth) — the
    same Secret the services load into their environment."""

    url: str | None = None
    secret_name: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageSpec:
    name: StageName
    deployment: str
    consumer_group: str
    topics: tuple[str, ...]
    min_replicas: int
    max_replicas: int
    lag_per_replica: int
    rate_per_replica: int | None = None
    upstream: tuple[StageName, ...] = ()
    upstream_ratio_percent: int = 100


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScalingSpec:
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    scale_down_stabilization_seconds: float = DEFAULT_STABILIZATION_SECONDS
    grow_partitions: bool = False
    policy: Policy = Policy.FLOW_AWARE


@dataclasses.dataclass(frozen=True, kw_only=True)
class HealthSpec:
    order_service_url: str | None = None
    stuck_after_seconds: int = DEFAULT_STUCK_AFTER_SECONDS


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlowSpec:
    stages: tuple[StageSpec, ...]
    scaling: ScalingSpec
    health: HealthSpec
    transport: Transport = Transport.KAFKA
    #: set when ``transport`` is Kafka
    kafka: KafkaSpec | None = None
    #: set when ``transport`` is NATS or RabbitMQ: that broker's section
    broker: BrokerSpec | None = None

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic of every stage, once, in first-seen order."""
        return tuple(dict.fromkeys(t for s in self.stages for t in s.topics))

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def cycles(self) -> list[tuple[StageName, ...]]:
        """Upstream cycles, each as the path that closes it; flow-aware prediction ignores their links."""
        return _find_cycles(self.stages)


def _get(mapping: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = mapping.get(key, default)
    return default if value is None else value


def _secret_name(section: Mapping[str, Any]) -> str | None:
    ref = section.get("secretRef") or {}
    return str(ref["name"]) if ref.get("name") else None


def _transport(spec: Mapping[str, Any]) -> tuple[Transport, KafkaSpec | None, BrokerSpec | None]:
    """The broker a flow names, and its section; the default (no ``spec.transport``) is Kafka."""
    section = _get(spec, "transport", {})
    raw = _get(section, "type", Transport.KAFKA.value)
    try:
        transport = Transport(raw)
    except ValueError:
        known = ", ".join(t.value for t in Transport)
        raise errors.InvalidSpec(f"spec.transport.type {raw!r} is not one of {known}") from None
    if transport is Transport.KAFKA:
        kafka = spec.get("kafka")
        if not kafka:
            raise errors.InvalidSpec("spec.kafka is required when spec.transport.type is kafka (the default)")
        return transport, KafkaSpec(bootstrap_servers=str(kafka["bootstrapServers"]),
                                    secret_name=_secret_name(kafka)), None
    broker = section.get(transport.value)
    if broker is None:
        raise errors.InvalidSpec(f"spec.transport.{transport.value} is required when spec.transport.type is "
                                 f"{transport.value}")
    found = BrokerSpec(url=str(broker["url"]) if broker.get("url") else None, secret_name=_secret_name(broker))
    if found.url is None and found.secret_name is None:
        raise errors.InvalidSpec(f"spec.transport.{transport.value} needs url or secretRef")
    return transport, None, found


def parse(spec: Mapping[str, Any]) -> FlowSpec:
    """Build a :class:`FlowSpec` from a resource's ``spec``; :class:`errors.InvalidSpec` tells what is off."""
    try:
        transport, kafka, broker = _transport(spec)
        stages = tuple(
            StageSpec(
                name=StageName(str(s["name"])),
                deployment=str(s["deployment"]),
                consumer_group=str(s["consumerGroup"]),
                topics=tuple(str(t) for t in s["topics"]),
                min_replicas=int(_get(s, "minReplicas", 1)),
                max_replicas=int(s["maxReplicas"]),
                lag_per_replica=int(s["lagPerReplica"]),
                rate_per_replica=int(s["ratePerReplica"]) if s.get("ratePerReplica") is not None else None,
                upstream=tuple(StageName(str(u)) for u in _get(s, "upstream", ())),
                upstream_ratio_percent=int(_get(s, "upstreamRatioPercent", 100)),
            )
            for s in spec["stages"]
        )
        scaling = _get(spec, "scaling", {})
        health = _get(spec, "health", {})
        flow = FlowSpec(
            transport=transport,
            kafka=kafka,
            broker=broker,
            stages=stages,
            scaling=ScalingSpec(
                interval_seconds=float(_get(scaling, "intervalSeconds", DEFAULT_INTERVAL_SECONDS)),
                scale_down_stabilization_seconds=float(
                    _get(scaling, "scaleDownStabilizationSeconds", DEFAULT_STABILIZATION_SECONDS)
                ),
                grow_partitions=bool(_get(scaling, "growPartitions", False)),
                policy=Policy(_get(scaling, "policy", Policy.FLOW_AWARE.value)),
            ),
            health=HealthSpec(
                order_service_url=str(health["orderServiceUrl"]) if health.get("orderServiceUrl") else None,
                stuck_after_seconds=int(_get(health, "stuckAfterSeconds", DEFAULT_STUCK_AFTER_SECONDS)),
            ),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise errors.InvalidSpec(f"spec cannot be read: {type(e).__name__}: {e}") from e
    _check(flow)
    return flow


def _check(flow: FlowSpec) -> None:
    """The rules the CRD enforces, again, for objects stored before the schema had them."""
    if not flow.stages:
        raise errors.InvalidSpec("spec.stages must name at least one stage")
    names = [s.name for s in flow.stages]
    if len(set(names)) != len(names):
        raise errors.InvalidSpec("stage names must be unique")
    for s in flow.stages:
        if s.min_replicas > s.max_replicas:
            raise errors.InvalidSpec(f"stage {s.name}: minReplicas must be <= maxReplicas")
        if s.lag_per_replica < 1:
            raise errors.InvalidSpec(f"stage {s.name}: lagPerReplica must be >= 1")
        if not s.topics:
            raise errors.InvalidSpec(f"stage {s.name}: topics must name at least one topic")
        unknown = [u for u in s.upstream if u not in names]
        if unknown:
            raise errors.InvalidSpec(f"stage {s.name}: upstream {', '.join(unknown)} is not a stage of this flow")
    if flow.scaling.interval_seconds < 1:
        raise errors.InvalidSpec("scaling.intervalSeconds must be >= 1")


def _find_cycles(stages: Sequence[StageSpec]) -> list[tuple[StageName, ...]]:
    """One cycle per back edge of a depth-first walk along upstream links (linear in stages + links)."""
    upstream = {s.name: s.upstream for s in stages}
    state: dict[StageName, int] = {}  # 1 = on the current path, 2 = done
    path: list[StageName] = []
    cycles: list[tuple[StageName, ...]] = []

    def walk(node: StageName) -> None:
        state[node] = 1
        path.append(node)
        for u in upstream.get(node, ()):
            if state.get(u) == 1:
                cycles.append(tuple(path[path.index(u) :]))
            elif u not in state and u in upstream:
                walk(u)
        path.pop()
        state[node] = 2

    for name in upstream:
        if name not in state:
            walk(name)
    return cycles
