"""Kafka going away and coming back: KafkaReachable and Ready flip with a reason and an Event, replicas stay
where they were (no decision on data the operator does not have), the operator keeps running, and it recovers
on its own once the broker is back. Uses a private broker, so killing it disturbs no other test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orderflow_dev import operatorkit as kit
from orderflow_dev.kafka import LocalBroker

pytestmark = pytest.mark.kafka  # and envtest, which the envtest plugin adds by fixture


@pytest.fixture
def private_broker() -> Iterator[LocalBroker]:
    with LocalBroker() as broker:
        yield broker


def test_kafka_outage_flips_kafka_reachable_and_ready_then_recovers(
    k8s_api_client: Any,
    flow_namespace: str,
    operator_in: kit.OperatorProcess,
    private_broker: LocalBroker,
    unique_prefix: str,
) -> None:
    ns, api = flow_namespace, k8s_api_client
    bootstrap = private_broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    s = kit.stage("inventory", unique_prefix, lagPerReplica=10)
    kit.create_topic(admin, s["topics"][0], 3)
    kit.commit(admin, s["consumerGroup"], s["topics"][0], {0: 0, 1: 0, 2: 0})
    kit.produce(bootstrap, s["topics"][0], 25)
    kit.make_deployment(api, ns, s["deployment"])
    kit.create_flow(
        api,
        ns,
        kit.orderflow("flow", bootstrap, [s], scaling={"intervalSeconds": 1, "scaleDownStabilizationSeconds": 2}),
    )
    kit.wait_condition(api, ns, "flow", "Ready", "True", timeout=15)
    kit.wait_for(lambda: kit.replicas(api, ns, s["deployment"]) == 3, timeout=10, message="not scaled to 3")

    private_broker.kill()
    killed_at = time.monotonic()
    # The request timeout is 2 s at a 1 s interval: the outage shows within a few seconds.
    flow = kit.wait_condition(api, ns, "flow", "KafkaReachable", "False", reason="BrokerUnavailable", timeout=20)
    detected = time.monotonic() - killed_at
    ready = kit.condition(flow, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "KafkaUnreachable")
    assert bootstrap.split(":")[0] in kit.condition(flow, "KafkaReachable")["message"] or ready["message"]  # type: ignore[index]
    assert kit.condition(flow, "Scaling")["status"] == "Unknown"  # type: ignore[index]
    assert "totalLag" not in flow["status"]
    assert kit.stage_status(flow, "inventory")["state"] == "BrokerUnavailable"  # type: ignore[index]
    kit.wait_event(api, ns, "flow", "BrokerUnavailable", etype="Warning", timeout=10)
    kit.wait_event(api, ns, "flow", "KafkaUnreachable", etype="Warning", timeout=10)

    # Several ticks later (longer than the 2 s window): still no scale-down on missing data, still alive.
    kit.wait_for(
        lambda: time.monotonic() - killed_at > detected + 4, timeout=30, interval=0.25, message="clock stopped"
    )
    assert kit.replicas(api, ns, s["deployment"]) == 3
    assert operator_in.alive

    private_broker.restart()
    restarted_at = time.monotonic()
    flow = kit.wait_condition(api, ns, "flow", "Ready", "True", reason="Reconciled", timeout=30)
    recovered = time.monotonic() - restarted_at
    assert kit.condition(flow, "KafkaReachable")["status"] == "True"  # type: ignore[index]
    assert flow["status"]["totalLag"] == 25
    kit.wait_event(api, ns, "flow", "Connected", etype="Normal", timeout=10)
    assert kit.replicas(api, ns, s["deployment"]) == 3
    assert operator_in.alive
    print(f"\noutage seen after {detected:.1f}s; recovered {recovered:.1f}s after the broker answered again")
