"""The CRD on a real API server: it installs, `kubectl explain` teaches every field, and each kind of nonsense
is rejected by the API server with a message that says what is wrong."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from orderflow_dev import operatorkit as kit


def valid_flow() -> dict[str, Any]:
    return kit.orderflow(
        "flow",
        "127.0.0.1:9092",
        [
            kit.stage("inventory", "p"),
            kit.stage("shipping", "p", upstream=["inventory"], ratePerReplica=50),
        ],
    )


def test_explain_shows_the_descriptions(envtest: Any, orderflow_crd: str) -> None:
    spec = envtest.kubectl("explain", "orderflow.spec", check=True).stdout
    assert "The desired flow" in spec
    for field in ("transport", "kafka", "stages", "scaling", "health"):
        assert f"{field}\t<Object>" in spec or f"{field}\t<[]Object>" in spec
    stages = envtest.kubectl("explain", "orderflow.spec.stages", check=True).stdout
    assert "Target lag (unconsumed messages) per replica" in stages
    assert "Messages per second one replica handles" in stages
    secret = envtest.kubectl("explain", "orderflow.spec.kafka.secretRef", check=True).stdout
    assert "librdkafka settings" in secret
    transport = envtest.kubectl("explain", "orderflow.spec.transport", check=True).stdout
    assert "like a KEDA trigger's type" in transport
    nats_secret = envtest.kubectl("explain", "orderflow.spec.transport.nats.secretRef", check=True).stdout
    assert "ORDERFLOW_NATS_URL" in nats_secret
    status = envtest.kubectl("explain", "orderflow.status.stages", check=True).stdout
    assert "lastScaleReason" in status


def test_every_field_of_the_schema_has_a_description() -> None:
    crd = yaml.safe_load(kit.CRD_FILE.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if path != "metadata" and not node.get("description") and not path.endswith("metadata"):
            missing.append(path or "<root>")
        for name, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{name}" if path else name)
        if "items" in node:
            walk(node["items"], f"{path}[]")

    walk(schema, "")
    assert missing == []


def test_a_valid_flow_is_accepted_with_defaults(k8s_api_client: Any, flow_namespace: str) -> None:
    created = kit.create_flow(k8s_api_client, flow_namespace, valid_flow())
    assert created["spec"]["scaling"] == {
        "intervalSeconds": 5,
        "scaleDownStabilizationSeconds": 300,
        "growPartitions": False,
        "policy": "FlowAware",
    }
    assert created["spec"]["health"] == {"stuckAfterSeconds": 300}
    assert created["spec"]["stages"][1]["upstreamRatioPercent"] == 100
    assert created["spec"]["transport"] == {"type": "kafka"}  # a flow written before the section: Kafka


@pytest.mark.parametrize("section", [
    {"type": "nats", "nats": {"url": "nats://orderflow-nats:4222"}},
    {"type": "nats", "nats": {"url": "nats://n1:4222,nats://n2:4222", "secretRef": {"name": "nats-client"}}},
    {"type": "rabbitmq", "rabbitmq": {"secretRef": {"name": "orderflow-rabbitmq"}}},
    {"type": "rabbitmq", "rabbitmq": {"url": "amqps://orderflow@mq:5671/%2F"}},
], ids=["nats-url", "nats-cluster-and-secret", "rabbitmq-secret", "rabbitmq-user-without-password"])
def test_a_flow_on_nats_or_rabbitmq_needs_no_kafka_section(
    k8s_api_client: Any, flow_namespace: str, section: dict[str, Any]
) -> None:
    created = kit.create_flow(k8s_api_client, flow_namespace, _on(section))
    assert created["spec"]["transport"] == section and "kafka" not in created["spec"]


def _mutate(path: str, value: Any) -> dict[str, Any]:
    flow = copy.deepcopy(valid_flow())
    node: Any = flow["spec"]
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    last = keys[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return flow


def _on(transport: dict[str, Any]) -> dict[str, Any]:
    """The valid flow on another transport: its ``spec.transport`` set, its ``spec.kafka`` gone."""
    flow = copy.deepcopy(valid_flow())
    del flow["spec"]["kafka"]
    flow["spec"]["transport"] = transport
    return flow


def _duplicate_stage() -> dict[str, Any]:
    flow = valid_flow()
    flow["spec"]["stages"][1]["name"] = "inventory"
    flow["spec"]["stages"][1].pop("upstream")
    return flow


INVALID = {
    "min above max": (
        _mutate("stages.0.minReplicas", 9),
        "minReplicas must be less than or equal to maxReplicas",
    ),
    "zero lag target": (
        _mutate("stages.0.lagPerReplica", 0),
        "lagPerReplica in body should be greater than or equal to 1",
    ),
    "no stages": (_mutate("stages", []), "spec.stages in body should have at least 1 items"),
    "duplicate stage names": (_duplicate_stage(), "stage names must be unique"),
    "unknown upstream": (
        _mutate("stages.1.upstream", ["billing"]),
        "every upstream entry must be the name of a stage",
    ),
    "own upstream": (_mutate("stages.1.upstream", ["shipping"]), "a stage cannot be its own upstream"),
    "upstream without a rate": (
        _mutate("stages.0.upstream", ["shipping"]),
        "ratePerReplica is required when upstream is set",
    ),
    "zero max": (
        _mutate("stages.0.maxReplicas", 0),
        "maxReplicas in body should be greater than or equal to 1",
    ),
    "no topics": (_mutate("stages.0.topics", []), "topics in body should have at least 1 items"),
    "bad interval": (
        _mutate("scaling.intervalSeconds", 0),
        "intervalSeconds in body should be greater than or equal to 1",
    ),
    "negative window": (
        _mutate("scaling.scaleDownStabilizationSeconds", -1),
        "scaleDownStabilizationSeconds in body should be greater than or equal to 0",
    ),
    "unknown policy": (_mutate("scaling.policy", "Greedy"), 'Unsupported value: "Greedy"'),
    "non-http order service": (
        _mutate("health.orderServiceUrl", "ftp://x"),
        "orderServiceUrl in body should match",
    ),
    "no bootstrap servers": (
        _mutate("kafka.bootstrapServers", ""),
        "bootstrapServers in body should be at least 1 chars",
    ),
    "unknown field": (_mutate("stages.0.replicas", 3), 'unknown field "spec.stages[0].replicas"'),
    "kafka without its section": (_on({"type": "kafka"}), "spec.kafka is required when spec.transport.type is kafka"),
    "nats without its section": (_on({"type": "nats"}), "spec.transport.nats is required when spec.transport.type"),
    "rabbitmq without its section": (
        _on({"type": "rabbitmq", "nats": {"url": "nats://n:4222"}}),
        "spec.transport.rabbitmq is required when spec.transport.type is rabbitmq",
    ),
    "unknown transport": (_on({"type": "sqs"}), 'Unsupported value: "sqs"'),
    "nats with no address": (_on({"type": "nats", "nats": {}}), "spec.transport.nats needs url or a secretRef"),
    "password in the url": (
        _on({"type": "rabbitmq", "rabbitmq": {"url": "amqp://orderflow:s3cret@mq:5672/%2F"}}),
        "a URL with a password does not belong in the spec",
    ),
    "not an amqp url": (_on({"type": "rabbitmq", "rabbitmq": {"url": "http://mq:15672"}}), "url in body should match"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_nonsense_is_rejected_with_a_clear_message(envtest: Any, flow_namespace: str, case: str) -> None:
    body, message = INVALID[case]
    result = envtest.kubectl("apply", "-n", flow_namespace, "-f", "-", input=json.dumps(body))
    assert result.returncode != 0, f"{case} was accepted"
    assert message in result.stderr, result.stderr


def test_printer_columns(envtest: Any, orderflow_crd: str) -> None:
    crd = json.loads(envtest.kubectl("get", "crd", orderflow_crd, "-o", "json", check=True).stdout)
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert list(c for c in columns if "priority" not in columns[c]) == [
        "Ready",
        "Stages",
        "Total Lag",
        "In-Flight",
        "Age",
    ]
    assert crd["spec"]["names"]["shortNames"] == ["of"]
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
