"""The operator's chart: it renders and lints with real Helm (the Go SDK behind helm-python-sdk), its values are
documented and schema-checked, its manifests pass `kubernetes-validate --strict`, they apply to the real API
server, and the RBAC it grants is enough for the operator to do its whole job (run under that ServiceAccount's
token) and no more than it uses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from confluent_kafka.admin import AdminClient

from orderflow_dev import operatorkit as kit

RENDERED = "orderflow-operator/templates/"


def render(values: dict[str, Any] | None = None, *, namespace: str = "orderflow-system") -> list[dict[str, Any]]:
    chart = helm.Chart.load(kit.CHART_DIR)
    manifests = chart.render(values or {}, name="of", namespace=namespace, is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_chart_lints_clean() -> None:
    report = helm.lint(str(kit.CHART_DIR), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def undocumented_values(text: str) -> list[str]:
    """Keys with no ``# --`` comment above them, themselves or on an ancestor (a documented parent documents
    its subtree, e.g. ``resources``); an undocumented parent passes only if each of its children is documented."""
    lines = text.splitlines()
    stack: list[tuple[int, bool]] = []
    missing: list[str] = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z]\w*):(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        j, comment = i - 1, []
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.append(lines[j].strip())
            j -= 1
        documented = any(c.startswith("# --") for c in comment) or any(d for _, d in stack)
        is_parent = rest == "" and i + 1 < len(lines) and len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent
        if not documented and not is_parent:
            missing.append(key)
        stack.append((indent, documented))
    return missing


def test_every_value_is_documented_and_the_schema_rejects_unknown_keys() -> None:
    assert undocumented_values((kit.CHART_DIR / "values.yaml").read_text()) == []
    assert undocumented_values("a:\n  b: 1\n# -- doc\nc: 2\n") == ["b"]
    chart = helm.Chart.load(kit.CHART_DIR)
    chart.validate_schema({})
    for bad in ({"replicas": 2}, {"rbac": {"create": True, "everything": True}}, {"logFormat": "xml"}):
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(bad)


def test_secure_defaults_and_labels_from_one_helper() -> None:
    docs = render()
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["orderflow", "operator"]
    assert "--all-namespaces" in container["args"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "orderflow-operator"
        assert labels["app.kubernetes.io/instance"] == "of"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    helpers = (kit.CHART_DIR / "templates" / "_helpers.tpl").read_text()
    assert helpers.count("app.kubernetes.io/managed-by") == 1
    templates = [p.read_text() for p in (kit.CHART_DIR / "templates").glob("*.yaml")]
    assert not any("app.kubernetes.io/" in t for t in templates), "labels must come from _helpers.tpl only"


def test_rbac_is_least_privilege() -> None:
    (cluster_role,) = by_kind(render(), "ClusterRole")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): sorted(r["verbs"]) for r in cluster_role["rules"]}
    assert rules == {
        (("orderflow.dev",), ("orderflows",)): ["list", "watch"],
        (("orderflow.dev",), ("orderflows/status",)): ["patch"],
        (("apps",), ("deployments/scale",)): ["get", "patch"],
        (("",), ("events",)): ["create"],
    }
    scoped = render({"watchNamespaces": ["shop", "lab"], "rbac": {"kafkaSecretNames": ["kafka-client"]}})
    assert by_kind(scoped, "ClusterRole") == [] and by_kind(scoped, "ClusterRoleBinding") == []
    roles = by_kind(scoped, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["lab", "shop"]
    secret_rule = [r for r in roles[0]["rules"] if r["resources"] == ["secrets"]]
    assert secret_rule == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["kafka-client"], "verbs": ["get"]}
    ]
    (deployment,) = by_kind(scoped, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=shop" in args and "--namespace=lab" in args and "--all-namespaces" not in args


def _write_manifests(tmp_path: Path, docs: list[dict[str, Any]]) -> list[Path]:
    paths = []
    for i, doc in enumerate(docs):
        path = tmp_path / f"{i:02d}-{doc['kind'].lower()}.yaml"
        path.write_text(yaml.safe_dump(doc))
        paths.append(path)
    return paths


def test_manifests_pass_kubernetes_validate_strict(tmp_path: Path) -> None:
    docs = render() + render({"watchNamespaces": ["shop"], "rbac": {"kafkaSecretNames": ["k"]}})
    files = [*_write_manifests(tmp_path, docs), kit.CRD_FILE, kit.CHART_DIR / "examples" / "orderflow.yaml"]
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("WARN")]
    # Only the custom resource (no bundled schema for it) may warn; the CRD itself is validated.
    assert all("kind OrderFlow" in w for w in warnings), warnings
    assert "passed for resource customresourcedefinition/orderflows.orderflow.dev" in result.stdout


def test_the_example_flow_is_accepted_by_the_api_server(envtest: Any, flow_namespace: str) -> None:
    example = kit.CHART_DIR / "examples" / "orderflow.yaml"
    applied = envtest.kubectl("apply", "-n", flow_namespace, "-f", str(example))
    assert applied.returncode == 0, applied.stderr
    got = json.loads(envtest.kubectl("get", "of", "orderflow", "-n", flow_namespace, "-o", "json", check=True).stdout)
    assert [s["name"] for s in got["spec"]["stages"]] == ["inventory", "billing", "shipping", "order"]


@pytest.mark.kafka
def test_chart_applies_and_its_rbac_is_enough_for_the_operator(
    envtest: Any,
    k8s_api_client: Any,
    flow_namespace: str,
    run_operator: Any,
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    unique_prefix: str,
    tmp_path: Path,
) -> None:
    """Install the chart (operator namespace = the flow's namespace here), then run the operator with the
    chart's ServiceAccount token: it must watch, scale, write status and post Events without a 403."""
    ns, api = flow_namespace, k8s_api_client
    docs = render({"watchNamespaces": [ns]}, namespace=ns)
    files = _write_manifests(tmp_path, docs)
    applied = envtest.kubectl("apply", "--server-side", "-n", ns, *[f"--filename={f}" for f in files])
    assert applied.returncode == 0, applied.stderr
    assert "deployment.apps/of-orderflow-operator serverside-applied" in applied.stdout

    token = envtest.kubectl("create", "token", "of-orderflow-operator", "-n", ns, "--duration=1h", check=True).stdout
    kubeconfig = tmp_path / "operator-kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "envtest",
                        "cluster": {"server": envtest.server, "certificate-authority": str(envtest.ca_file)},
                    }
                ],
                "users": [{"name": "operator", "user": {"token": token.strip()}}],
                "contexts": [
                    {"name": "operator", "context": {"cluster": "envtest", "user": "operator", "namespace": ns}}
                ],
                "current-context": "operator",
            }
        )
    )
    # Sanity: the token really is the ServiceAccount, which may not touch the Deployment object itself.
    whoami = envtest.kubectl(
        "auth", "can-i", "patch", "deployments", "-n", ns, f"--as=system:serviceaccount:{ns}:of-orderflow-operator"
    )
    assert whoami.stdout.strip() == "no"

    s = kit.stage("inventory", unique_prefix, lagPerReplica=10, maxReplicas=3)
    kit.create_topic(kafka_admin, s["topics"][0], 3)
    kit.commit(kafka_admin, s["consumerGroup"], s["topics"][0], {0: 0, 1: 0, 2: 0})
    kit.produce(kafka_bootstrap, s["topics"][0], 100)
    kit.make_deployment(api, ns, s["deployment"])
    operator = run_operator(namespaces=[ns], kubeconfig=kubeconfig)
    kit.create_flow(api, ns, kit.orderflow("rbac", kafka_bootstrap, [s], scaling={"intervalSeconds": 1}))
    kit.wait_for(
        lambda: kit.replicas(api, ns, s["deployment"]) == 3, timeout=15, message="not scaled under its own RBAC"
    )
    kit.wait_condition(api, ns, "rbac", "Ready", "True", timeout=10)
    kit.wait_event(api, ns, "rbac", "ScaledUp", timeout=10)
    log = operator.log_text()
    assert " 403 " not in log and "Forbidden" not in log and "forbidden" not in log, operator.log_tail(80)
