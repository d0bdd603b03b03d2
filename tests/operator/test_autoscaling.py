"""Scaling against the real broker and the real API server, with the operator running as a process.

A lag burst scales a stage up within one reconcile interval, never beyond its partitions; draining the lag
scales it down only after the stabilization window; growPartitions grows the topic instead of stopping at
its partition count; the flow-aware policy sizes a downstream stage for what its upstream is taking in before
a single message reaches the downstream topic (and the lag-only policy does not).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orderflow_dev import operatorkit as kit

pytestmark = pytest.mark.kafka  # and envtest, which the envtest plugin adds by fixture

#: Time the operator may take on top of the interval: a tick's Kafka reads and the scale patch (tens of ms
#: here), plus scheduling noise on a busy 2-core machine.
SLACK = 1.5


def test_lag_burst_scales_up_within_one_interval_and_down_only_after_the_window(
    k8s_api_client: Any,
    flow_namespace: str,
    operator_in: kit.OperatorProcess,
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    unique_prefix: str,
) -> None:
    ns, api = flow_namespace, k8s_api_client
    interval, window, partitions = 2, 8, 4
    s = kit.stage("inventory", unique_prefix, maxReplicas=8, lagPerReplica=100)
    topic, group, deployment = s["topics"][0], s["consumerGroup"], s["deployment"]
    kit.create_topic(kafka_admin, topic, partitions)
    kit.commit(kafka_admin, group, topic, dict.fromkeys(range(partitions), 0))
    kit.make_deployment(api, ns, deployment, replicas=1)
    kit.create_flow(
        api,
        ns,
        kit.orderflow(
            "flow",
            kafka_bootstrap,
            [s],
            scaling={"intervalSeconds": interval, "scaleDownStabilizationSeconds": window},
        ),
    )
    kit.wait_condition(api, ns, "flow", "Ready", "True", timeout=15)
    kit.wait_condition(api, ns, "flow", "Scaling", "False", reason="Stable", timeout=10)
    assert kit.replicas(api, ns, deployment) == 1

    with kit.sampling_max(lambda: kit.replicas(api, ns, deployment)) as seen:
        kit.produce(kafka_bootstrap, topic, 1000)  # lag 1000 -> 10 replicas wanted, 4 partitions
        burst_at = time.monotonic()
        kit.wait_for(
            lambda: kit.replicas(api, ns, deployment) == partitions,
            timeout=interval + SLACK,
            message=lambda: f"not scaled to {partitions} within one interval: {kit.replicas(api, ns, deployment)}",
        )
        reaction = time.monotonic() - burst_at

        flow = kit.wait_condition(api, ns, "flow", "Degraded", "True", reason="PartitionLimited", timeout=10)
        st = kit.stage_status(flow, "inventory")
        assert st is not None
        assert (st["lag"], st["partitions"], st["replicas"], st["desiredReplicas"]) == (1000, 4, 4, 4)
        assert st["lastScaleReason"] == "LagAboveTarget" and st["lastScaleTime"]
        up = kit.wait_event(api, ns, "flow", "ScaledUp", etype="Normal", timeout=10)
        assert f"Deployment {deployment} 1 -> 4 replicas" in up.message and "capped at 4 by partitions" in up.message

        kit.commit_at_end(kafka_admin, group, topic)  # the consumers caught up
        drained_at = time.monotonic()
        kit.wait_condition(api, ns, "flow", "Scaling", "True", reason="ScaleDownPending", timeout=interval + SLACK)
        assert kit.replicas(api, ns, deployment) == partitions
        kit.wait_for(
            lambda: kit.replicas(api, ns, deployment) == 1,
            timeout=window + 2 * interval + SLACK,
            message=lambda: f"not scaled down after the window: {kit.replicas(api, ns, deployment)}",
        )
        held = time.monotonic() - drained_at

    # The last busy recommendation came at most one interval before the drain was seen.
    assert held >= window - interval, f"scaled down {held:.1f}s after draining, inside the {window}s window"
    assert max(seen) <= partitions, f"replicas went above the {partitions} partitions: {max(seen)}"
    down = kit.wait_event(api, ns, "flow", "ScaledDown", etype="Normal", timeout=10)
    assert "4 -> 1 replicas" in down.message
    flow = kit.wait_condition(api, ns, "flow", "Degraded", "False", timeout=10)
    assert kit.stage_status(flow, "inventory")["lag"] == 0  # type: ignore[index]
    print(f"\nreaction {reaction:.2f}s (interval {interval}s); scale-down {held:.1f}s after drain (window {window}s)")
    assert operator_in.alive


def test_grow_partitions_instead_of_stopping_at_the_partition_count(
    k8s_api_client: Any,
    flow_namespace: str,
    operator_in: kit.OperatorProcess,
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    unique_prefix: str,
) -> None:
    ns, api = flow_namespace, k8s_api_client
    s = kit.stage("billing", unique_prefix, maxReplicas=5, lagPerReplica=100)
    topic, group, deployment = s["topics"][0], s["consumerGroup"], s["deployment"]
    kit.create_topic(kafka_admin, topic, 2)
    kit.commit(kafka_admin, group, topic, {0: 0, 1: 0})
    kit.produce(kafka_bootstrap, topic, 800)
    kit.make_deployment(api, ns, deployment)
    kit.create_flow(
        api,
        ns,
        kit.orderflow(
            "flow",
            kafka_bootstrap,
            [s],
            scaling={"intervalSeconds": 1, "scaleDownStabilizationSeconds": 60, "growPartitions": True},
        ),
    )
    kit.wait_for(lambda: kit.replicas(api, ns, deployment) == 5, timeout=15, message="not scaled to maxReplicas 5")
    assert kit.partitions_of(kafka_admin, topic) == 5
    grown = kit.wait_event(api, ns, "flow", "PartitionsGrown", timeout=10)
    assert f"grew {topic} to 5 partitions" in grown.message
    flow = kit.wait_condition(api, ns, "flow", "Degraded", "False", timeout=10)
    assert kit.stage_status(flow, "billing")["partitions"] == 5  # type: ignore[index]


def _two_stage_flow(prefix: str, bootstrap: str, policy: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    upstream = kit.stage("inventory", prefix, maxReplicas=8, lagPerReplica=100_000, ratePerReplica=100)
    downstream = kit.stage(
        "shipping", prefix, maxReplicas=8, lagPerReplica=100_000, ratePerReplica=50, upstream=["inventory"]
    )
    flow = kit.orderflow(
        f"flow-{policy.lower()}",
        bootstrap,
        [upstream, downstream],
        scaling={"intervalSeconds": 1, "scaleDownStabilizationSeconds": 60, "policy": policy},
    )
    return upstream, downstream, flow


def test_flow_aware_scales_downstream_before_its_lag_builds_and_lag_only_does_not(
    k8s_api_client: Any,
    flow_namespace: str,
    operator_in: kit.OperatorProcess,
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    unique_prefix: str,
) -> None:
    """200 orders/s reach the upstream stage; nothing has reached the downstream topic yet. Flow-aware: the
    downstream stage (50/s per replica) goes to 4 replicas from the upstream's arrival rate; lag-only: the
    lag is tiny, so both stay at 1."""
    ns, api = flow_namespace, k8s_api_client
    flows = {}
    for policy in ("FlowAware", "LagOnly"):
        up, down, flow = _two_stage_flow(f"{unique_prefix}-{policy.lower()}", kafka_bootstrap, policy)
        for st in (up, down):
            kit.create_topic(kafka_admin, st["topics"][0], 8)
            kit.commit(kafka_admin, st["consumerGroup"], st["topics"][0], dict.fromkeys(range(8), 0))
            kit.make_deployment(api, ns, st["deployment"])
        kit.create_flow(api, ns, flow)
        flows[policy] = (up, down, flow)
    for _, _, flow in flows.values():
        kit.wait_condition(api, ns, flow["metadata"]["name"], "Ready", "True", timeout=15)

    fa_up, fa_down, fa_flow = flows["FlowAware"]
    lo_up, lo_down, _ = flows["LagOnly"]
    with (
        kit.SteadyProducer(kafka_bootstrap, fa_up["topics"][0], rate=200) as fa_feed,
        kit.SteadyProducer(kafka_bootstrap, lo_up["topics"][0], rate=200),
    ):
        kit.wait_for(
            lambda: kit.replicas(api, ns, fa_down["deployment"]) >= 4,
            timeout=15,
            message=lambda: (
                "downstream not scaled from the upstream rate: "
                + str(kit.stage_status(kit.get_flow(api, ns, fa_flow["metadata"]["name"]), "shipping"))
            ),
        )
        assert kit.replicas(api, ns, fa_up["deployment"]) >= 2  # its own arrival: 200/s over 100/s per replica
        assert fa_feed.sent > 0
    assert kit.end_offsets(kafka_admin, fa_down["topics"][0]) == dict.fromkeys(range(8), 0)
    st = kit.stage_status(kit.get_flow(api, ns, fa_flow["metadata"]["name"]), "shipping")
    assert st is not None and st["lastScaleReason"] == "UpstreamArrivalRate" and st["lag"] == 0
    assert st["predictedArrivalRate"] > 100
    event = kit.wait_event(api, ns, fa_flow["metadata"]["name"], "ScaledUp", timeout=5)
    assert "UpstreamArrivalRate" in event.message or "ArrivalRate" in event.message
    assert kit.replicas(api, ns, lo_down["deployment"]) == 1
    assert kit.replicas(api, ns, lo_up["deployment"]) == 1
