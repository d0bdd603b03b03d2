"""One reconcile tick of one OrderFlow: observe, decide, act, report.

Observe the flow's broker and each stage's Deployment scale. On Kafka that is lag, end and committed offsets and
partitions, and offset progress becomes rates; on NATS JetStream and RabbitMQ it is each group's backlog
(:mod:`backlog`), which is the stage's lag. Let :func:`scaling.decide` pick each stage's replicas; grow
partitions (Kafka) and patch the scale subresource where it says so; ask the order service for flow health; then
write ``status`` (conditions by the API conventions, and which transport was read) and post an Event for each
scaling decision and each health transition.

Every failure ends as a condition with a reason: this function does not raise for the broker being down, a
Deployment or topic missing, a Secret unreadable or the order service unreachable. The blocking calls
(confluent-kafka, the transports' backlog readers, the Kubernetes client, urllib) run in worker threads so one
flow never stalls the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from confluent_kafka.admin import AdminClient

from orderflow_operator import backlog, conditions, errors, flowhealth, metrics, offsets, rates, scaling, spec
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
#: The same for a NATS or RabbitMQ server.
BROKER_UNREACHABLE = "BrokerUnreachable"

#: What a tick read of one stage: Kafka's offsets, or another transport's backlog.
Reading = offsets.StageOffsets | backlog.StageBacklog


class KubeApi(Protocol):
    def get_replicas(self, namespace: str, deployment: str) -> int: ...
    def set_replicas(self, namespace: str, deployment: str, replicas: int) -> None: ...
    def read_secret(self, namespace: str, name: str) -> dict[str, str]: ...
    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...


#: ``(event type, reason, message)`` -> posted as a Kubernetes Event on the OrderFlow.
EventSink = Callable[[str, str, str], None]


def kafka_timeout(interval: float) -> float:
    """Broker request timeout for a flow (Kafka's, or the wait for a backlog reader): about one interval, within
    [2 s, 10 s]."""
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
    kafka: spec.KafkaSpec, flow: spec.FlowSpec, state: FlowState, kube: KubeApi, namespace: str, timeout: float
) -> dict[str, Reading | errors.OperatorError]:
    config = {"bootstrap.servers": kafka.bootstrap_servers}
    if kafka.secret_name:
        secret = await asyncio.to_thread(kube.read_secret, namespace, kafka.secret_name)
        config = {**secret, "bootstrap.servers": kafka.bootstrap_servers}
    queries = [offsets.GroupQuery(s.name, s.consumer_group, s.topics) for s in flow.stages]

    def read() -> dict[str, Reading | errors.OperatorError]:
        return dict(offsets.read(state.admin_for(config), queries, timeout=timeout))

    try:
        return await asyncio.to_thread(read)
    except errors.BrokerUnavailable:
        state.drop_admin()  # start over with a fresh client (and fresh connections) next tick
        raise


async def _broker_settings(
    flow: spec.FlowSpec, broker: spec.BrokerSpec, kube: KubeApi, namespace: str
) -> tuple[str, dict[str, str]]:
    """The URL and options of a NATS or RabbitMQ flow: the spec's ``url`` wins over the Secret's."""
    url = broker.url
    options: dict[str, str] = {}
    if broker.secret_name:
        secret = await asyncio.to_thread(kube.read_secret, namespace, broker.secret_name)
        from_secret, options = backlog.from_secret(secret, flow.transport)
        url = url or from_secret
    if not url:
        variable = f"ORDERFLOW_{flow.transport.value.upper()}_URL"
        raise errors.TransportConfigInvalid(
            f"no {flow.transport.display} URL: spec.transport.{flow.transport.value}.url is not set and Secret "
            f"{broker.secret_name} has no {variable} key"
        )
    return url, options


async def _observe_backlog(
    broker: spec.BrokerSpec, flow: spec.FlowSpec, kube: KubeApi, namespace: str, timeout: float
) -> tuple[str, dict[str, Reading | errors.OperatorError]]:
    """``(where it read, each stage's backlog)``; a reader that has not answered after ``timeout`` is
    :class:`errors.BrokerUnavailable` (its thread is left to finish: the readers' clients time out by themselves)."""
    url, options = await _broker_settings(flow, broker, kube, namespace)
    queries = [offsets.GroupQuery(s.name, s.consumer_group, s.topics) for s in flow.stages]
    where = f"{flow.transport.display} at {backlog.redact(url)}"

    def read() -> dict[str, Reading | errors.OperatorError]:
        return dict(backlog.read(flow.transport, url, options, queries, timeout=timeout))

    try:
        return where, await asyncio.wait_for(asyncio.to_thread(read), timeout=timeout + 2.0)
    except TimeoutError as e:
        raise errors.BrokerUnavailable(f"{where}: no backlog within {timeout + 2.0:g}s") from e


async def _observe_broker(
    flow: spec.FlowSpec, state: FlowState, kube: KubeApi, namespace: str, timeout: float
) -> tuple[str, dict[str, Reading | errors.OperatorError]]:
    """``(where it read, each stage's reading)`` from the flow's transport."""
    if flow.kafka is not None:
        readings = await _observe_kafka(flow.kafka, flow, state, kube, namespace, timeout)
        return flow.kafka.bootstrap_servers, readings
    assert flow.broker is not None, "spec.parse gives every flow a Kafka or a broker section"
    return await _observe_backlog(flow.broker, flow, kube, namespace, timeout)


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


@dataclasses.dataclass(frozen=True)
class Observation:
    """Observe: what the broker and the Deployments said this tick, and the rates derived from it (Kafka only).
    ``where`` names what was read (Kafka's bootstrap servers, or the transport and its redacted URL)."""

    broker_error: errors.OperatorError | None
    offsets: Mapping[str, Reading | errors.OperatorError]
    replicas: Mapping[str, int | errors.OperatorError]
    now: float
    predicted: Mapping[spec.StageName, float | None]
    where: str = ""


@dataclasses.dataclass
class StageOutcome:
    """Decide and act, for one stage: its status entry and what the flow's conditions need to know of it."""

    entry: dict[str, Any]
    replicas: int | None = None
    lag: int | None = None
    problem: errors.OperatorError | None = None
    decided: bool = False
    scaled: tuple[int, int] | None = None
    pending_down: str | None = None
    partition_limited: str | None = None


@dataclasses.dataclass(frozen=True)
class Health:
    """Flow health from the order service: the condition, and what it reported (None when it did not)."""

    condition: Condition
    report: flowhealth.FlowHealth | None = None


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
    namespace = str(meta.get("namespace"))
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

    seen = await _observe(flow, state, kube, f"{namespace}/{meta.get('name')}", clock)
    outcomes = [
        await _reconcile_stage(flow, stage, seen, state, kube, namespace, now_text, post_event) for stage in flow.stages
    ]
    health = await _flow_health(flow)
    conds = _conditions(flow, seen, outcomes, health)
    status = await _report(body, state, kube, conds, _fields(flow, outcomes, health, generation), generation, now_text,
                           post_event)
    scaled: dict[str, tuple[int, int]] = {
        s.name: o.scaled for s, o in zip(flow.stages, outcomes, strict=True) if o.scaled is not None
    }
    ready = next(c for c in conds if c.type is Type.READY)
    metrics.record(
        namespace=namespace,
        flow=str(meta.get("name")),
        targets={s.name: (s.lag_per_replica, s.max_replicas) for s in flow.stages},
        status=status,
        ready=ready.status is Status.TRUE,
        scaled=scaled,
    )
    return TickResult(status=status, scaled=scaled, interval=flow.scaling.interval_seconds,
                      ready=ready.status is Status.TRUE)


# -- observe ---------------------------------------------------------------------------------------------------


async def _observe(
    flow: spec.FlowSpec, state: FlowState, kube: KubeApi, where: str, clock: Callable[[], float]
) -> Observation:
    """Read the broker and the Deployments' scale (concurrently), then update each stage's rates. ``where`` is the
    OrderFlow's ``namespace/name``."""
    namespace = where.partition("/")[0]
    broker_error: errors.OperatorError | None = None
    observed: dict[str, Reading | errors.OperatorError] = {}
    read_from = ""
    replicas_task = asyncio.create_task(_current_replicas(flow, kube, namespace))
    try:
        read_from, observed = await _observe_broker(
            flow, state, kube, namespace, kafka_timeout(flow.scaling.interval_seconds)
        )
    except errors.OperatorError as e:
        broker_error = e
    except Exception as e:  # an unexpected client error must not kill the loop either
        logger.exception("Unexpected error reading %s for %s", flow.transport.display, where)
        broker_error = errors.BrokerUnavailable(f"{type(e).__name__}: {e}")
        state.drop_admin()
    current = await replicas_task
    now = clock()
    span = flow.scaling.interval_seconds  # rates over the last interval: a ramp shows up one tick after it starts
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
    return Observation(broker_error, observed, current, now, predicted, read_from)


# -- decide and act, per stage ---------------------------------------------------------------------------------


def _stage_entry(s: spec.StageSpec, mem: StageMemory, seen: Observation) -> StageOutcome:
    """The stage's status entry from what was observed, before any decision."""
    off, cur = seen.offsets.get(s.name), seen.replicas[s.name]
    outcome = StageOutcome(entry={
        "name": s.name,
        "deployment": s.deployment,
        "consumerGroup": s.consumer_group,
        "lastScaleTime": mem.last_scale_time,
        "lastScaleReason": mem.last_scale_reason,
    })
    if isinstance(off, offsets.StageOffsets):
        outcome.entry.update(
            lag=off.lag,
            partitions=off.partitions,
            arrivalRate=_round(mem.tracker.arrival),
            consumeRate=_round(mem.tracker.consume),
            predictedArrivalRate=_round(seen.predicted.get(s.name)),
        )
        outcome.lag = off.lag
    elif isinstance(off, backlog.StageBacklog):
        outcome.entry["lag"] = outcome.lag = off.lag
    if isinstance(cur, int):
        outcome.entry["replicas"] = outcome.replicas = cur
    return outcome


def _stage_problem(s: spec.StageSpec, seen: Observation) -> errors.OperatorError | None:
    """Why the stage cannot be decided this tick (its Deployment, its reading, or the broker as a whole), if it
    cannot."""
    cur, off = seen.replicas[s.name], seen.offsets.get(s.name)
    if isinstance(cur, errors.OperatorError):
        return cur
    if isinstance(off, errors.OperatorError):
        return off
    if seen.broker_error is not None or off is None:
        return seen.broker_error
    return None


def _inputs(flow: spec.FlowSpec, s: spec.StageSpec, off: Reading, cur: int, mem: StageMemory,
            seen: Observation) -> scaling.Inputs:
    # A backlog reading knows no partitions: maxReplicas is the only cap (README: Transports says how many
    # replicas each scheme can keep busy), and there is nothing to grow.
    kafka = isinstance(off, offsets.StageOffsets)
    return scaling.Inputs(
        lag=off.lag,
        partitions=off.partitions if isinstance(off, offsets.StageOffsets) else s.max_replicas,
        current=cur,
        min_replicas=s.min_replicas,
        max_replicas=s.max_replicas,
        lag_per_replica=s.lag_per_replica,
        rate_per_replica=s.rate_per_replica,
        arrival_rate=mem.tracker.arrival,
        upstream_rate=seen.predicted.get(s.name),
        policy=flow.scaling.policy,
        grow_partitions=flow.scaling.grow_partitions and kafka,
    )


async def _act(
    flow: spec.FlowSpec, s: spec.StageSpec, inputs: scaling.Inputs, decision: scaling.Decision, *,
    state: FlowState, seen: Observation, kube: KubeApi, namespace: str, outcome: StageOutcome, post_event: EventSink,
) -> scaling.Decision:
    """Grow the topics' partitions and patch the scale where ``decision`` says so; the decision that was acted on
    (decided again once the partitions grew). Raises the OperatorError of a failed call."""
    off = seen.offsets[s.name]
    window = flow.scaling.scale_down_stabilization_seconds
    mem = state.stages[s.name]
    if decision.grow_partitions_to is not None and isinstance(off, offsets.StageOffsets):
        target = decision.grow_partitions_to
        short = {t: target for t, n in off.partitions_by_topic.items() if n < target}
        admin = state.admin
        if admin is not None and short:
            timeout = kafka_timeout(flow.scaling.interval_seconds)
            await asyncio.to_thread(offsets.grow_partitions, admin, short, timeout=timeout)
            post_event(
                "Normal",
                "PartitionsGrown",
                f"stage {s.name}: grew {', '.join(sorted(short))} to {target} partitions ({decision.message})",
            )
            inputs = dataclasses.replace(inputs, partitions=target)
            outcome.entry["partitions"] = target
            decision = scaling.decide(inputs, history=mem.history, now=seen.now, window=window)
    if decision.changed:
        await asyncio.to_thread(kube.set_replicas, namespace, s.deployment, decision.replicas)
    return decision


def _record_decision(
    s: spec.StageSpec, cur: int, partitions: int, decision: scaling.Decision, *, mem: StageMemory,
    outcome: StageOutcome, now_text: str, post_event: EventSink,
) -> None:
    """Report: remember an applied decision, post its Event, and fill in the stage's entry."""
    mem.history = decision.history
    outcome.decided = True
    if decision.changed:
        direction = "ScaledUp" if decision.replicas > cur else "ScaledDown"
        outcome.scaled = (cur, decision.replicas)
        mem.last_scale_time = now_text
        mem.last_scale_reason = decision.reason.value
        post_event(
            "Normal",
            direction,
            f"stage {s.name}: Deployment {s.deployment} {cur} -> {decision.replicas} replicas "
            f"({decision.reason.value}: {decision.message})",
        )
        outcome.entry.update(lastScaleTime=mem.last_scale_time, lastScaleReason=mem.last_scale_reason)
    if decision.replicas > decision.recommendation:
        outcome.pending_down = f"{s.name} ({decision.replicas} -> {decision.recommendation})"
    if decision.partition_limited and decision.grow_partitions_to is None:
        outcome.partition_limited = f"{s.name} wants {decision.wanted}, its topics have {partitions} partitions"
    outcome.entry.update(
        replicas=decision.replicas,
        desiredReplicas=decision.recommendation,
        state="Ok",
        message=f"{decision.reason.value}: {decision.message}",
    )
    outcome.replicas = decision.replicas


async def _reconcile_stage(
    flow: spec.FlowSpec, s: spec.StageSpec, seen: Observation, state: FlowState, kube: KubeApi, namespace: str,
    now_text: str, post_event: EventSink,
) -> StageOutcome:
    """Decide the stage's replicas, act on the decision, and say how it went (never raises an OperatorError)."""
    mem = state.stages[s.name]
    outcome = _stage_entry(s, mem, seen)
    problem = _stage_problem(s, seen)
    if problem is not None:
        outcome.entry.update(state=problem.reason, message=str(problem))
        outcome.problem = problem if problem is not seen.broker_error else None
        outcome.entry = _strip_none(outcome.entry)
        return outcome
    off, cur = seen.offsets[s.name], seen.replicas[s.name]
    assert isinstance(off, Reading) and isinstance(cur, int)
    inputs = _inputs(flow, s, off, cur, mem, seen)
    window = flow.scaling.scale_down_stabilization_seconds
    decision = scaling.decide(inputs, history=mem.history, now=seen.now, window=window)
    try:
        decision = await _act(flow, s, inputs, decision, state=state, seen=seen, kube=kube, namespace=namespace,
                              outcome=outcome, post_event=post_event)
    except errors.OperatorError as e:
        outcome.entry.update(state=e.reason, message=str(e), desiredReplicas=decision.recommendation)
        outcome.problem = e
        outcome.entry = _strip_none(outcome.entry)
        return outcome
    _record_decision(s, cur, inputs.partitions, decision, mem=mem, outcome=outcome, now_text=now_text,
                     post_event=post_event)
    outcome.entry = _strip_none(outcome.entry)
    return outcome


# -- flow health -----------------------------------------------------------------------------------------------


async def _flow_health(flow: spec.FlowSpec) -> Health:
    if flow.health.order_service_url is None:
        return Health(Condition(
            type=Type.FLOW_HEALTH_AVAILABLE,
            status=Status.FALSE,
            reason="NotConfigured",
            message="spec.health.orderServiceUrl is not set; in-flight and stuck orders are not reported",
        ))
    try:
        report = await asyncio.to_thread(
            flowhealth.fetch,
            flow.health.order_service_url,
            stuck_after_seconds=flow.health.stuck_after_seconds,
            timeout=kafka_timeout(flow.scaling.interval_seconds),
        )
    except errors.FlowHealthUnavailable as e:
        return Health(Condition(type=Type.FLOW_HEALTH_AVAILABLE, status=Status.FALSE, reason=e.reason, message=str(e)))
    return Health(
        Condition(
            type=Type.FLOW_HEALTH_AVAILABLE,
            status=Status.TRUE,
            reason="Reported",
            message=f"{report.in_flight} orders in flight, {report.stuck} stuck",
        ),
        report,
    )


# -- report: conditions and status fields ----------------------------------------------------------------------


def _conditions(
    flow: spec.FlowSpec, seen: Observation, outcomes: list[StageOutcome], health: Health
) -> list[Condition]:
    ready = _ready(flow, seen.broker_error, [o.problem for o in outcomes if o.problem is not None])
    return [
        health.condition,
        _broker_reachable(flow, seen),
        ready,
        _scaling(flow, outcomes, ready),
        _degraded(flow, outcomes, health),
    ]


def _broker_reachable(flow: spec.FlowSpec, seen: Observation) -> Condition:
    """``KafkaReachable`` on a Kafka flow (as it has always been), ``BrokerReachable`` on the others."""
    kafka = flow.transport is spec.Transport.KAFKA
    ctype = Type.KAFKA_REACHABLE if kafka else Type.BROKER_REACHABLE
    if seen.broker_error is None:
        what = "offsets" if kafka else "backlog"
        return Condition(type=ctype, status=Status.TRUE, reason="Connected", message=f"read {what} from {seen.where}")
    return Condition(type=ctype, status=Status.FALSE, reason=seen.broker_error.reason, message=str(seen.broker_error))


def _ready(
    flow: spec.FlowSpec, broker_error: errors.OperatorError | None, problems: list[errors.OperatorError]
) -> Condition:
    if broker_error is not None:
        unreachable = KAFKA_UNREACHABLE if flow.transport is spec.Transport.KAFKA else BROKER_UNREACHABLE
        reason = unreachable if isinstance(broker_error, errors.BrokerUnavailable) else broker_error.reason
        return Condition(type=Type.READY, status=Status.FALSE, reason=reason, message=str(broker_error))
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Condition(type=Type.READY, status=Status.FALSE, reason=first.reason, message=f"{first}{more}")
    return Condition(
        type=Type.READY,
        status=Status.TRUE,
        reason="Reconciled",
        message=f"all {len(flow.stages)} stages observed and scaled",
    )


def _scaling(flow: spec.FlowSpec, outcomes: list[StageOutcome], ready: Condition) -> Condition:
    scaled = [(s.name, o.scaled) for s, o in zip(flow.stages, outcomes, strict=True) if o.scaled is not None]
    pending_down = [o.pending_down for o in outcomes if o.pending_down is not None]
    if not any(o.decided for o in outcomes):
        return Condition(
            type=Type.SCALING, status=Status.UNKNOWN, reason=ready.reason, message="no stage could be decided this tick"
        )
    if scaled:
        ups = any(new > old for _, (old, new) in scaled)
        return Condition(
            type=Type.SCALING,
            status=Status.TRUE,
            reason="ScaledUp" if ups else "ScaledDown",
            message=", ".join(f"{name} {old}->{new}" for name, (old, new) in scaled),
        )
    if pending_down:
        window = flow.scaling.scale_down_stabilization_seconds
        return Condition(
            type=Type.SCALING,
            status=Status.TRUE,
            reason="ScaleDownPending",
            message=f"held by the {window:g}s stabilization window: {', '.join(pending_down)}",
        )
    return Condition(
        type=Type.SCALING, status=Status.FALSE, reason="Stable", message="every stage is at its recommended replicas"
    )


def _degraded(flow: spec.FlowSpec, outcomes: list[StageOutcome], health: Health) -> Condition:
    partition_limited = [o.partition_limited for o in outcomes if o.partition_limited is not None]
    cycles = flow.cycles()
    report = health.report
    if report is not None and report.stuck > 0:
        ids = ", ".join(report.stuck_order_ids[:5])
        return Condition(
            type=Type.DEGRADED,
            status=Status.TRUE,
            reason="StuckOrders",
            message=f"{report.stuck} orders in flight longer than {flow.health.stuck_after_seconds}s (e.g. {ids})",
        )
    if partition_limited:
        return Condition(
            type=Type.DEGRADED,
            status=Status.TRUE,
            reason="PartitionLimited",
            message="; ".join(partition_limited) + " (set scaling.growPartitions to grow them)",
        )
    if flow.health.order_service_url is not None and report is None:
        return Condition(
            type=Type.DEGRADED, status=Status.TRUE, reason=health.condition.reason, message=health.condition.message
        )
    if cycles:
        return Condition(
            type=Type.DEGRADED,
            status=Status.TRUE,
            reason="UpstreamCycle",
            message="upstream links form a cycle, ignored for prediction: " + "; ".join(" -> ".join(c) for c in cycles),
        )
    return Condition(
        type=Type.DEGRADED,
        status=Status.FALSE,
        reason="AsExpected",
        message="no stuck orders, no stage limited by partitions",
    )


def _fields(flow: spec.FlowSpec, outcomes: list[StageOutcome], health: Health, generation: Any) -> dict[str, Any]:
    stage_status = [o.entry for o in outcomes]
    lags = [o.lag for o in outcomes if o.lag is not None]
    return {
        "observedGeneration": generation,
        "transport": flow.transport.value,
        "readyStages": f"{sum(1 for st in stage_status if st.get('state') == 'Ok')}/{len(flow.stages)}",
        "totalLag": sum(lags) if lags else None,
        "totalReplicas": sum(o.replicas for o in outcomes if o.replicas is not None),
        "stages": stage_status,
        "flow": _strip_none(health.report.to_status()) if health.report is not None else None,
    }


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
