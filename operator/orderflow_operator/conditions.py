"""Status conditions by the Kubernetes API conventions.

A condition's ``lastTransitionTime`` moves only when its ``status`` changes; ``reason`` and ``message`` may
change in between. Merging the conditions of this tick into the previous ones is the one place that rule
lives, and it also reports which conditions transitioned, so the reconciler can post an Event for each
transition (and only then).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "ORDER",
    "Condition",
    "Status",
    "Type",
    "merge",
    "now_rfc3339",
]


class Type(enum.StrEnum):
    READY = "Ready"
    #: a Kafka flow's broker answered (the name every Kafka flow's status has always used)
    KAFKA_REACHABLE = "KafkaReachable"
    #: a NATS or RabbitMQ flow's broker answered
    BROKER_REACHABLE = "BrokerReachable"
    SCALING = "Scaling"
    DEGRADED = "Degraded"
    FLOW_HEALTH_AVAILABLE = "FlowHealthAvailable"


ORDER = tuple(Type)


class Status(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Condition:
    type: Type
    status: Status
    reason: str
    message: str

    def to_dict(self, *, observed_generation: int | None, last_transition_time: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type.value,
            "status": self.status.value,
            "reason": self.reason,
            "message": self.message[:1024],
            "lastTransitionTime": last_transition_time,
        }
        if observed_generation is not None:
            out["observedGeneration"] = observed_generation
        return out


def now_rfc3339(now: datetime.datetime | None = None) -> str:
    moment = now or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    previous: Sequence[Mapping[str, Any]] | None,
    current: Iterable[Condition],
    *,
    observed_generation: int | None,
    now: str,
) -> tuple[list[dict[str, Any]], list[tuple[Condition, str | None]]]:
    """Merge this tick's conditions into the stored ones.

    Returns the new ``status.conditions`` list (in :data:`ORDER`) and the transitions as
    ``(condition, previous status or None when it is new)``.
    """
    before = {c.get("type"): c for c in previous or () if isinstance(c, Mapping)}
    merged: list[dict[str, Any]] = []
    transitions: list[tuple[Condition, str | None]] = []
    for cond in sorted(current, key=lambda c: ORDER.index(c.type)):
        old = before.get(cond.type.value)
        old_status = old.get("status") if old else None
        if old is not None and old_status == cond.status.value and old.get("lastTransitionTime"):
            when = str(old["lastTransitionTime"])
        else:
            when = now
            transitions.append((cond, old_status))
        merged.append(cond.to_dict(observed_generation=observed_generation, last_transition_time=when))
    return merged, transitions
