"""Rates from offset progress, and the flow-aware prediction built on them.

A stage's arrival rate is the growth of the end offsets of its topics; its consume rate the growth of its
group's committed offsets. Both come from samples the operator keeps in memory between ticks (a restarted
operator needs one more tick before it knows a rate; until then the rate is ``None`` and only lag counts).

Flow-aware prediction: what a stage's upstream stages take in now is what they will produce into its topics a
moment later. So a stage with ``upstream`` is also sized for ``ratio x sum(upstream arrival)``, where an
upstream stage's arrival is itself the larger of its measured and its own predicted arrival: a burst entering
the first stage of a chain sizes every stage of the chain at once, before any of their topics grow. Links
that close a cycle are ignored for the prediction (the spec reports them).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable, Mapping

from orderflow_operator.spec import FlowSpec, StageName

__all__ = [
    "RateTracker",
    "Sample",
    "upstream_rates",
]


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float
    end_total: int
    committed_total: int


class RateTracker:
    """Samples of one stage's offset sums; rates over the span of the kept samples.

    Keeps the samples of the last ``span`` seconds (the operator uses one reconcile interval: the rate between
    the last two ticks, so a ramp is seen one tick after it starts; the scale-down window absorbs the noise).
    Counters that go backwards (a topic deleted and recreated, a group's offsets reset) start afresh.
    """

    def __init__(self, span: float) -> None:
        self.span = span
        self._samples: collections.deque[Sample] = collections.deque()

    def add(self, sample: Sample) -> None:
        last = self._samples[-1] if self._samples else None
        if last is not None and (sample.end_total < last.end_total or sample.at <= last.at):
            self._samples.clear()
        self._samples.append(sample)
        # Keep one sample at or beyond the span, so the rate always covers it.
        while len(self._samples) > 2 and sample.at - self._samples[1].at >= self.span:
            self._samples.popleft()

    def _rate(self, counter: Callable[[Sample], int]) -> float | None:
        if len(self._samples) < 2:
            return None
        first, last = self._samples[0], self._samples[-1]
        elapsed = last.at - first.at
        if elapsed <= 0:
            return None
        return max(counter(last) - counter(first), 0) / elapsed

    @property
    def arrival(self) -> float | None:
        """Messages per second appended to the stage's topics."""
        return self._rate(lambda s: s.end_total)

    @property
    def consume(self) -> float | None:
        """Messages per second the stage's group committed."""
        return self._rate(lambda s: s.committed_total)


def upstream_rates(flow: FlowSpec, arrival: Mapping[str, float | None]) -> dict[StageName, float | None]:
    """For each stage with upstream stages: ``ratio x sum(effective arrival of each upstream stage)``.

    ``None`` for a stage without upstream links, or when none of its upstream stages has a known rate.
    """
    back_edges = {(cycle[-1], cycle[0]) for cycle in flow.cycles()}
    links = {s.name: tuple(u for u in s.upstream if (s.name, u) not in back_edges) for s in flow.stages}
    ratio = {s.name: s.upstream_ratio_percent / 100.0 for s in flow.stages}

    @functools.cache
    def predicted(name: StageName) -> float | None:
        known = [r for r in (effective(u) for u in links[name]) if r is not None]
        return ratio[name] * sum(known) if known else None

    @functools.cache
    def effective(name: StageName) -> float | None:
        values = [r for r in (arrival.get(name), predicted(name)) if r is not None]
        return max(values) if values else None

    return {s.name: predicted(s.name) for s in flow.stages}
