"""The project's Helm charts as the deploy tests see them: rendered by real Helm (helm-python-sdk, Helm v4).

One place that knows which charts exist, the release name skaffold.yaml gives each, and a few realistic value
overrides per chart, so every check (lint, strict schema validation, Pod Security, the API server, commands) runs
over the same renderings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


@dataclass(frozen=True)
class ChartCase:
    """A chart, a release name and values: one ``helm template``."""

    chart: str  # path relative to the repository root
    release: str
    label: str = "defaults"
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return ROOT / self.chart

    @property
    def id(self) -> str:
        return f"{self.chart.removeprefix('charts/')}:{self.label}"


SERVICES_CHART = "charts/orderflow"
OPERATOR_CHART = "charts/orderflow-operator"
KAFKA_CHART = "charts/dev/kafka"
POSTGRES_CHART = "charts/dev/postgres"
CHARTS = (SERVICES_CHART, OPERATOR_CHART, KAFKA_CHART, POSTGRES_CHART)
RELEASES = {SERVICES_CHART: "orderflow", OPERATOR_CHART: "orderflow-operator", KAFKA_CHART: "orderflow-kafka",
            POSTGRES_CHART: "orderflow-postgres"}


def values_file(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / path).read_text()) or {}
    return loaded


# Realistic overrides: what a user of each chart would actually set.
CASES = (
    *(ChartCase(chart, RELEASES[chart]) for chart in CHARTS),
    ChartCase(SERVICES_CHART, "orderflow", "skaffold-dev", values_file("charts/orderflow/values-dev.yaml")),
    ChartCase(SERVICES_CHART, "shop", "production", {
        "image": {"repository": "registry.example.com/orderflow", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "kafka": {
            "bootstrapServers": "kafka-0.kafka:9093,kafka-1.kafka:9093,kafka-2.kafka:9093",
            "options": {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"},
            "existingSecret": "orderflow-kafka-credentials",
            "operatorSecret": "orderflow-kafka-librdkafka",
        },
        "database": {"existingSecret": "shop-databases"},
        "topics": {"prefix": "shop", "create": False, "partitions": 12, "replicationFactor": 3},
        "config": {"orderDeadlineSeconds": 120, "logLevel": "WARNING"},
        "services": {"inventory": {"minReplicas": 2, "maxReplicas": 12, "lagPerReplica": 1000,
                                   "ratePerReplica": 400, "upstream": [], "upstreamRatioPercent": 100,
                                   "resources": {"requests": {"cpu": "500m", "memory": "256Mi"},
                                                 "limits": {"memory": "512Mi"}}}},
        "orderflow": {"scaling": {"growPartitions": True, "policy": "LagOnly"}},
        "podDisruptionBudget": {"maxUnavailable": "50%"},
        "networkPolicy": {
            "orderApiFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}],
            "kafkaPorts": [9093],
            "kafkaTo": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        },
        "extraEnv": [{"name": "OTEL_SERVICE_NAME", "value": "orderflow"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "orderflow", "effect": "NoSchedule"}],
        "priorityClassName": "high",
    }),
    ChartCase(SERVICES_CHART, "orderflow", "no-operator", {
        "orderflow": {"enabled": False},
        "services": {"billing": {"replicas": 3, "minReplicas": 1, "maxReplicas": 6, "lagPerReplica": 500,
                                 "ratePerReplica": 200}},
        "podDisruptionBudget": {"enabled": False},
        "networkPolicy": {"enabled": False},
    }),
    # Traces to a collector, the Grafana dashboard and the alerts: everything observability turned on.
    ChartCase(SERVICES_CHART, "orderflow", "observability", {
        "tracing": {"enabled": True, "endpoint": "http://jaeger-collector.observability:4318",
                    "sampler": "parentbased_traceidratio", "samplerArg": "0.25",
                    "resourceAttributes": {"deployment.environment": "prod"}},
        "monitoring": {"dashboard": {"enabled": True, "annotations": {"grafana_folder": "OrderFlow"}},
                       "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
    }),
    # The other transports: NATS at a URL with TLS options; RabbitMQ's URL, with its credentials, from a Secret.
    ChartCase(SERVICES_CHART, "orderflow", "nats", {
        "transport": {"type": "nats", "nats": {"url": "nats://nats-0.nats:4222,nats://nats-1.nats:4222",
                                               "options": {"tls_ca": "/etc/nats/ca.pem"},
                                               "existingSecret": "orderflow-nats-credentials"}},
        "networkPolicy": {"natsTo": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}]},
    }),
    ChartCase(SERVICES_CHART, "orderflow", "rabbitmq", {
        "transport": {"type": "rabbitmq", "rabbitmq": {"existingSecret": "orderflow-rabbitmq"}},
        "networkPolicy": {"rabbitmqPorts": [5671]},
    }),
    ChartCase(OPERATOR_CHART, "orderflow-operator", "namespaced",
              {"watchNamespaces": ["orderflow", "shop"], "logLevel": "debug",
               "rbac": {"kafkaSecretNames": ["orderflow-kafka-librdkafka"]}}),
    # skaffold tags an image it builds but does not push with its 64-hex id (`skaffold run -p kind`).
    ChartCase(SERVICES_CHART, "orderflow", "skaffold-image-id",
              {"image": {"repository": "orderflow", "tag": "8" * 64}}),
    ChartCase(OPERATOR_CHART, "orderflow-operator", "skaffold-image-id",
              {"image": {"repository": "orderflow", "tag": "8" * 64}, "watchNamespaces": ["orderflow"]}),
    ChartCase(KAFKA_CHART, "kafka", "tuned", {"port": 19092, "defaultPartitions": 6, "heapOptions": "-Xmx1g"}),
    ChartCase(POSTGRES_CHART, "pg", "renamed", {"databasePrefix": "shop", "urlsSecretName": "shop-databases",
                                                "auth": {"username": "shop", "password": "s3cret-dev-only"}}),
)


def render(
    case: ChartCase, *, namespace: str = "orderflow", values: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Render ``case`` (optionally with other values) into its Kubernetes objects, in template order."""
    with helm.Chart.load(case.path) as chart:
        rendered = chart.render(values if values is not None else case.values, name=case.release,
                                namespace=namespace, is_install=True)
    docs: list[dict[str, Any]] = []
    for name in sorted(rendered):
        if not name.endswith((".yaml", ".yml")):
            continue
        docs += [d for d in yaml.safe_load_all(rendered[name]) if d]
    return docs


def crds(chart: str) -> list[dict[str, Any]]:
    with helm.Chart.load(ROOT / chart) as loaded:
        return [d for c in loaded.crds for d in yaml.safe_load_all(c["data"]) if d]


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(kind/name, pod template)`` of every workload; a template is ``{"metadata", "spec"}``."""
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", []),
            *pod_spec.get("ephemeralContainers", [])]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}
