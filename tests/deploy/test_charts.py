"""Every chart, rendered by real Helm under its defaults and realistic overrides: lint-clean, valid Kubernetes
(``kubernetes-validate --strict``), documented values, a schema that rejects bad values with a clear message, and
the services chart wired to what the services and the operator actually read.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from orderflow.events import catalog
from orderflow.runtime import config
from orderflow_operator import spec as operator_spec
from tests.deploy import charts

# The oldest Kubernetes the charts declare (kubeVersion >=1.30) and the one the envtest API server runs.
KUBERNETES_VERSIONS = ("1.30.0", "1.36.0")


@pytest.mark.parametrize("case", charts.CASES, ids=lambda c: c.id)
def test_renders_lints_and_validates_strictly(case: charts.ChartCase, tmp_path: Path) -> None:
    docs = charts.render(case)
    assert docs, f"{case.id} renders nothing"
    report = helm.lint(case.path, case.values, strict=True, namespace="orderflow")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems

    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    for version in KUBERNETES_VERSIONS:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet", "-k", version,
             str(manifest)],
            capture_output=True, text=True, timeout=120,
        )
        errors = [line for line in result.stdout.splitlines() if not line.startswith("WARN")]
        assert result.returncode == 0 and not errors, f"Kubernetes {version}:\n{result.stdout}{result.stderr}"
        # Only the custom resources have no bundled schema: the OrderFlow (the API server test validates it) and
        # the PrometheusRule (tests/observability validates it against prometheus-operator's schema).
        for line in result.stdout.splitlines():
            if line.startswith("WARN"):
                assert "kind OrderFlow" in line or "kind PrometheusRule" in line, line


@pytest.mark.parametrize("case", charts.CASES, ids=lambda c: c.id)
def test_every_resource_carries_the_standard_labels(case: charts.ChartCase) -> None:
    docs = charts.render(case)
    wanted = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
              "app.kubernetes.io/part-of", "helm.sh/chart"}
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        assert wanted <= set(labels), (doc["kind"], doc["metadata"]["name"], sorted(wanted - set(labels)))
        assert labels["app.kubernetes.io/instance"] == case.release
    for name, template in charts.pod_templates(docs):
        assert {"app.kubernetes.io/name", "app.kubernetes.io/instance"} <= set(template["metadata"]["labels"]), name
        for key, value in template["metadata"]["labels"].items():
            assert LABEL_VALUE.fullmatch(value), (name, key, value)
    for doc in docs:
        for key, value in (doc["metadata"].get("labels") or {}).items():
            assert LABEL_VALUE.fullmatch(value), (doc["kind"], doc["metadata"]["name"], key, value)


#: What the API server accepts as a label value (at most 63 characters, alphanumeric at both ends). Regression: the
#: first `skaffold run -p kind` failed -- skaffold tags a local image with its 64-hex id, which the charts copied
#: into `app.kubernetes.io/version`, and the API server refused every object ("must be no more than 63 bytes").
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?")


# -- values: documented, and checked by the schema ------------------------------------------------------------


def _undocumented(values_yaml: str) -> list[str]:
    """Value paths with no ``# --`` comment on themselves or an ancestor (helm-docs' convention)."""
    missing: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    comment: list[str] = []
    key_line = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):(?:\s|$)")
    for line in values_yaml.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        if not stripped:
            comment = []
            continue
        match = key_line.match(line)
        if match is None:
            continue  # a list item or a continuation
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = any(c.startswith("# --") for c in comment) or any(d for _, _, d in stack)
        path = ".".join([k for _, k, _ in stack] + [match.group(2)])
        is_parent = stripped.endswith(":")
        if not documented and not is_parent:
            missing.append(path)
        stack.append((indent, match.group(2), documented))
        comment = []
    return missing


@pytest.mark.parametrize("chart", charts.CHARTS)
def test_every_value_is_documented(chart: str) -> None:
    assert _undocumented((charts.ROOT / chart / "values.yaml").read_text()) == []


def test_the_documentation_check_finds_an_undocumented_value() -> None:
    assert _undocumented("a:\n  # -- fine\n  b: 1\n  c: 2\n# -- all of d\nd:\n  e: 1\n") == ["a.c"]


@pytest.mark.parametrize("chart", charts.CHARTS)
def test_unknown_keys_are_rejected_naming_the_key(chart: str) -> None:
    with helm.Chart.load(charts.ROOT / chart) as loaded:
        assert loaded.schema is not None, f"{chart} has no values.schema.json"
        loaded.validate_schema(loaded.values)
        with pytest.raises(helm.HelmValuesError, match="replicaCountt"):
            loaded.validate_schema({**loaded.values, "replicaCountt": 2})
        with pytest.raises(helm.HelmValuesError, match="tagg"):
            loaded.validate_schema({**loaded.values, "image": {**loaded.values["image"], "tagg": "x"}})


BAD_SERVICE_VALUES = [
    ({"topics": {"partitions": 0}}, "partitions"),
    ({"topics": {"prefix": "has space"}}, "prefix"),
    ({"kafka": {"bootstrapServers": "kafka"}}, "bootstrapServers"),
    ({"kafka": {"options": {"sasl.password": "hunter2"}}}, "sasl.password"),
    ({"database": {"existingSecret": ""}}, "existingSecret"),
    ({"config": {"logLevel": "LOUD"}}, "logLevel"),
    ({"services": {"billing": {"maxReplicas": 0}}}, "maxReplicas"),
    ({"services": {"shipping": {"upstream": ["warehouse"]}}}, "upstream"),
    ({"orderflow": {"scaling": {"policy": "Fastest"}}}, "policy"),
    ({"networkPolicy": {"kafkaPorts": []}}, "kafkaPorts"),
    ({"transport": {"type": "sqs"}}, "/transport/type"),
    ({"transport": {"nats": {"url": "nats://orderflow:s3cret@nats:4222"}}}, "/transport/nats/url"),
    ({"transport": {"rabbitmq": {"url": "http://rabbitmq:15672"}}}, "/transport/rabbitmq/url"),
    ({"transport": {"rabbitmq": {"options": {"password": "hunter2"}}}}, "password"),
    ({"transport": {"nats": {"existingSecret": "Not A Name"}}}, "/transport/nats/existingSecret"),
    ({"networkPolicy": {"natsPorts": []}}, "natsPorts"),
]


@pytest.mark.parametrize(("override", "field"), BAD_SERVICE_VALUES, ids=[f for _, f in BAD_SERVICE_VALUES])
def test_bad_service_values_are_rejected_with_a_clear_message(override: dict[str, Any], field: str) -> None:
    with helm.Chart.load(charts.ROOT / charts.SERVICES_CHART) as chart, pytest.raises(helm.HelmValuesError) as raised:
        chart.render(override, name="orderflow", namespace="orderflow")
    assert field in str(raised.value), str(raised.value)


@pytest.mark.parametrize("transport", ["nats", "rabbitmq"])
def test_a_transport_without_an_address_fails_the_render_saying_what_to_set(transport: str) -> None:
    wanted = re.escape(f"set transport.{transport}.url, or transport.{transport}.existingSecret to a Secret with "
                       f"ORDERFLOW_{transport.upper()}_URL")
    chart = helm.Chart.load(charts.ROOT / charts.SERVICES_CHART)
    with chart, pytest.raises(helm.HelmError, match=wanted):
        chart.render({"transport": {"type": transport}}, name="orderflow", namespace="orderflow")


def test_min_replicas_above_max_fails_the_render_naming_the_service() -> None:
    override = {"services": {"inventory": {"minReplicas": 5, "maxReplicas": 2, "lagPerReplica": 1,
                                           "ratePerReplica": 1}}}
    chart = helm.Chart.load(charts.ROOT / charts.SERVICES_CHART)
    with chart, pytest.raises(helm.HelmError, match=r"services\.inventory\.minReplicas"):
        chart.render(override, name="orderflow", namespace="orderflow")


# -- the services chart is wired to what the services and the operator read ----------------------------------


def _services_case(label: str) -> charts.ChartCase:
    return next(c for c in charts.CASES if c.chart == charts.SERVICES_CHART and c.label == label)


#: What the Secrets the transport cases name would hold (the chart only references them).
SECRETS = {
    "orderflow-nats-credentials": {"ORDERFLOW_NATS_USER": "orderflow", "ORDERFLOW_NATS_PASSWORD": "s3cret"},
    "orderflow-rabbitmq": {"ORDERFLOW_RABBITMQ_URL": "amqps://orderflow:s3cret@rabbitmq:5671/%2F"},
}


@pytest.mark.parametrize("label", ["defaults", "production", "nats", "rabbitmq"])
def test_each_service_gets_a_configuration_its_own_loader_accepts(label: str) -> None:
    case = _services_case(label)
    docs = charts.render(case)
    configmaps = charts.by_kind(docs, "ConfigMap")
    values = charts.values_file(f"{case.chart}/values.yaml") | case.values
    for name, deployment in charts.by_kind(docs, "Deployment").items():
        service = name.rsplit("-", 1)[1]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env: dict[str, str] = {}
        for source in container["envFrom"]:
            if "configMapRef" in source:
                env |= configmaps[source["configMapRef"]["name"]]["data"]
        secrets: dict[str, str] = {}
        for source in container["envFrom"]:
            if "secretRef" in source:
                secrets |= SECRETS.get(source["secretRef"]["name"], {})
        database = next(e for e in container["env"] if e["name"] == "ORDERFLOW_DATABASE_URL")
        assert database["valueFrom"]["secretKeyRef"] == {"name": values["database"]["existingSecret"], "key": service}
        env["ORDERFLOW_DATABASE_URL"] = "postgresql://user:secret@db:5432/x"  # what the Secret would hold
        replica = next(e for e in container["env"] if e["name"] == "ORDERFLOW_REPLICA_ID")
        assert replica["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}  # the Pod name
        env["ORDERFLOW_REPLICA_ID"] = f"{name}-7d9f8b6c5-x2x4q"  # what the downward API would give
        settings = config.load(service, env | secrets)  # the service's own loader: refuses anything invalid
        assert settings.replica_id == env["ORDERFLOW_REPLICA_ID"]
        assert settings.http_host == "0.0.0.0" and settings.http_port == 8080
        assert settings.topic_partitions == (values["topics"].get("partitions", 6))
        assert settings.group == f"{settings.topic_prefix}-{service}"
        assert not any(re.search("PASSWORD|SECRET", k) for k in env if k != "ORDERFLOW_DATABASE_URL")
        assert not any("s3cret" in v for v in env.values())  # credentials come from Secrets, never the ConfigMap
        transport = values.get("transport", {}).get("type", "kafka")
        assert settings.transport == transport
    if label == "nats":
        assert settings.transport_url == "nats://nats-0.nats:4222,nats://nats-1.nats:4222"
        assert settings.transport_options == {"tls_ca": "/etc/nats/ca.pem", "user": "orderflow", "password": "s3cret"}
        assert {"secretRef": {"name": "orderflow-nats-credentials"}} in container["envFrom"]
        assert "ORDERFLOW_KAFKA_BOOTSTRAP" not in env
    if label == "rabbitmq":
        assert settings.transport_url == "amqps://orderflow:s3cret@rabbitmq:5671/%2F"  # from the Secret alone
        assert settings.transport_options == {}
    if label == "production":
        assert settings.kafka_options == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}
        assert settings.topic_prefix == "shop" and not settings.create_topics
        assert {"secretRef": {"name": "orderflow-kafka-credentials"}} in container["envFrom"]


@pytest.mark.parametrize("label", ["defaults", "production", "nats", "rabbitmq"])
def test_the_orderflow_resource_names_the_real_deployments_groups_and_topics(label: str) -> None:
    case = _services_case(label)
    docs = charts.render(case)
    (flow,) = charts.by_kind(docs, "OrderFlow").values()
    deployments = charts.by_kind(docs, "Deployment")
    services = charts.by_kind(docs, "Service")
    prefix = flow["spec"]["stages"][0]["consumerGroup"].rsplit("-", 1)[0]
    assert {s["name"] for s in flow["spec"]["stages"]} == set(catalog.SERVICES)
    for stage in flow["spec"]["stages"]:
        deployment = deployments[stage["deployment"]]
        assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == ["run", stage["name"]]
        assert stage["consumerGroup"] == f"{prefix}-{stage['name']}"
        assert sorted(stage["topics"]) == sorted(catalog.topics_consumed_by(stage["name"], prefix))
        assert stage["minReplicas"] <= stage["maxReplicas"]
        assert set(stage.get("upstream", [])) <= set(catalog.SERVICES) - {stage["name"]}
    order_service = next(n for n in services if n.endswith("-order"))
    port = services[order_service]["spec"]["ports"][0]["port"]
    assert flow["spec"]["health"]["orderServiceUrl"] == f"http://{order_service}.orderflow.svc:{port}"
    # The operator reads the same transport the services were given, from the same Secret.
    parsed = operator_spec.parse(flow["spec"])
    values = charts.values_file(f"{case.chart}/values.yaml") | case.values
    transport = values["transport"]["type"]
    assert parsed.transport.value == transport
    if transport == "kafka":
        assert "transport" not in flow["spec"]  # the CRD's default: accepted by a CRD from before the section too
    else:
        broker = values["transport"][transport]
        assert "kafka" not in flow["spec"] and parsed.broker == operator_spec.BrokerSpec(
            url=broker.get("url") or None, secret_name=broker.get("existingSecret") or None)


def test_replicas_belong_to_the_operator_when_it_scales() -> None:
    with_operator = charts.by_kind(charts.render(_services_case("defaults")), "Deployment")
    assert all("replicas" not in d["spec"] for d in with_operator.values())
    without = charts.by_kind(charts.render(_services_case("no-operator")), "Deployment")
    assert {n: d["spec"]["replicas"] for n, d in without.items()} == {
        "orderflow-order": 1, "orderflow-inventory": 1, "orderflow-billing": 3, "orderflow-shipping": 1}
    assert not charts.by_kind(charts.render(_services_case("no-operator")), "OrderFlow")


def test_service_containers_have_probes_resources_and_a_read_only_root() -> None:
    for name, template in charts.pod_templates(charts.render(_services_case("defaults"))):
        spec = template["spec"]
        (container,) = spec["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        assert {"requests", "limits"} <= set(container["resources"]) and "memory" in container["resources"]["limits"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert spec["automountServiceAccountToken"] is False
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}


def test_one_pod_disruption_budget_per_service() -> None:
    docs = charts.render(_services_case("defaults"))
    pdbs = charts.by_kind(docs, "PodDisruptionBudget")
    deployments = charts.by_kind(docs, "Deployment")
    assert set(pdbs) == set(deployments)
    for name, pdb in pdbs.items():
        assert pdb["spec"]["selector"]["matchLabels"] == deployments[name]["spec"]["selector"]["matchLabels"]


def test_network_policies_allow_only_what_the_flow_needs() -> None:
    docs = charts.render(_services_case("defaults"))
    policies = charts.by_kind(docs, "NetworkPolicy")
    deny = policies["orderflow-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    egress_ports = {(p["protocol"], p["port"]) for rule in policies["orderflow-egress"]["spec"]["egress"]
                    for p in rule["ports"]}
    assert egress_ports == {("UDP", 53), ("TCP", 53), ("TCP", 9092), ("TCP", 5432)}
    ingress = [p for p in policies.values() if "Ingress" in p["spec"]["policyTypes"] and p["spec"].get("ingress")]
    # Only the order API (from anyone) and the internal APIs (from the namespace); never service to service
    # on another port.
    assert {p["metadata"]["name"] for p in ingress} == {"orderflow-order-api", "orderflow-internal-api"}
    for policy in ingress:
        for rule in policy["spec"]["ingress"]:
            assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert charts.by_kind(charts.render(_services_case("no-operator")), "NetworkPolicy") == {}


@pytest.mark.parametrize(("label", "port", "peers"), [
    ("nats", 4222, [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}]),
    ("rabbitmq", 5671, None),
])
def test_the_egress_rule_follows_the_transport(label: str, port: int, peers: list[dict[str, Any]] | None) -> None:
    egress = charts.by_kind(charts.render(_services_case(label)), "NetworkPolicy")["orderflow-egress"]["spec"]["egress"]
    broker = [rule for rule in egress if {"protocol": "TCP", "port": port} in rule["ports"]]
    assert len(broker) == 1 and broker[0].get("to") == peers
    assert not [rule for rule in egress if {"protocol": "TCP", "port": 9092} in rule["ports"]]


@pytest.mark.postgres
def test_the_dev_postgres_urls_match_the_databases_its_init_script_creates(postgres_server: Any) -> None:
    """Run the dev chart's init SQL on a real PostgreSQL, then connect to every URL its Secret hands out."""
    import psycopg

    case = next(c for c in charts.CASES if c.chart == charts.POSTGRES_CHART and c.label == "renamed")
    docs = charts.render(case)
    (init,) = [d for d in charts.by_kind(docs, "ConfigMap").values()]
    urls = charts.by_kind(docs, "Secret")[case.values["urlsSecretName"]]["stringData"]
    assert set(urls) == set(catalog.SERVICES)
    user = case.values["auth"]["username"]
    with psycopg.connect(postgres_server.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{user}" LOGIN')
        for statement in "".join(init["data"].values()).split(";"):
            if statement.strip():
                conn.execute(statement)
    for service, url in urls.items():
        database = url.rsplit("/", 1)[1]
        assert url.startswith(f"postgresql://{user}:") and database == f"{case.values['databasePrefix']}_{service}"
        with psycopg.connect(postgres_server.url(database).replace("orderflow@", f"{user}@")) as conn:
            owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                                 (database,)).fetchone()
        assert owner == (user,)
