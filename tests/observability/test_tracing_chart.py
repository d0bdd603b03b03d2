"""The services chart passes OpenTelemetry settings through: values -> the standard OTEL_* variables, which the
services' own tracing configuration accepts; the NetworkPolicy lets the spans out; nothing is traced by default."""

from __future__ import annotations

from typing import Any

import pytest

from orderflow.runtime import tracing
from tests.deploy import charts


def _case(label: str) -> charts.ChartCase:
    return next(c for c in charts.CASES if c.chart == charts.SERVICES_CHART and c.label == label)


def _service_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = charts.by_kind(docs, "ConfigMap")["orderflow-config"]["data"]
    return data


def test_tracing_values_become_the_standard_variables_the_services_accept() -> None:
    docs = charts.render(_case("observability"))
    env = _service_env(docs)
    otel = {k: v for k, v in env.items() if k.startswith("OTEL_")}
    assert otel == {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger-collector.observability:4318",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod",
    }
    assert tracing.exporters_from(env) == ["otlp"]  # what the services do with it: export over OTLP/HTTP
    for deployment in charts.by_kind(docs, "Deployment").values():
        refs = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert {"configMapRef": {"name": "orderflow-config"}} in refs
    egress = charts.by_kind(docs, "NetworkPolicy")["orderflow-egress"]["spec"]["egress"]
    assert {"ports": [{"protocol": "TCP", "port": 4318}]} in egress


def test_no_tracing_by_default() -> None:
    docs = charts.render(_case("defaults"))
    env = _service_env(docs)
    assert not [k for k in env if k.startswith("OTEL_")]
    assert tracing.exporters_from(env) == []
    egress = charts.by_kind(docs, "NetworkPolicy")["orderflow-egress"]["spec"]["egress"]
    assert all(p["port"] != 4318 for rule in egress for p in rule["ports"])


@pytest.mark.parametrize(
    ("tracing_values", "message"),
    [
        ({"enabled": True}, "endpoint"),
        ({"enabled": True, "endpoint": "jaeger:4318"}, "endpoint"),
        ({"enabled": True, "endpoint": "http://jaeger:4318", "sampler": "sometimes"}, "sampler"),
    ],
)
def test_bad_tracing_values_are_refused_naming_the_field(tracing_values: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        charts.render(_case("defaults"), values={"tracing": tracing_values})
