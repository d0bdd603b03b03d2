"""The rendered charts applied to a real kube-apiserver (envtest): CRDs first, then everything else.

This is what ``helm install`` would send; the API server validates every object against its real schemas,
including the release's ``OrderFlow`` against the operator chart's CRD (structural schema and CEL rules).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import yaml

from orderflow_dev.wait import until
from tests.deploy import charts


def _apply(envtest: Any, docs: list[dict[str, Any]], *args: str) -> str:
    result = envtest.kubectl("apply", "--server-side", "--field-manager=helm", "--force-conflicts", *args, "-f",
                             "-", input=yaml.safe_dump_all(docs), timeout=120)
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def _install_crds(envtest: Any) -> list[str]:
    crds = charts.crds(charts.OPERATOR_CHART)
    _apply(envtest, crds)
    names = [c["metadata"]["name"] for c in crds]
    for name in names:
        until(lambda n=name: envtest.kubectl("wait", "--for=condition=Established", f"crd/{n}", "--timeout=5s")
              .returncode == 0, timeout=60, what=f"CRD {name} established")
    return names


def test_all_four_charts_apply_to_the_api_server(envtest: Any, k8s_namespace: str) -> None:
    assert "orderflows.orderflow.dev" in _install_crds(envtest)
    suffix = uuid.uuid4().hex[:6]
    applied: dict[str, list[dict[str, Any]]] = {}
    # In skaffold.yaml's order. Cluster-scoped names (the operator's ClusterRole) get a unique release name.
    for chart in (charts.KAFKA_CHART, charts.POSTGRES_CHART, charts.OPERATOR_CHART, charts.SERVICES_CHART):
        release = f"{charts.RELEASES[chart]}-{suffix}" if chart == charts.OPERATOR_CHART else charts.RELEASES[chart]
        values = charts.values_file("charts/orderflow/values-dev.yaml") if chart == charts.SERVICES_CHART else {}
        docs = charts.render(charts.ChartCase(chart, release, values=values), namespace=k8s_namespace)
        _apply(envtest, docs, "-n", k8s_namespace)
        applied[chart] = docs

    for chart, docs in applied.items():
        for doc in docs:
            namespaced = [] if doc["kind"].startswith("Cluster") else ["-n", k8s_namespace]
            got = envtest.kubectl("get", doc["kind"].lower(), doc["metadata"]["name"], *namespaced, "-o", "json")
            assert got.returncode == 0, (chart, doc["kind"], doc["metadata"]["name"], got.stderr)

    # What a user types: the short name lists the release's flow; its stages are the Deployments just created.
    flows = envtest.kubectl("get", "of", "-n", k8s_namespace, "-o", "json", check=True)
    (flow,) = json.loads(flows.stdout)["items"]
    deployments = json.loads(envtest.kubectl("get", "deployments", "-n", k8s_namespace, "-o", "json",
                                             check=True).stdout)["items"]
    by_name = {d["metadata"]["name"]: d for d in deployments}
    for stage in flow["spec"]["stages"]:
        assert stage["deployment"] in by_name
        assert by_name[stage["deployment"]]["spec"]["replicas"] == 1  # defaulted; the operator's from here on
    # The CRD's defaults were applied by the API server, so the spec the operator reads is complete.
    assert flow["spec"]["scaling"]["intervalSeconds"] == 10
    assert flow["spec"]["health"]["stuckAfterSeconds"] == 120


@pytest.mark.parametrize(("path", "value", "message"), [
    (("stages", 0, "maxReplicas"), 0, "maxReplicas"),
    (("stages", 2, "upstream"), ["warehouse"], "upstream"),
    (("stages", 1, "name"), "inventory", "unique"),
], ids=["max-zero", "unknown-upstream", "duplicate-stage"])
def test_the_api_server_rejects_a_flow_the_crd_forbids(
    envtest: Any, k8s_namespace: str, path: tuple[Any, ...], value: Any, message: str
) -> None:
    """The check above has teeth: a rendered OrderFlow bent out of shape is refused by the real CRD."""
    _install_crds(envtest)
    docs = charts.render(charts.ChartCase(charts.SERVICES_CHART, "orderflow"), namespace=k8s_namespace)
    (flow,) = charts.by_kind(docs, "OrderFlow").values()
    node: Any = flow["spec"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    result = envtest.kubectl("create", "--dry-run=server", "-n", k8s_namespace, "-f", "-", input=json.dumps(flow))
    assert result.returncode != 0 and message in result.stderr, result.stderr


@pytest.mark.parametrize("label", ["nats", "rabbitmq"])
def test_the_release_flow_on_another_transport_is_accepted_by_the_crd(
    envtest: Any, k8s_namespace: str, label: str
) -> None:
    """The services chart's OrderFlow for NATS or RabbitMQ (``spec.transport``, no ``spec.kafka``) passes the CRD's
    schema and CEL rules as rendered."""
    _install_crds(envtest)
    case = next(c for c in charts.CASES if c.chart == charts.SERVICES_CHART and c.label == label)
    (flow,) = charts.by_kind(charts.render(case, namespace=k8s_namespace), "OrderFlow").values()
    result = envtest.kubectl("create", "--dry-run=server", "-n", k8s_namespace, "-o", "json", "-f", "-",
                             input=json.dumps(flow))
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)["spec"]
    assert stored["transport"]["type"] == label and "kafka" not in stored
