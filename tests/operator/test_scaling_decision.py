"""The scaling decision as a pure function: properties that must hold for every input, and a few examples.

Within bounds and partitions, monotone in lag, stable under steady load, scale-down only after the
stabilization window, an operator restart never shortcuts the window, and the flow-aware terms only ever add.
"""

from __future__ import annotations

import dataclasses
import itertools

from hypothesis import given
from hypothesis import strategies as st

from orderflow_operator.scaling import Inputs, Policy, Reason, Recommendation, decide

WINDOW = 30.0


@st.composite
def inputs(draw: st.DrawFn) -> Inputs:
    max_replicas = draw(st.integers(1, 50))
    return Inputs(
        lag=draw(st.integers(0, 10**7)),
        partitions=draw(st.integers(1, 64)),
        current=draw(st.integers(0, 80)),
        min_replicas=draw(st.integers(0, max_replicas)),
        max_replicas=max_replicas,
        lag_per_replica=draw(st.integers(1, 10**4)),
        rate_per_replica=draw(st.none() | st.integers(1, 10**4)),
        arrival_rate=draw(st.none() | st.floats(0, 10**6, allow_nan=False)),
        upstream_rate=draw(st.none() | st.floats(0, 10**6, allow_nan=False)),
        policy=draw(st.sampled_from(Policy)),
        grow_partitions=draw(st.booleans()),
    )


histories = st.lists(
    st.builds(Recommendation, at=st.floats(0, 200, allow_nan=False), replicas=st.integers(0, 80)), max_size=8
).map(lambda rs: tuple(sorted(rs, key=lambda r: r.at)))


def cap(i: Inputs) -> int:
    return min(i.max_replicas, i.partitions)


@given(inputs(), histories, st.floats(200, 400))
def test_always_within_bounds_and_partitions(i: Inputs, history: tuple[Recommendation, ...], now: float) -> None:
    d = decide(i, history=history, now=now, window=WINDOW)
    assert d.replicas <= cap(i)
    assert min(i.min_replicas, cap(i)) <= d.recommendation <= cap(i)
    assert d.replicas >= min(i.min_replicas, cap(i))


@given(inputs(), histories, st.floats(200, 400), st.integers(0, 10**7))
def test_monotone_in_lag(i: Inputs, history: tuple[Recommendation, ...], now: float, extra: int) -> None:
    low = decide(i, history=history, now=now, window=WINDOW)
    high = decide(dataclasses.replace(i, lag=i.lag + extra), history=history, now=now, window=WINDOW)
    assert low.replicas <= high.replicas
    assert low.recommendation <= high.recommendation


@given(inputs(), st.floats(0, 10**6, allow_nan=False))
def test_monotone_in_arrival_rates(i: Inputs, extra: float) -> None:
    base = decide(i, history=(), now=100.0, window=WINDOW)
    more = decide(
        dataclasses.replace(
            i, arrival_rate=(i.arrival_rate or 0) + extra, upstream_rate=(i.upstream_rate or 0) + extra
        ),
        history=(),
        now=100.0,
        window=WINDOW,
    )
    assert base.recommendation <= more.recommendation


@given(inputs(), st.integers(5, 60), st.floats(0.5, 10))
def test_stable_under_steady_load(i: Inputs, ticks: int, interval: float) -> None:
    """The same observation tick after tick never flaps: replicas move in one direction only (up at once; or
    down to the cap at once, then to the recommendation after the window), and then stay."""
    history: tuple[Recommendation, ...] = ()
    current = i.current
    seen = [current]
    for n in range(ticks):
        d = decide(dataclasses.replace(i, current=current), history=history, now=n * interval, window=WINDOW)
        history, current = d.history, d.replicas
        seen.append(current)
    changes = [b - a for a, b in itertools.pairwise(seen) if b != a]
    assert len(changes) <= 2
    assert all(c > 0 for c in changes) or all(c < 0 for c in changes), seen
    # Once settled, it stays: the last decisions all agree.
    if ticks * interval > WINDOW + 2 * interval:
        assert seen[-1] == seen[-2]


@given(inputs(), st.floats(0.5, 5))
def test_scale_down_only_after_the_window(i: Inputs, interval: float) -> None:
    """Busy (lag far above target) until t0, then drained: replicas drop only once t0 + window has passed."""
    busy = dataclasses.replace(i, lag=10**9, current=min(i.min_replicas, cap(i)), arrival_rate=None, upstream_rate=None)
    d = decide(busy, history=(), now=0.0, window=WINDOW)
    history, current = d.history, d.replicas
    assert current == cap(busy)  # scale up at once
    idle = dataclasses.replace(busy, lag=0)
    t = interval
    while t < 3 * WINDOW:
        d = decide(dataclasses.replace(idle, current=current), history=history, now=t, window=WINDOW)
        if d.replicas < current:
            assert t >= WINDOW, f"scaled down at {t}s, before the {WINDOW}s window after the last busy tick"
        history, current = d.history, d.replicas
        t += interval
    assert current == min(idle.min_replicas, cap(idle))


@given(inputs(), st.floats(0, 1000))
def test_restart_never_shortcuts_the_window(i: Inputs, now: float) -> None:
    """An operator restart forgets the history: the current replicas then count as just recommended."""
    d = decide(
        dataclasses.replace(i, lag=0, arrival_rate=None, upstream_rate=None),
        history=(),
        now=now,
        window=WINDOW,
    )
    assert d.replicas == min(i.current, cap(i)) or d.replicas >= i.current


def test_lag_burst_scales_up_at_once_to_the_lag_target() -> None:
    i = Inputs(lag=1000, partitions=8, current=1, min_replicas=1, max_replicas=6, lag_per_replica=300)
    d = decide(i, history=(), now=0.0, window=WINDOW)
    assert (d.replicas, d.reason, d.changed) == (4, Reason.LAG, True)


def test_capped_by_partitions_and_asks_to_grow_when_allowed() -> None:
    i = Inputs(lag=10_000, partitions=3, current=1, min_replicas=1, max_replicas=10, lag_per_replica=100)
    d = decide(i, history=(), now=0.0, window=WINDOW)
    assert d.replicas == 3 and d.partition_limited and d.grow_partitions_to is None
    assert "capped at 3 by partitions" in d.message
    grow = decide(dataclasses.replace(i, grow_partitions=True), history=(), now=0.0, window=WINDOW)
    assert grow.grow_partitions_to == 10


def test_replicas_above_the_partition_count_come_down_at_once() -> None:
    i = Inputs(lag=0, partitions=2, current=5, min_replicas=1, max_replicas=10, lag_per_replica=100)
    d = decide(i, history=(Recommendation(0.0, 5),), now=1.0, window=WINDOW)
    assert d.replicas == 2 and d.reason is Reason.PARTITIONS


def test_flow_aware_sizes_for_the_upstream_rate_before_lag_builds() -> None:
    i = Inputs(
        lag=0,
        partitions=12,
        current=1,
        min_replicas=1,
        max_replicas=12,
        lag_per_replica=1000,
        rate_per_replica=100,
        arrival_rate=0.0,
        upstream_rate=750.0,
    )
    d = decide(i, history=(), now=0.0, window=WINDOW)
    assert (d.replicas, d.reason) == (8, Reason.UPSTREAM_RATE)
    lag_only = decide(dataclasses.replace(i, policy=Policy.LAG_ONLY), history=(), now=0.0, window=WINDOW)
    assert lag_only.replicas == 1


def test_pending_scale_down_is_reported_as_stabilizing() -> None:
    i = Inputs(lag=0, partitions=8, current=4, min_replicas=1, max_replicas=8, lag_per_replica=100)
    d = decide(i, history=(Recommendation(0.0, 4),), now=10.0, window=WINDOW)
    assert (d.replicas, d.recommendation, d.reason) == (4, 1, Reason.STABILIZING)
