"""Scaling by backlog on NATS JetStream and RabbitMQ: the real server, the real API server, the operator as a process.

Each test plays the stage's service through the transport seam, as the runtime does: it creates the channels,
joins the stage's group (which creates the group's JetStream consumers or RabbitMQ queues), and publishes events
the group has not consumed. The operator reads that backlog through the transport's ``backlog.read`` and scales
the stage's Deployment to ``ceil(backlog / lagPerReplica)`` within one interval; once the group has fetched and
settled everything, it scales back down after the stabilization window. A server that is not there is
``BrokerUnavailable``, and the replicas stay where they are. The Kafka counterpart is test_autoscaling.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from orderflow import transport
from orderflow.events import catalog, codec
from orderflow.runtime import config
from orderflow_dev import operatorkit as kit
from tests.support import events

#: Time the operator may take on top of the interval (a tick's reads and the scale patch, plus scheduling noise
#: on a busy 2-core machine); as in test_autoscaling.py.
SLACK = 1.5
MESSAGES, LAG_PER_REPLICA = 250, 50  # -> 5 replicas
INTERVAL, WINDOW = 2, 6


@dataclass
class Member:
    """The stage's service, as far as the broker can tell: a member of its group that fetches when told to."""

    link: transport.Transport
    subscription: transport.Subscription
    group: str
    channels: tuple[str, ...]
    prefix: str

    def publish_orders(self, count: int) -> None:
        records = [codec.encode(events.order_created(), prefix=self.prefix) for _ in range(count)]
        publisher = self.link.publisher("relay")
        try:
            acked, refused = publisher.publish(records)
        finally:
            publisher.close()
        assert (len(acked), refused) == (count, {}), f"published {len(acked)} of {count}: {refused}"

    def drain(self, count: int) -> None:
        """Fetch and settle ``count`` messages: the group has consumed everything."""
        taken = 0

        def more() -> bool:
            nonlocal taken
            batch = self.subscription.fetch(100, 0.5)
            self.subscription.settle(batch)
            taken += len(batch)
            return taken >= count

        kit.wait_for(more, timeout=30, interval=0, message=lambda: f"fetched {taken} of {count}")
        assert taken == count


def transport_env(name: str, url: str) -> dict[str, str]:
    """The ``ORDERFLOW_<NAME>_*`` variables a service of this run gets: the URL, and the options the server harness
    exports (the RabbitMQ harness exports its management API's URL, which the backlog reader needs)."""
    prefix = f"ORDERFLOW_{name.upper()}_"
    return {k: v for k, v in os.environ.items() if k.startswith(prefix)} | {config.TRANSPORTS[name]: url}


@pytest.fixture
def member(unique_prefix: str) -> Iterator[Any]:
    """``member(name, url)``: a joined member of ``<prefix>-inventory`` on the inventory stage's channels."""
    made: list[Member] = []

    def join(name: str, url: str) -> Member:
        settings = config.load("inventory", {
            "ORDERFLOW_TRANSPORT": name, "ORDERFLOW_TOPIC_PREFIX": unique_prefix, **transport_env(name, url),
        })
        link = transport.connect(settings, client_id=f"{unique_prefix}-test")
        link.ensure_channels(catalog.all_topics(unique_prefix), partitions=settings.topic_partitions, replication=1)
        channels = catalog.topics_consumed_by("inventory", unique_prefix)
        subscription = link.subscribe(channels, group=settings.group, on_assigned=lambda count: None)
        m = Member(link, subscription, settings.group, channels, unique_prefix)
        made.append(m)

        def joined() -> bool:
            assert subscription.fetch(10, 0.2) == []  # nothing published yet; fetching lets it join
            return subscription.joined.is_set()

        kit.wait_for(joined, timeout=30, interval=0, message=f"never joined group {settings.group} on {name}")
        return m

    yield join
    for m in made:
        m.subscription.close()
        m.link.close()


def _flow(name: str, stage: dict[str, Any], section: dict[str, Any]) -> dict[str, Any]:
    body = kit.orderflow(name, "unused:9092", [stage], scaling={"intervalSeconds": INTERVAL,
                                                                 "scaleDownStabilizationSeconds": WINDOW})
    del body["spec"]["kafka"]
    body["spec"]["transport"] = section
    return body


def _scales_by_backlog(
    api: client.ApiClient, ns: str, name: str, section: dict[str, Any], m: Member, *, outage: Callable[[], object]
) -> None:
    display = {"nats": "NATS JetStream", "rabbitmq": "RabbitMQ"}[name]
    stage = kit.stage("inventory", m.prefix, consumerGroup=m.group, topics=list(m.channels), maxReplicas=8,
                      lagPerReplica=LAG_PER_REPLICA)
    kit.make_deployment(api, ns, stage["deployment"], replicas=1)
    kit.create_flow(api, ns, _flow("flow", stage, section))
    flow = kit.wait_condition(api, ns, "flow", "Ready", "True", timeout=20)
    reachable = kit.condition(flow, "BrokerReachable")
    assert reachable is not None and reachable["message"].startswith(f"read backlog from {display} at ")
    assert flow["status"]["transport"] == name
    assert kit.stage_status(flow, "inventory")["lag"] == 0  # type: ignore[index]

    deployment = stage["deployment"]
    with kit.sampling_max(lambda: kit.replicas(api, ns, deployment)) as seen:
        m.publish_orders(MESSAGES)
        published_at = time.monotonic()
        wanted = -(-MESSAGES // LAG_PER_REPLICA)
        # JetStream answers the consumer's pending count exactly; RabbitMQ's management API serves sampled queue
        # statistics (every 0.5 s on the test server), which trail the queue by a second interval, and by a third
        # on a loaded machine (seen in CI: 118 of 250 messages reported 5.5 s after they were published).
        intervals = 1 if name == "nats" else 3
        kit.wait_for(
            lambda: kit.replicas(api, ns, deployment) == wanted,
            timeout=intervals * INTERVAL + SLACK,
            message=lambda: f"not scaled to {wanted} within {intervals} interval(s): "
            f"{kit.replicas(api, ns, deployment)}; {kit.stage_status(kit.get_flow(api, ns, 'flow'), 'inventory')}",
        )
        reaction = time.monotonic() - published_at
        # The operator scales the Deployment, then writes the flow's status: the status may trail the replicas by
        # that one patch, so it is waited for (briefly), not read at once.
        def inventory() -> dict[str, Any] | None:
            return kit.stage_status(kit.get_flow(api, ns, "flow"), "inventory")

        st = kit.wait_for(
            lambda: (s := inventory()) is not None and "lastScaleReason" in s and s,
            timeout=INTERVAL + SLACK,
            message=lambda: f"no scale reason in the status: {inventory()}",
        )
        assert (st["lag"], st["replicas"], st["lastScaleReason"]) == (MESSAGES, wanted, "LagAboveTarget")
        text = kit.wait_event(api, ns, "flow", "ScaledUp", etype="Normal", timeout=10).message or ""
        assert f"Deployment {deployment} 1 -> {wanted} replicas" in text and f"lag {MESSAGES}" in text

        m.drain(MESSAGES)
        drained_at = time.monotonic()
        kit.wait_for(
            lambda: kit.replicas(api, ns, deployment) == 1,
            timeout=WINDOW + 2 * INTERVAL + SLACK,
            message=lambda: f"not scaled down after the window: {kit.replicas(api, ns, deployment)}",
        )
        held = time.monotonic() - drained_at
    assert max(seen) == wanted, seen
    assert held >= WINDOW - INTERVAL, f"scaled down {held:.1f}s after draining, inside the {WINDOW}s window"
    assert kit.stage_status(kit.get_flow(api, ns, "flow"), "inventory")["lag"] == 0  # type: ignore[index]
    print(f"\n{name}: reaction {reaction:.2f}s (interval {INTERVAL}s); scale-down {held:.1f}s after drain")

    # The server goes away (the flow now names a port nobody listens on): a reason, no scaling.
    outage()
    flow = kit.wait_condition(api, ns, "flow", "BrokerReachable", "False", reason="BrokerUnavailable", timeout=20)
    assert kit.condition(flow, "Ready")["reason"] == "BrokerUnreachable"  # type: ignore[index]
    assert kit.replicas(api, ns, deployment) == 1


@pytest.mark.nats
def test_nats_backlog_scales_the_stage_up_at_once_and_down_after_the_window(
    k8s_api_client: Any, flow_namespace: str, operator_in: kit.OperatorProcess, nats_url: str, member: Any
) -> None:
    m = member("nats", nats_url)
    gone = {"transport": {"nats": {"url": f"nats://127.0.0.1:{kit.free_port()}"}}}
    _scales_by_backlog(k8s_api_client, flow_namespace, "nats", {"type": "nats", "nats": {"url": nats_url}}, m,
                       outage=lambda: kit.patch_flow_spec(k8s_api_client, flow_namespace, "flow", gone))
    assert operator_in.alive


@pytest.mark.rabbitmq
def test_rabbitmq_backlog_scales_the_stage_up_at_once_and_down_after_the_window(
    k8s_api_client: Any, flow_namespace: str, operator_in: kit.OperatorProcess, rabbitmq_url: str, member: Any
) -> None:
    """The URL carries credentials, so it reaches the operator the way the chart passes it: in the Secret the
    services load (``ORDERFLOW_RABBITMQ_URL`` and the other ``ORDERFLOW_RABBITMQ_*``), named by
    ``spec.transport.rabbitmq.secretRef``."""
    m = member("rabbitmq", rabbitmq_url)
    core = client.CoreV1Api(k8s_api_client)

    def secret(data: dict[str, str]) -> client.V1Secret:
        return client.V1Secret(metadata=client.V1ObjectMeta(name="rabbitmq"), string_data=data)

    core.create_namespaced_secret(flow_namespace, secret(transport_env("rabbitmq", rabbitmq_url)))
    dead = f"127.0.0.1:{kit.free_port()}"
    section = {"type": "rabbitmq", "rabbitmq": {"secretRef": {"name": "rabbitmq"}}}
    _scales_by_backlog(
        k8s_api_client, flow_namespace, "rabbitmq", section, m,
        outage=lambda: core.replace_namespaced_secret("rabbitmq", flow_namespace, secret({
            "ORDERFLOW_RABBITMQ_URL": f"amqp://guest:guest@{dead}/%2F",
            "ORDERFLOW_RABBITMQ_MANAGEMENT_URL": f"http://guest:guest@{dead}",
        })),
    )
    assert operator_in.alive
