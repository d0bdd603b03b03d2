"""The flow at a glance, in a terminal: the twin of the ``OrderFlow`` resource's status, without Kubernetes.

Read exactly as the operator reads it — the order service's ``GET /flow`` through the operator's
``flowhealth``, each stage's backlog through its ``offsets`` reader, rates from two samples through its
``RateTracker`` — plus what a terminal can afford and a status cannot: the stuck orders grouped by the stage
they wait on (each diagnosed as ``orderflow trace`` does) and the dead letters by service and reason.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from orderflow.errors import OrderFlowError
from orderflow.events import catalog
from orderflow.observe import deadletters, trace
from orderflow.observe.reader import Reader
from orderflow.observe.target import Target
from orderflow_operator import errors as operator_errors
from orderflow_operator import flowhealth, offsets, rates


@dataclass(frozen=True, slots=True)
class Stage:
    service: str
    group: str
    topics: tuple[str, ...]
    lag: int | None
    arrival_per_s: float | None
    consume_per_s: float | None
    error: str | None = None


@dataclass(slots=True)
class FlowReport:
    in_flight: int | None
    oldest_in_flight_age_seconds: float | None
    stuck: int | None
    stuck_after_seconds: int
    stages: list[Stage]
    # "<service>: <stage>" -> the stuck orders waiting there (an order waiting on two services is under both)
    stuck_by_stage: dict[str, list[str]]
    dead_letters: dict[str, dict[str, int]]
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _queries(target: Target) -> list[offsets.GroupQuery]:
    return [
        offsets.GroupQuery(stage=s, group=target.group(s), topics=catalog.topics_consumed_by(s, target.prefix))
        for s in catalog.SERVICES
    ]


def _stages(target: Target, reader: Reader, *, interval: float, timeout: float) -> list[Stage]:
    queries = _queries(target)
    trackers = {q.stage: rates.RateTracker(span=interval) for q in queries}
    last: dict[str, offsets.StageOffsets | operator_errors.OperatorError] = {}
    for sample in range(2):
        if sample:
            time.sleep(interval)  # a rate needs two readings; the operator keeps them between ticks
        last = offsets.read(reader.admin, queries, timeout=timeout)
        now = time.monotonic()
        for stage, read in last.items():
            if isinstance(read, offsets.StageOffsets):
                trackers[stage].add(rates.Sample(now, read.end_total, read.committed_total))
    out = []
    for q in queries:
        read = last[q.stage]
        if isinstance(read, offsets.StageOffsets):
            tracker = trackers[q.stage]
            out.append(Stage(q.stage, q.group, q.topics, read.lag, tracker.arrival, tracker.consume))
        else:
            out.append(Stage(q.stage, q.group, q.topics, None, None, None, str(read)))
    return out


def report(target: Target, reader: Reader, *, stuck_after_seconds: int = 60, interval: float = 1.0,
           timeout: float = 10.0) -> FlowReport:
    """The flow's health, per-stage backlog and rates, stuck orders by stage, dead letters by reason."""
    problems: list[str] = []
    health: flowhealth.FlowHealth | None = None
    try:
        health = flowhealth.fetch(target.url("order"), stuck_after_seconds=stuck_after_seconds, timeout=timeout)
    except operator_errors.FlowHealthUnavailable as e:
        problems.append(str(e))
    stages: list[Stage] = []
    try:
        stages = _stages(target, reader, interval=interval, timeout=timeout)
    except operator_errors.OperatorError as e:
        problems.append(str(e))
    by_stage: dict[str, list[str]] = {}
    for order_id in health.stuck_order_ids if health else ():
        try:
            story = trace.trace(target, order_id, reader=reader)
        except OrderFlowError as e:
            problems.append(f"{order_id}: {e}")
            continue
        for wait in story.waits or [trace.Wait("order", "record", (), "settled since")]:
            by_stage.setdefault(f"{wait.service}: {wait.stage}", []).append(order_id)
    letters = deadletters.read(reader, target.prefix)
    counts: dict[str, Counter[str]] = {}
    for letter in letters:
        counts.setdefault(letter.service, Counter())[letter.reason] += 1
    return FlowReport(
        in_flight=health.in_flight if health else None,
        oldest_in_flight_age_seconds=health.oldest_in_flight_age_seconds if health else None,
        stuck=health.stuck if health else None,
        stuck_after_seconds=stuck_after_seconds,
        stages=stages,
        stuck_by_stage=dict(sorted(by_stage.items())),
        dead_letters={s: dict(sorted(c.items())) for s, c in sorted(counts.items())},
        errors=problems,
    )
