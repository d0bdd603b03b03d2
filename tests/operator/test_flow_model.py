"""The flow model around the decision: spec defaults and rules, rates from offset progress, the flow-aware
prediction along upstream links (cycles ignored), conditions that keep lastTransitionTime, and the order
service's /flow answer."""

from __future__ import annotations

import pytest

from orderflow_operator import conditions, errors, flowhealth, rates, spec
from orderflow_operator.conditions import Condition, Status, Type


def flow(stages: list[dict[str, object]], **extra: object) -> spec.FlowSpec:
    return spec.parse({"kafka": {"bootstrapServers": "k:9092"}, "stages": stages, **extra})


def stage(name: str, **kw: object) -> dict[str, object]:
    return {
        "name": name,
        "deployment": name,
        "consumerGroup": f"g-{name}",
        "topics": [f"t.{name}"],
        "maxReplicas": 5,
        "lagPerReplica": 10,
        **kw,
    }


def test_spec_defaults_match_the_crd() -> None:
    f = flow([stage("a")])
    assert f.scaling.interval_seconds == 5 and f.scaling.scale_down_stabilization_seconds == 300
    assert f.scaling.policy is spec.Policy.FLOW_AWARE and not f.scaling.grow_partitions
    assert f.health.order_service_url is None and f.health.stuck_after_seconds == 300
    assert f.stages[0].min_replicas == 1 and f.stages[0].upstream_ratio_percent == 100


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([], "at least one stage"),
        ([stage("a"), stage("a")], "unique"),
        ([stage("a", minReplicas=6)], "minReplicas"),
        ([stage("a", lagPerReplica=0)], "lagPerReplica"),
        ([stage("a", upstream=["b"], ratePerReplica=1)], "not a stage"),
    ],
)
def test_spec_rules_are_checked_again_by_the_operator(stages: list[dict[str, object]], message: str) -> None:
    with pytest.raises(errors.InvalidSpec, match=message):
        flow(stages)


def test_rate_tracker_measures_growth_over_its_span_and_restarts_on_reset() -> None:
    t = rates.RateTracker(span=2.0)
    t.add(rates.Sample(0.0, 100, 50))
    assert t.arrival is None  # one sample: unknown, not zero
    t.add(rates.Sample(1.0, 200, 60))
    t.add(rates.Sample(2.0, 400, 70))
    assert t.arrival == pytest.approx(150.0) and t.consume == pytest.approx(10.0)
    t.add(rates.Sample(3.0, 400, 80))
    assert t.arrival == pytest.approx(100.0)  # over [1, 3]
    t.add(rates.Sample(4.0, 5, 0))  # topic recreated: offsets went back
    assert t.arrival is None


def test_upstream_prediction_propagates_along_a_chain_at_once() -> None:
    f = flow(
        [
            stage("a"),
            stage("b", upstream=["a"], ratePerReplica=10),
            stage("c", upstream=["b"], ratePerReplica=10, upstreamRatioPercent=50),
        ]
    )
    predicted = rates.upstream_rates(f, {"a": 100.0, "b": 0.0, "c": None})
    assert predicted == {"a": None, "b": 100.0, "c": 50.0}


def test_upstream_cycles_are_reported_and_ignored_for_prediction() -> None:
    f = flow(
        [
            stage("a", upstream=["c"], ratePerReplica=10),
            stage("b", upstream=["a"], ratePerReplica=10),
            stage("c", upstream=["b"], ratePerReplica=10),
        ]
    )
    assert [set(c) for c in f.cycles()] == [{"a", "b", "c"}]
    predicted = rates.upstream_rates(f, {"a": 10.0, "b": 20.0, "c": 30.0})
    assert all(v is not None and v < 1000 for v in predicted.values() if v is not None)


def test_conditions_keep_last_transition_time_unless_status_changes() -> None:
    ready = Condition(type=Type.READY, status=Status.TRUE, reason="Reconciled", message="ok")
    first, transitions = conditions.merge(None, [ready], observed_generation=1, now="2025-01-01T00:00:00Z")
    assert [c for c, _ in transitions] == [ready]
    same_status = Condition(type=Type.READY, status=Status.TRUE, reason="Other", message="still ok")
    second, transitions = conditions.merge(first, [same_status], observed_generation=2, now="2025-01-01T00:01:00Z")
    assert transitions == [] and second[0]["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    assert second[0]["reason"] == "Other" and second[0]["observedGeneration"] == 2
    down = Condition(type=Type.READY, status=Status.FALSE, reason="KafkaUnreachable", message="gone")
    third, transitions = conditions.merge(second, [down], observed_generation=2, now="2025-01-01T00:02:00Z")
    assert transitions == [(down, "True")] and third[0]["lastTransitionTime"] == "2025-01-01T00:02:00Z"


def test_flow_answer_is_parsed_and_a_wrong_shape_is_an_error() -> None:
    h = flowhealth.parse(
        {"in_flight": 3, "oldest_in_flight_age_seconds": 12.34, "stuck": 1, "stuck_order_ids": ["o-1"]}
    )
    assert h.to_status() == {
        "inFlight": 3,
        "oldestInFlightAgeSeconds": 12.3,
        "stuck": 1,
        "stuckOrderIds": ["o-1"],
    }
    empty = flowhealth.parse({"in_flight": 0, "oldest_in_flight_age_seconds": None, "stuck": 0, "stuck_order_ids": []})
    assert empty.oldest_in_flight_age_seconds is None
    for bad in ([], {"in_flight": "3", "stuck": 0}, {"in_flight": 1}, {"in_flight": 1, "stuck": True}):
        with pytest.raises(errors.FlowHealthUnavailable):
            flowhealth.parse(bad)


def test_flow_url_is_http_only() -> None:
    assert flowhealth.flow_url("http://o:8080/", 60) == "http://o:8080/flow?stuck_after_seconds=60"
    with pytest.raises(errors.FlowHealthUnavailable, match="http"):
        flowhealth.fetch("file:///etc/passwd", stuck_after_seconds=1, timeout=1)
