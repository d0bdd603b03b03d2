"""One reconcile tick of one OrderFlow: observe, decide, act, report.

Observe Kafka (lag, end and committed offsets, partitions) and each stage's Deployment scale; turn offset
progress into rates; let :func:`scaling.decide` pick each stage's replicas; grow partitions and patch the
scale subresource where it says so; ask the order service for flow health; then write ``status`` (conditions
by the API conventions) and post an Event for each scaling decision and each health transition.

Every failure ends as a condition with a reason: this function does not raise for Kafka being down, a
Deployment or topic missing, a Secret unreadable or the order service unreachable. The blocking calls
(confluent-kafka, the Kubernetes client, urllib) run in worker threads so one flow never stalls the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from confluent_kafka.admin import AdminClient

from orderflow_operator import conditions, errors, flowhealth, offsets, rates, scaling, spec
from orderflow_operator.conditions import Condition, Status, Type

__all__ = [
    "EventSink",
    "FlowState",
    "KubeApi",
    "TickResult",
    "kafka_timeout",
    "tick",
]

logger = logging.getLogger(__name__)

#: The reason a condition carries when Kafka cannot be read at all; Ready mirrors it.
KAFKA_UNREACHABLE = "KafkaUnreachable"


class KubeApi(Protocol):
    def get_replicas(self, namespace: str, deployment: str) -> int: ...
    def set_replicas(self, namespace: str, deployment: str, replicas: int) -> None: ...
    def read_secret(self, namespace: str, name: str) -> dict[str, str]: ...
    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...


#: ``(event type, reason, message)`` -> posted as a Kubernetes Event on the OrderFlow.
EventSink = Callable[[str, str, str], None]


def kafka_timeout(interval: float) -> float:
    """Kafka request timeout for a flow: about one interval, within [2 s, 10 s]."""
    return min(10.0, max(2.0, interval))


@dataclasses.dataclass
class StageMemory:
    tracker: rates.RateTracker
    history: tuple[scaling.Recommendation, ...] = ()
    last_scale_time: str | None = None
    last_scale_reason: str | None = None


@dataclasses.dataclass
class FlowState:
    """What the operator remembers about one OrderFlow between ticks (lost on restart, by design)."""

    stages: dict[str, StageMemory] = dataclasses.field(default_factory=dict)
    admin: AdminClient | None = None
    admin_key: tuple[tuple[str, str], ...] | None = None
    conditions: list[dict[str, Any]] | None = None
    last_status: dict[str, Any] | None = None
    seeded: bool = False

    def seed(self, status: Mapping[str, Any] | None) -> None:
        """Adopt what a previous operator run wrote (conditions, last scaling per stage)."""
        if self.seeded:
            return
        self.seeded = True
        status = status or {}
        self.conditions = [dict(c) for c in status.get("conditions") or () if isinstance(c, Mapping)]
        for st in status.get("stages") or ():
            if isinstance(st, Mapping) and st.get("name"):
                mem = self.stages.setdefault(str(st["name"]), StageMemory(tracker=rates.RateTracker(span=0)))
                mem.last_scale_time = st.get("lastScaleTime")
                mem.last_scale_reason = st.get("lastScaleReason")

    def stage(self, name: str, span: float) -> StageMemory:
        mem = self.stages.get(name)
        if mem is None:
            mem = self.stages[name] = StageMemory(tracker=rates.RateTracker(span=span))
        mem.tracker.span = span
        return mem

    def admin_for(self, config: Mapping[str, str]) -> AdminClient:
        key = tuple(sorted(config.items()))
        if self.admin is None or self.admin_key != key:
            self.admin = offsets.connect(config)
            self.admin_key = key
        return self.admin

    def drop_admin(self) -> None:
        self.admin = None
        self.admin_key = None


@dataclasses.dataclass(frozen=True)
class TickResult:
    """What a tick did; the worker logs it and tests and the benchmark read it."""

    status: dict[str, Any]
    scaled: dict[str, tuple[int, int]]
    interval: float
    ready: bool = True


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _strip_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


async def _observe_kafka(
    flow: spec.FlowSpec, state: FlowState, kube: KubeApi, namespace: str, timeout: float
) -> dict[str, offsets.StageOffsets | errors.OperatorError]:
    config = {"bootstrap.servers": flow.kafka.bootstrap_servers}
    if flow.kafka.secret_name:
        secret = await asyncio.to_thread(kube.read_secret, namespace, flow.kafka.secret_name)
        config = {**secret, "bootstrap.servers": flow.kafka.bootstrap_servers}
    queries = [offsets.GroupQuery(s.name, s.consumer_group, s.topics) for s in flow.stages]

    def read() -> dict[str, offsets.StageOffsets | errors.OperatorError]:
        return offsets.read(state.admin_for(config), queries, timeout=timeout)

    try:
        return await asyncio.to_thread(read)
    except errors.BrokerUnavailable:
        state.drop_admin()  # start over with a fresh client (and fresh connections) next tick
        raise


async def _current_replicas(
    flow: spec.FlowSpec, kube: KubeApi, namespace: str
) -> dict[str, int | errors.OperatorError]:
    async def one(stage: spec.StageSpec) -> int | errors.OperatorError:
        try:
            return await asyncio.to_thread(kube.get_replicas, namespace, stage.deployment)
        except errors.OperatorError as e:
            return e

    values = await asyncio.gather(*(one(s) for s in flow.stages))
    return {s.name: v for s, v in zip(flow.stages, values, strict=True)}


def _bad(cond: Condition) -> bool:
    if cond.type is Type.DEGRADED:
        return cond.status is Status.TRUE
    if cond.type is Type.FLOW_HEALTH_AVAILABLE:
        return cond.status is Status.FALSE and cond.reason != "NotConfigured"
    if cond.type is Type.SCALING:
        return False
    return cond.status is not Status.TRUE


async def tick(
    body: Mapping[str, Any],
    state: FlowState,
    *,
    kube: KubeApi,
    post_event: EventSink,
    clock: Callable[[], float] = time.monotonic,
) -> TickResult:
    """Run one reconcile of the OrderFlow ``body``; see the module docstring."""
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    generation = meta.get("generation")
    state.seed(body.get("status"))
    now_text = conditions.now_rfc3339()

    try:
        flow = spec.parse(body.get("spec") or {})
    except errors.InvalidSpec as e:
        conds: list[Condition] = [
            Condition(type=Type.READY, status=Status.FALSE, reason=e.reason, message=str(e)),
            Condition(type=Type.SCALING, status=Status.UNKNOWN, reason=e.reason, message="spec is invalid"),
        ]
        status = await _report(
            body, state, kube, conds, {"observedGeneration": generation}, generation, now_text, post_event
        )
        return TickResult(status=status, scaled={}, interval=spec.DEFAULT_INTERVAL_SECONDS, ready=False)

    interval = flow.scaling.interval_seconds
    timeout = kafka_timeout(interval)
    window = flow.scaling.scale_down_stabilization_seconds

    kafka_error: errors.OperatorError | None = None
    observed: dict[str, offsets.StageOffsets | errors.OperatorError] = {}
    replicas_task = asyncio.create_task(_current_replicas(flow, kube, namespace))
    try:
        observed = await _observe_kafka(flow, state, kube, namespace, timeout)
    except errors.OperatorError as e:
        kafka_error = e
    except Exception as e:  # an unexpected client error must not kill the loop either
        logger.exception("Unexpected error reading Kafka for %s/%s", namespace, name)
        kafka_error = errors.BrokerUnavailable(f"{type(e).__name__}: {e}")
        state.drop_admin()
    current = await replicas_task
    now = clock()

    span = interval  # rates over the last interval: a ramp shows up one tick after it starts
    for s in flow.stages:
        mem = state.stage(s.name, span)
        off = observed.get(s.name)
        if isinstance(off, offsets.StageOffsets):
            mem.tracker.add(rates.Sample(now, off.end_total, off.committed_total))
    for gone in set(state.stages) - {s.name for s in flow.stages}:
        del state.stages[gone]

    arrival: dict[str, float | None] = {s.name: state.stages[s.name].tracker.arrival for s in flow.stages}
    predicted: Mapping[spec.StageName, float | None] = (
        rates.upstream_rates(flow, arrival) if flow.scaling.policy is scaling.Policy.FLOW_AWARE else {}
    )

    stage_status: list[dict[str, Any]] = []
    scaled: dict[str, tuple[int, int]] = {}
    problems: list[errors.OperatorError] = []
    partition_limited: list[str] = []
    pending_down: list[str] = []
    scale_notes: list[str] = []
    decided = 0
    total_lag = 0
    total_replicas = 0
    lag_known = False

    for s in flow.stages:
        mem = state.stages[s.name]
        off = observed.get(s.name)
        cur = current[s.name]
        entry: dict[str, Any] = {
            "name": s.name,
            "deployment": s.deployment,
            "consumerGroup": s.consumer_group,
            "lastScaleTime": mem.last_scale_time,
            "lastScaleReason": mem.last_scale_reason,
        }
        if isinstance(off, offsets.StageOffsets):
            entry.update(
                lag=off.lag,
                partitions=off.partitions,
                arrivalRate=_round(mem.tracker.arrival),
                consumeRate=_round(mem.tracker.consume),
                predictedArrivalRate=_round(predicted.get(s.name)),
            )
            total_lag += off.lag
            lag_known = True
        if isinstance(cur, int):
            entry["replicas"] = cur

        stage_problem: errors.OperatorError | None = None
        if isinstance(cur, errors.OperatorError):
            stage_problem = cur
        elif isinstance(off, errors.OperatorError):
            stage_problem = off
        elif kafka_error is not None or off is None:
            stage_problem = kafka_error
        if stage_problem is not None:
            entry.update(state=stage_problem.reason, message=str(stage_problem))
            if isinstance(cur, int):
                total_replicas += cur
            if stage_problem is not kafka_error:
                problems.append(stage_problem)
            stage_status.append(_strip_none(entry))
            continue
        assert isinstance(off, offsets.StageOffsets) and isinstance(cur, int)

        inputs = scaling.Inputs(
            lag=off.lag,
            partitions=off.partitions,
            current=cur,
            min_replicas=s.min_replicas,
            max_replicas=s.max_replicas,
            lag_per_replica=s.lag_per_replica,
            rate_per_replica=s.rate_per_replica,
            arrival_rate=mem.tracker.arrival,
            upstream_rate=predicted.get(s.name),
            policy=flow.scaling.policy,
            grow_partitions=flow.scaling.grow_partitions,
        )
        decision = scaling.decide(inputs, history=mem.history, now=now, window=window)
        try:
            if decision.grow_partitions_to is not None:
                target = decision.grow_partitions_to
                short = {t: target for t, n in off.partitions_by_topic.items() if n < target}
                admin = state.admin
                if admin is not None and short:
                    await asyncio.to_thread(offsets.grow_partitions, admin, short, timeout=timeout)
                    post_event(
                        "Normal",
                        "PartitionsGrown",
                        f"stage {s.name}: grew {', '.join(sorted(short))} to {target} partitions ({decision.message})",
                    )
                    inputs = dataclasses.replace(inputs, partitions=target)
                    entry["partitions"] = target
                    decision = scaling.decide(inputs, history=mem.history, now=now, window=window)
            if decision.changed:
                await asyncio.to_thread(kube.set_replicas, namespace, s.deployment, decision.replicas)
        except errors.OperatorError as e:
            entry.update(state=e.reason, message=str(e), desiredReplicas=decision.recommendation)
            problems.append(e)
            total_replicas += cur
            stage_status.append(_strip_none(entry))
            continue
        mem.history = decision.history
        decided += 1
        if decision.changed:
            direction = "ScaledUp" if decision.replicas > cur else "ScaledDown"
            scaled[s.name] = (cur, decision.replicas)
            mem.last_scale_time = now_text
            mem.last_scale_reason = decision.reason.value
            scale_notes.append(f"{s.name} {cur}->{decision.replicas}")
            post_event(
                "Normal",
                direction,
                f"stage {s.name}: Deployment {s.deployment} {cur} -> {decision.replicas} replicas "
                f"({decision.reason.value}: {decision.message})",
            )
            entry.update(lastScaleTime=mem.last_scale_time, lastScaleReason=mem.last_scale_reason)
        if decision.replicas > decision.recommendation:
            pending_down.append(f"{s.name} ({decision.replicas} -> {decision.recommendation})")
        if decision.partition_limited and decision.grow_partitions_to is None:
            partition_limited.append(f"{s.name} wants {decision.wanted}, its topics have {off.partitions} partitions")
        entry.update(
            replicas=decision.replicas,
            desiredReplicas=decision.recommendation,
            state="Ok",
            message=f"{decision.reason.value}: {decision.message}",
        )
        total_replicas += decision.replicas
        stage_status.append(_strip_none(entry))

    # Flow health from the order service.
    flow_status: dict[str, Any] | None = None
    if flow.health.order_service_url is None:
        health_cond = Condition(
            type=Type.FLOW_HEALTH_AVAILABLE,
            status=Status.FALSE,
            reason="NotConfigured",
            message="spec.health.orderServiceUrl is not set; in-flight and stuck orders are not reported",
        )
        health = None
    else:
        try:
            health = await asyncio.to_thread(
                flowhealth.fetch,
                flow.health.order_service_url,
                stuck_after_seconds=flow.health.stuck_after_seconds,
                timeout=timeout,
            )
        except errors.FlowHealthUnavailable as e:
            health = None
            health_cond = Condition(
                type=Type.FLOW_HEALTH_AVAILABLE, status=Status.FALSE, reason=e.reason, message=str(e)
            )
        else:
            flow_status = _strip_none(health.to_status())
            health_cond = Condition(
                type=Type.FLOW_HEALTH_AVAILABLE,
                status=Status.TRUE,
                reason="Reported",
                message=f"{health.in_flight} orders in flight, {health.stuck} stuck",
            )

    # Conditions.
    conds = [health_cond]
    if kafka_error is None:
        conds.append(
            Condition(
                type=Type.KAFKA_REACHABLE,
                status=Status.TRUE,
                reason="Connected",
                message=f"read offsets from {flow.kafka.bootstrap_servers}",
            )
        )
    else:
        conds.append(
            Condition(
                type=Type.KAFKA_REACHABLE,
                status=Status.FALSE,
                reason=kafka_error.reason,
                message=str(kafka_error),
            )
        )

    if kafka_error is not None:
        reason = KAFKA_UNREACHABLE if isinstance(kafka_error, errors.BrokerUnavailable) else kafka_error.reason
        ready = Condition(type=Type.READY, status=Status.FALSE, reason=reason, message=str(kafka_error))
    elif problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        ready = Condition(type=Type.READY, status=Status.FALSE, reason=first.reason, message=f"{first}{more}")
    else:
        ready = Condition(
            type=Type.READY,
            status=Status.TRUE,
            reason="Reconciled",
            message=f"all {len(flow.stages)} stages observed and scaled",
        )
    conds.append(ready)

    if decided == 0:
        conds.append(
            Condition(
                type=Type.SCALING,
                status=Status.UNKNOWN,
                reason=ready.reason,
                message="no stage could be decided this tick",
            )
        )
    elif scaled:
        ups = any(new > old for old, new in scaled.values())
        conds.append(
            Condition(
                type=Type.SCALING,
                status=Status.TRUE,
                reason="ScaledUp" if ups else "ScaledDown",
                message=", ".join(scale_notes),
            )
        )
    elif pending_down:
        conds.append(
            Condition(
                type=Type.SCALING,
                status=Status.TRUE,
                reason="ScaleDownPending",
                message=f"held by the {window:g}s stabilization window: {', '.join(pending_down)}",
            )
        )
    else:
        conds.append(
            Condition(
                type=Type.SCALING,
                status=Status.FALSE,
                reason="Stable",
                message="every stage is at its recommended replicas",
            )
        )

    cycles = flow.cycles()
    if health is not None and health.stuck > 0:
        ids = ", ".join(health.stuck_order_ids[:5])
        degraded = Condition(
            type=Type.DEGRADED,
            status=Status.TRUE,
            reason="StuckOrders",
            message=f"{health.stuck} orders in flight longer than {flow.health.stuck_after_seconds}s (e.g. {ids})",
        )
    elif partition_limited:
        degraded = Condition(
            type=Type.DEGRADED,
            status=Status.TRUE,
            reason="PartitionLimited",
            message="; ".join(partition_limited) + " (set scaling.growPartitions to grow them)",
        )
    elif flow.health.order_service_url is not None and health is None:
        degraded = Condition(
            type=Type.DEGRADED, status=Status.TRUE, reason=health_cond.reason, message=health_cond.message
        )
    elif cycles:
        degraded = Condition(
            type=Type.DEGRADED,
            status=Status.TRUE,
            reason="UpstreamCycle",
            message="upstream links form a cycle, ignored for prediction: " + "; ".join(" -> ".join(c) for c in cycles),
        )
    else:
        degraded = Condition(
            type=Type.DEGRADED,
            status=Status.FALSE,
            reason="AsExpected",
            message="no stuck orders, no stage limited by partitions",
        )
    conds.append(degraded)

    ready_count = sum(1 for st in stage_status if st.get("state") == "Ok")
    fields: dict[str, Any] = {
        "observedGeneration": generation,
        "readyStages": f"{ready_count}/{len(flow.stages)}",
        "totalLag": total_lag if lag_known else None,
        "totalReplicas": total_replicas,
        "stages": stage_status,
        "flow": flow_status,
    }
    status = await _report(body, state, kube, conds, fields, generation, now_text, post_event)
    return TickResult(status=status, scaled=scaled, interval=interval, ready=ready.status is Status.TRUE)


async def _report(
    body: Mapping[str, Any],
    state: FlowState,
    kube: KubeApi,
    conds: list[Condition],
    fields: dict[str, Any],
    generation: Any,
    now_text: str,
    post_event: EventSink,
) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    merged, transitions = conditions.merge(state.conditions, conds, observed_generation=generation, now=now_text)
    status = {**fields, "conditions": merged}
    if status != state.last_status:
        try:
            await asyncio.to_thread(kube.patch_status, str(meta.get("namespace")), str(meta.get("name")), status)
        except errors.OperatorError:
            logger.exception("Could not write the status of %s/%s", meta.get("namespace"), meta.get("name"))
            return status  # try again next tick: memory still holds the old conditions
        state.last_status = status
    state.conditions = merged
    for cond, before in transitions:
        if cond.type is Type.SCALING:
            continue  # each scaling decision has its own Event
        if before is None and not _bad(cond) and cond.type is not Type.READY:
            continue  # a healthy first report is not news
        event_type = "Warning" if _bad(cond) else "Normal"
        text = f"{cond.type.value}={cond.status.value}: {cond.message}"
        post_event(event_type, cond.reason, text)
        logger.log(
            logging.WARNING if _bad(cond) else logging.INFO,
            "%s/%s %s (%s)",
            meta.get("namespace"),
            meta.get("name"),
            text,
            cond.reason,
        )
    return status
