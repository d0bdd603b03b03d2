"""The Grafana dashboard and the PrometheusRule alerts chart only metrics the code really exports.

The metric names come from the live registries (the services' ``Metrics`` and the operator's ``metrics.REGISTRY``),
not from a list in the test, so renaming a metric in the code without updating the dashboard or an alert fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from orderflow.runtime.metrics import Metrics
from orderflow_operator import metrics as operator_metrics
from tests.deploy import charts

DASHBOARD = charts.ROOT / "charts" / "orderflow" / "dashboards" / "orderflow.json"
PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "table", "bargauge"}

# PromQL words that are not metric names: functions are followed by "(" and dropped anyway; these are the rest.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def series_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry exposes: a counter ``x`` is ``x_total`` (and ``x_created``), a histogram
    ``x_bucket``, ``x_sum``, ``x_count``."""
    names: set[str] = set()
    for family in registry.collect():
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def exported() -> set[str]:
    return series_names(Metrics("order").registry) | series_names(operator_metrics.REGISTRY)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_the_name_extraction_sees_through_functions_labels_and_ranges() -> None:
    expr = 'sum by (service, le) (rate(a_b_bucket{service="x"}[$__rate_interval])) / clamp_min(c_d, 1) > bool 0'
    assert metric_names(expr) == {"a_b_bucket", "c_d"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_the_dashboard_is_a_well_formed_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"] == "orderflow" and board["title"] and isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")) and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_every_dashboard_query_uses_only_exported_metrics_and_every_metric_is_charted() -> None:
    known = exported()
    used: set[str] = set()
    for title, expr in dashboard_exprs():
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= known, f"panel {title!r} queries metrics nobody exports: {sorted(names - known)}"
        used |= names
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in known}
    charted = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in used}
    assert families - charted == set(), "exported metrics missing from the dashboard"


def test_a_dashboard_query_on_a_metric_nobody_exports_is_caught() -> None:
    assert metric_names("sum(rate(orderflow_events_consumed_totl[5m]))") - exported() == {
        "orderflow_events_consumed_totl"
    }


# -- the PrometheusRule ---------------------------------------------------------------------------------------

# The spec of prometheus-operator's PrometheusRule CRD (monitoring.coreos.com/v1), transcribed from its OpenAPI
# schema: what the API server would enforce once the CRD is installed.
_DURATION = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
PROMETHEUS_RULE_SPEC = {
    "type": "object",
    "properties": {
        "groups": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": {"type": "string", "pattern": _DURATION},
                    "limit": {"type": "integer"},
                    "partial_response_strategy": {"type": "string"},
                    "rules": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["expr"],
                            "additionalProperties": False,
                            "properties": {
                                "alert": {"type": "string"},
                                "record": {"type": "string"},
                                "expr": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                                "for": {"type": "string", "pattern": _DURATION},
                                "keep_firing_for": {"type": "string", "pattern": _DURATION, "minLength": 1},
                                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        }
    },
}


def rendered_rule(values: dict[str, Any] | None = None) -> dict[str, Any]:
    case = next(c for c in charts.CASES if c.chart == charts.SERVICES_CHART and c.label == "observability")
    merged = case.values if values is None else {**case.values, "monitoring": values}
    (rule,) = charts.by_kind(charts.render(case, values=merged), "PrometheusRule").values()
    return rule


def test_the_prometheus_rule_is_valid_and_alerts_on_stuck_orders_dead_letters_and_lag() -> None:
    rule = rendered_rule()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    jsonschema.validate(rule["spec"], PROMETHEUS_RULE_SPEC)
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"OrderFlowStuckOrders", "OrderFlowDeadLettersGrowing", "OrderFlowLagAboveTarget"} <= set(alerts)
    assert alerts["OrderFlowStuckOrders"]["for"] == "5m" and alerts["OrderFlowLagAboveTarget"]["for"] == "10m"
    assert "[10m]" in alerts["OrderFlowDeadLettersGrowing"]["expr"]
    known = exported()
    for name, alert in alerts.items():
        names = metric_names(alert["expr"])
        assert names and names <= known, f"{name} uses metrics nobody exports: {sorted(names - known)}"
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        # Prometheus' own templating survives Helm's: the annotations still say {{ $labels.x }}.
        assert "{{ $" in alert["annotations"]["summary"] + alert["annotations"]["description"], name


def test_the_alert_windows_come_from_the_values() -> None:
    rule = rendered_rule(
        {"prometheusRule": {"enabled": True, "stuckOrdersFor": "15m", "lagAboveTargetFor": "1h", "severity": "page"}}
    )
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts["OrderFlowStuckOrders"]["for"] == "15m"
    assert alerts["OrderFlowLagAboveTarget"]["for"] == "1h"
    assert {a["labels"]["severity"] for a in alerts.values()} == {"page"}


def test_dashboard_and_rule_are_off_by_default_and_the_configmap_carries_the_committed_json() -> None:
    defaults = next(c for c in charts.CASES if c.chart == charts.SERVICES_CHART and c.label == "defaults")
    docs = charts.render(defaults)
    assert not charts.by_kind(docs, "PrometheusRule") and "orderflow-dashboard" not in charts.by_kind(docs, "ConfigMap")
    case = next(c for c in charts.CASES if c.chart == charts.SERVICES_CHART and c.label == "observability")
    configmap = charts.by_kind(charts.render(case), "ConfigMap")["orderflow-dashboard"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "OrderFlow"}
    assert json.loads(configmap["data"]["orderflow.json"]) == dashboard()


@pytest.mark.parametrize("bad", [{"stuckOrdersFor": "five minutes"}, {"surprise": True}])
def test_bad_alert_values_are_refused_by_the_schema(bad: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"stuckOrdersFor|surprise"):
        rendered_rule({"prometheusRule": {"enabled": True, **bad}})


# -- the operator's metrics ------------------------------------------------------------------------------------


def test_the_operator_exports_each_flows_lag_targets_and_stuck_orders() -> None:
    status = {
        "stages": [
            {"name": "billing", "lag": 1200, "replicas": 2, "partitions": 6, "arrivalRate": 40.5, "consumeRate": 30},
            {"name": "shipping", "replicas": 1},  # offsets unreadable this tick: no lag series
        ],
        "flow": {"inFlight": 9, "stuck": 3, "oldestInFlightAgeSeconds": 301.5},
    }
    operator_metrics.record(
        namespace="shop",
        flow="main",
        targets={"billing": (500, 6), "shipping": (500, 4)},
        status=status,
        ready=True,
        scaled={"billing": (1, 2)},
    )
    value = _sampler()
    billing = {"namespace": "shop", "flow": "main", "stage": "billing"}
    flow = {"namespace": "shop", "flow": "main"}
    assert value("orderflow_operator_stage_lag", billing) == 1200
    assert value("orderflow_operator_stage_lag_per_replica_target", billing) == 500
    assert value("orderflow_operator_stage_replicas", billing) == 2
    assert value("orderflow_operator_stage_max_replicas", billing) == 6
    assert value("orderflow_operator_stage_arrival_rate", billing) == 40.5
    assert value("orderflow_operator_scalings_total", {**billing, "direction": "up"}) == 1
    assert value("orderflow_operator_stage_lag", {**billing, "stage": "shipping"}) is None
    assert value("orderflow_operator_flow_stuck_orders", flow) == 3
    assert value("orderflow_operator_flow_oldest_in_flight_seconds", flow) == 301.5
    assert value("orderflow_operator_flow_ready", flow) == 1

    # The order service stops answering: the flow figures go away rather than repeat the last ones.
    operator_metrics.record(namespace="shop", flow="main", targets={}, status={"stages": []}, ready=False, scaled={})
    value = _sampler()
    assert value("orderflow_operator_flow_stuck_orders", flow) is None
    assert value("orderflow_operator_flow_ready", flow) == 0


def _sampler() -> Callable[[str, dict[str, str]], float | None]:
    """A lookup into the operator registry's exposition as Prometheus would scrape it now."""
    samples = [
        s
        for family in text_string_to_metric_families(generate_latest(operator_metrics.REGISTRY).decode())
        for s in family.samples
    ]

    def value(name: str, labels: dict[str, str]) -> float | None:
        return next((s.value for s in samples if s.name == name and s.labels == labels), None)

    return value


def test_the_operator_chart_serves_the_metrics_the_alerts_need_and_can_turn_them_off() -> None:
    case = next(c for c in charts.CASES if c.chart == charts.OPERATOR_CHART and c.label == "defaults")
    (deployment,) = charts.by_kind(charts.render(case), "Deployment").values()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=9090" in container["args"]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    (deployment,) = charts.by_kind(charts.render(case, values={"metricsPort": 0}), "Deployment").values()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in container["args"] if a.startswith("--metrics-port")]
    assert [p["name"] for p in container["ports"]] == ["health"]
