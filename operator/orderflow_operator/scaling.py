"""The scaling decision, as a pure function.

Everything that makes the operator's replica choice is here, free of Kafka, Kubernetes and clocks, so the
properties that matter (always within bounds and partitions, monotone in lag, stable under steady load,
scale-down only after the stabilization window) can be checked by property-based tests and replayed by the
benchmark on recorded timelines.

The policy:

- lag-based: ``ceil(lag / lagPerReplica)``;
- rate-based (flow-aware policy, needs ``ratePerReplica``): ``ceil(arrival / ratePerReplica)`` for the
  stage's own measured arrival rate, and the same for the rate its upstream stages predict, so a downstream
  stage grows while its upstream is still working through the burst, before its own lag builds up;
- the largest of those, clamped to ``[min(minReplicas, cap), cap]`` with ``cap = min(maxReplicas,
  partitions)`` (a consumer beyond the partition count is idle);
- scale up at once; scale down only to the largest recommendation made within the stabilization window (the
  HPA's rule), so a drained stage shrinks one window after its last busy tick and a noisy steady load never
  flaps.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence

__all__ = [
    "Decision",
    "Inputs",
    "Policy",
    "Reason",
    "Recommendation",
    "decide",
]


class Policy(enum.StrEnum):
    """Which signals drive the recommendation."""

    FLOW_AWARE = "FlowAware"
    LAG_ONLY = "LagOnly"


class Reason(enum.StrEnum):
    """Why the decision is what it is; also used as the Event reason suffix and in ``status``."""

    LAG = "LagAboveTarget"
    ARRIVAL_RATE = "ArrivalRate"
    UPSTREAM_RATE = "UpstreamArrivalRate"
    MINIMUM = "AtMinReplicas"
    MAXIMUM = "CappedByMaxReplicas"
    PARTITIONS = "CappedByPartitions"
    STABILIZING = "ScaleDownStabilizing"
    STEADY = "Steady"


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """A bounded recommendation made at ``at`` (seconds on any monotonic clock)."""

    at: float
    replicas: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inputs:
    """What one stage looks like at one tick.

    ``arrival_rate`` is the stage's own measured arrival (end-offset growth of its topics, messages/s) and
    ``upstream_rate`` the arrival its upstream stages predict for it (already scaled by the stage's ratio);
    ``None`` means not known yet (one sample only) and counts as zero.
    """

    lag: int
    partitions: int
    current: int
    min_replicas: int
    max_replicas: int
    lag_per_replica: int
    rate_per_replica: float | None = None
    arrival_rate: float | None = None
    upstream_rate: float | None = None
    policy: Policy = Policy.FLOW_AWARE
    grow_partitions: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Decision:
    """The outcome for one stage at one tick.

    ``replicas`` is what the Deployment should have now; ``recommendation`` is the bounded wish before the
    scale-down window is applied; ``wanted`` is the unbounded wish. ``grow_partitions_to`` is set when the
    policy asks for more partitions than the topics have (and the spec allows growing them); the caller grows
    the topics, then decides again with the new count. ``history`` is the window to pass to the next call.
    """

    replicas: int
    recommendation: int
    wanted: int
    reason: Reason
    message: str
    partition_limited: bool
    grow_partitions_to: int | None
    history: tuple[Recommendation, ...]
    current: int

    @property
    def changed(self) -> bool:
        return self.replicas != self.current


def _ceil_div(value: float, per: float) -> int:
    if value <= 0:
        return 0
    return math.ceil(value / per - 1e-9)


def decide(
    inputs: Inputs,
    *,
    history: Sequence[Recommendation],
    now: float,
    window: float,
) -> Decision:
    """Decide the replicas of one stage. Pure: same arguments, same answer.

    ``history`` holds the recommendations of earlier ticks (the caller keeps it between calls from
    ``Decision.history``). An empty history (a fresh start or an operator restart) counts as if the current
    replica count had just been recommended, so a restart never shortcuts the scale-down window.
    """
    if inputs.partitions < 0 or inputs.current < 0 or inputs.lag_per_replica < 1:
        raise ValueError("partitions and current must be >= 0, lag_per_replica >= 1")
    # The first of the largest wins, so lag is named when it ties with a rate.
    wanted, driver, why = max(_candidates(inputs), key=lambda c: c[0])
    cap = min(inputs.max_replicas, inputs.partitions)
    floor = min(inputs.min_replicas, cap)
    recommendation = min(max(wanted, floor), cap)
    partition_limited = wanted > inputs.partitions and inputs.partitions < inputs.max_replicas
    grow_to: int | None = None
    if partition_limited and inputs.grow_partitions:
        grow_to = min(wanted, inputs.max_replicas)

    seeded = list(history) if history else [Recommendation(now, inputs.current)]
    kept = (*tuple(r for r in seeded if now - r.at < window), Recommendation(now, recommendation))
    if recommendation >= inputs.current:
        replicas = recommendation
    else:
        # Scale down only as far as the busiest recommendation still inside the window allows.
        replicas = min(inputs.current, max(r.replicas for r in kept))
    replicas = min(replicas, cap)
    bounds = _Bounds(wanted=wanted, cap=cap, floor=floor, recommendation=recommendation, window=window,
                     cap_reason=Reason.PARTITIONS if cap == inputs.partitions < inputs.max_replicas else Reason.MAXIMUM)
    reason, message = _explain(inputs.current, replicas, bounds, driver, why)
    return Decision(
        replicas=replicas,
        recommendation=recommendation,
        wanted=wanted,
        reason=reason,
        message=message,
        partition_limited=partition_limited,
        grow_partitions_to=grow_to,
        history=kept,
        current=inputs.current,
    )


def _candidates(inputs: Inputs) -> list[tuple[int, Reason, str]]:
    """What each signal asks for: lag always; the stage's own and its upstream's arrival rate under FlowAware."""
    lag_based = _ceil_div(max(inputs.lag, 0), inputs.lag_per_replica)
    candidates: list[tuple[int, Reason, str]] = [
        (lag_based, Reason.LAG, f"lag {inputs.lag} / {inputs.lag_per_replica} per replica"),
    ]
    if inputs.policy is Policy.FLOW_AWARE and inputs.rate_per_replica:
        rpr = inputs.rate_per_replica
        if inputs.arrival_rate is not None:
            candidates.append(
                (
                    _ceil_div(inputs.arrival_rate, rpr),
                    Reason.ARRIVAL_RATE,
                    f"arrival {inputs.arrival_rate:.1f}/s / {rpr:g}/s per replica",
                )
            )
        if inputs.upstream_rate is not None:
            candidates.append(
                (
                    _ceil_div(inputs.upstream_rate, rpr),
                    Reason.UPSTREAM_RATE,
                    f"upstream arrival {inputs.upstream_rate:.1f}/s / {rpr:g}/s per replica",
                )
            )
    return candidates


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Bounds:
    """The numbers a decision is explained by: the unbounded wish, the cap and floor, the bounded wish."""

    wanted: int
    cap: int
    floor: int
    recommendation: int
    window: float
    cap_reason: Reason


def _explain(current: int, replicas: int, b: _Bounds, driver: Reason, why: str) -> tuple[Reason, str]:
    """The reason and message of going from ``current`` to ``replicas`` replicas."""
    note = "" if b.wanted <= b.cap else (
        f"; capped at {b.cap} by {'partitions' if b.cap_reason is Reason.PARTITIONS else 'maxReplicas'}"
    )
    if replicas > current:
        if b.wanted >= replicas:
            return driver, why + note
        return Reason.MINIMUM, f"{why}; raised to minReplicas {b.floor}"
    if replicas < current:
        if replicas == b.cap and current > b.cap:
            return b.cap_reason, f"{current} replicas exceed the cap of {b.cap}"
        if replicas > b.recommendation:
            return driver, f"{why}; the {b.window:g}s window still holds {replicas}"
        if b.wanted >= b.floor:
            return driver, why
        return Reason.MINIMUM, f"{why}; kept at minReplicas {b.floor}"
    if current > b.recommendation:
        return Reason.STABILIZING, f"scale-down to {b.recommendation} held by the {b.window:g}s window"
    if b.wanted > b.cap:
        return b.cap_reason, why + note
    return Reason.STEADY, why
