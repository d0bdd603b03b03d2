"""skaffold.yaml: valid against skaffold's own JSON Schema for its apiVersion, and every path, release, image and
value it names exists and fits together (dependency order, the kind profile, the order API's port-forward).
"""

from __future__ import annotations

import copy
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from tests.deploy import charts, skaffold_schema

ROOT = charts.ROOT
SKAFFOLD = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
RELEASES: list[dict[str, Any]] = SKAFFOLD["deploy"]["helm"]["releases"]


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = skaffold_schema.schema(SKAFFOLD["apiVersion"])
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _errors(validator: jsonschema.protocols.Validator, doc: dict[str, Any]) -> list[str]:
    best = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    return [] if best is None else [f"{'/'.join(map(str, best.absolute_path))}: {best.message[:500]}"]


def test_valid_against_skaffolds_schema_for_its_api_version(validator: jsonschema.protocols.Validator) -> None:
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta13"
    assert _errors(validator, SKAFFOLD) == []


@pytest.mark.parametrize("mutate", [
    lambda d: d["deploy"]["helm"]["releases"][0].update(chartPth="charts/dev/kafka"),
    lambda d: d["profiles"][0]["build"]["local"].update(push="no"),
    lambda d: d["portForward"][0].update(resourceType="service", port="eighty-eighty", extra=1),
], ids=["misspelt-field", "wrong-type", "unknown-key"])
def test_the_schema_rejects_a_broken_config(validator: jsonschema.protocols.Validator, mutate: Any) -> None:
    broken = copy.deepcopy(SKAFFOLD)
    mutate(broken)
    assert _errors(validator, broken), "skaffold's schema accepted a broken skaffold.yaml"


def test_every_chart_and_values_file_exists_and_the_values_fit_the_chart() -> None:
    assert {r["chartPath"] for r in RELEASES} == set(charts.CHARTS)
    for release in RELEASES:
        chart_dir = ROOT / release["chartPath"]
        assert (chart_dir / "Chart.yaml").is_file(), release["chartPath"]
        values: dict[str, Any] = {}
        for path in release.get("valuesFiles", []):
            assert (ROOT / path).is_file(), path
            values = _merge(values, yaml.safe_load((ROOT / path).read_text()) or {})
        for key, value in release.get("setValues", {}).items():
            values = _merge(values, _nest(key, value))
        for key in release.get("setValueTemplates", {}):
            values = _merge(values, _nest(key, "from-skaffold"))
        with helm.Chart.load(chart_dir) as chart:
            chart.validate_schema(chart.merge_values(values))  # unknown or mistyped keys fail here
            assert chart.render(values, name=release["name"], namespace=release["namespace"])


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    result: Any = value
    for part in reversed(dotted.split(".")):
        result = {part: result}
    return dict(result)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    merged = dict(a)
    for key, value in b.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def test_releases_deploy_in_dependency_order() -> None:
    names = [r["name"] for r in RELEASES]
    for i, release in enumerate(RELEASES):
        for dependency in release.get("dependsOn", []):
            assert dependency in names[:i], f"{release['name']} depends on {dependency}, deployed after it"
    by_chart = {r["chartPath"]: r for r in RELEASES}
    services = by_chart[charts.SERVICES_CHART]
    assert set(services["dependsOn"]) == {by_chart[c]["name"] for c in charts.CHARTS if c != charts.SERVICES_CHART}
    assert names.index(by_chart[charts.OPERATOR_CHART]["name"]) < names.index(services["name"]), "CRD first"
    for chart in (charts.KAFKA_CHART, charts.POSTGRES_CHART):
        assert by_chart[chart]["wait"] is True, f"{chart}: the services need it up"
    assert len({r["namespace"] for r in RELEASES}) == 1, "one namespace: the services use short DNS names"


def test_the_one_image_is_built_from_the_dockerfile_and_given_to_both_charts() -> None:
    (artifact,) = SKAFFOLD["build"]["artifacts"]
    assert (ROOT / artifact.get("context", ".") / artifact["docker"]["dockerfile"]).is_file()
    image = artifact["image"]
    for release in RELEASES:
        if release["chartPath"] in (charts.SERVICES_CHART, charts.OPERATOR_CHART):
            assert release["setValueTemplates"] == {"image.repository": f"{{{{.IMAGE_REPO_{image}}}}}",
                                                    "image.tag": f"{{{{.IMAGE_TAG_{image}}}}}"}


def test_the_dev_values_point_at_the_dev_charts_services() -> None:
    by_chart = {r["chartPath"]: r for r in RELEASES}
    namespace = by_chart[charts.SERVICES_CHART]["namespace"]
    values: dict[str, Any] = {}
    for path in by_chart[charts.SERVICES_CHART]["valuesFiles"]:
        values = _merge(values, yaml.safe_load((ROOT / path).read_text()))
    kafka = charts.ChartCase(charts.KAFKA_CHART, by_chart[charts.KAFKA_CHART]["name"])
    (kafka_service,) = charts.by_kind(charts.render(kafka, namespace=namespace), "Service").values()
    assert values["kafka"]["bootstrapServers"] == (
        f"{kafka_service['metadata']['name']}:{kafka_service['spec']['ports'][0]['port']}")
    postgres = charts.ChartCase(charts.POSTGRES_CHART, by_chart[charts.POSTGRES_CHART]["name"])
    assert values["database"]["existingSecret"] in charts.by_kind(charts.render(postgres, namespace=namespace),
                                                                  "Secret")


def test_the_order_api_is_port_forwarded_and_the_kind_profile_builds_locally() -> None:
    by_chart = {r["chartPath"]: r for r in RELEASES}
    services = by_chart[charts.SERVICES_CHART]
    case = charts.ChartCase(charts.SERVICES_CHART, services["name"])
    rendered = charts.by_kind(charts.render(case, namespace=services["namespace"]), "Service")
    (forward,) = SKAFFOLD["portForward"]
    assert forward["resourceType"] == "service" and forward["namespace"] == services["namespace"]
    order = rendered[forward["resourceName"]]
    assert order["metadata"]["labels"]["app.kubernetes.io/component"] == "order"
    assert forward["port"] == order["spec"]["ports"][0]["port"]
    (kind,) = [p for p in SKAFFOLD["profiles"] if p["name"] == "kind"]
    assert kind["build"]["local"]["push"] is False
    assert kind["deploy"]["kubeContext"] == "kind-kind"  # what `kind create cluster` names its context


def test_the_standins_profile_swaps_only_images_for_the_ones_the_e2e_suite_builds() -> None:
    """`skaffold run -p kind,standins` (tests/e2e) must deploy what a user's `-p kind` deploys, but for the images
    Docker Hub would serve: the Dockerfile's base and the dev charts' images, each a stand-in that
    tests/e2e/cluster builds under the same names."""
    (profile,) = [p for p in SKAFFOLD["profiles"] if p["name"] == "standins"]
    assert set(profile) == {"name", "patches"}
    lib = (ROOT / "tests" / "e2e" / "cluster" / "lib.sh").read_text()
    built = (ROOT / "tests" / "e2e" / "cluster" / "build-base-images.sh").read_text()
    for patch in profile["patches"]:
        path, value = patch["path"], patch["value"]
        if path == "/build/artifacts/0/docker/buildArgs":
            assert set(value) == {"PYTHON_IMAGE"}
            assert f'PYTHON_STANDIN="$STANDIN/{value["PYTHON_IMAGE"].split("/standin/", 1)[1]}"' in lib
        elif path == "/build/artifacts/0/docker/network":
            assert value == "host"
        else:
            index = int(path.split("/")[4])
            assert path == f"/deploy/helm/releases/{index}/setValues"
            assert RELEASES[index]["chartPath"].startswith("charts/dev/"), "only the dev charts get stand-ins"
            assert set(value) <= {"image.repository", "image.tag", "image.pullPolicy"}, value
            name = value["image.repository"].split("/standin/", 1)[1]
            assert f'"$STANDIN/{name}:' in built, f"no stand-in {name} is built by tests/e2e/cluster"
