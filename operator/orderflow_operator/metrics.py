"""Prometheus metrics of the operator: what each reconcile observed of each flow, for dashboards and alerts.

The services export what they do (events consumed, produced, dead-lettered); only the operator sees a flow as a
whole: a stage's consumer-group lag against its target, its replicas and rates, the order service's in-flight and
stuck orders. The same figures go into the OrderFlow's ``status``; here they become time series, so an alert can
say "lag above target for 10 minutes" (``charts/orderflow``'s PrometheusRule). Served by ``orderflow operator
--metrics-port``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

REGISTRY: Final = CollectorRegistry(auto_describe=True)
_STAGE: Final = ["namespace", "flow", "stage"]
_FLOW: Final = ["namespace", "flow"]

STAGE_LAG: Final = Gauge(
    "orderflow_operator_stage_lag", "Consumer-group lag of the stage (messages).", _STAGE, registry=REGISTRY
)
STAGE_LAG_PER_REPLICA_TARGET: Final = Gauge(
    "orderflow_operator_stage_lag_per_replica_target",
    "The stage's lagPerReplica: the lag one replica is meant to carry.",
    _STAGE,
    registry=REGISTRY,
)
STAGE_REPLICAS: Final = Gauge(
    "orderflow_operator_stage_replicas", "Replicas of the stage's Deployment.", _STAGE, registry=REGISTRY
)
STAGE_MAX_REPLICAS: Final = Gauge(
    "orderflow_operator_stage_max_replicas", "The stage's maxReplicas.", _STAGE, registry=REGISTRY
)
STAGE_PARTITIONS: Final = Gauge(
    "orderflow_operator_stage_partitions", "Partitions of the stage's topics.", _STAGE, registry=REGISTRY
)
STAGE_ARRIVAL_RATE: Final = Gauge(
    "orderflow_operator_stage_arrival_rate", "Messages per second arriving at the stage.", _STAGE, registry=REGISTRY
)
STAGE_CONSUME_RATE: Final = Gauge(
    "orderflow_operator_stage_consume_rate", "Messages per second the stage consumes.", _STAGE, registry=REGISTRY
)
SCALINGS: Final = Counter(
    "orderflow_operator_scalings_total",
    "Scale patches the operator made, by direction (up, down).",
    [*_STAGE, "direction"],
    registry=REGISTRY,
)
FLOW_READY: Final = Gauge("orderflow_operator_flow_ready", "1 when the OrderFlow is Ready.", _FLOW, registry=REGISTRY)
FLOW_IN_FLIGHT: Final = Gauge(
    "orderflow_operator_flow_in_flight_orders", "Orders accepted and not yet terminal.", _FLOW, registry=REGISTRY
)
FLOW_STUCK: Final = Gauge(
    "orderflow_operator_flow_stuck_orders",
    "In-flight orders older than the flow's stuckAfterSeconds.",
    _FLOW,
    registry=REGISTRY,
)
FLOW_OLDEST: Final = Gauge(
    "orderflow_operator_flow_oldest_in_flight_seconds",
    "Age of the oldest in-flight order.",
    _FLOW,
    registry=REGISTRY,
)

_STAGE_FIELDS: Final = (
    (STAGE_LAG, "lag"),
    (STAGE_REPLICAS, "replicas"),
    (STAGE_PARTITIONS, "partitions"),
    (STAGE_ARRIVAL_RATE, "arrivalRate"),
    (STAGE_CONSUME_RATE, "consumeRate"),
)
_FLOW_FIELDS: Final = (
    (FLOW_IN_FLIGHT, "inFlight"),
    (FLOW_STUCK, "stuck"),
    (FLOW_OLDEST, "oldestInFlightAgeSeconds"),
)


def record(
    *,
    namespace: str,
    flow: str,
    targets: Mapping[str, tuple[int, int]],
    status: Mapping[str, Any],
    ready: bool,
    scaled: Mapping[str, tuple[int, int]],
) -> None:
    """Set the series of one flow from the status just written; a figure the tick could not observe is dropped
    (an absent series, not a stale one). ``targets`` is each stage's (lagPerReplica, maxReplicas)."""
    FLOW_READY.labels(namespace, flow).set(1 if ready else 0)
    stages: Sequence[Mapping[str, Any]] = status.get("stages") or ()
    for entry in stages:
        labels = (namespace, flow, str(entry.get("name")))
        for gauge, key in _STAGE_FIELDS:
            _set(gauge, labels, entry.get(key))
        lag_per_replica, max_replicas = targets.get(str(entry.get("name")), (None, None))
        _set(STAGE_LAG_PER_REPLICA_TARGET, labels, lag_per_replica)
        _set(STAGE_MAX_REPLICAS, labels, max_replicas)
    health: Mapping[str, Any] = status.get("flow") or {}
    for gauge, key in _FLOW_FIELDS:
        _set(gauge, (namespace, flow), health.get(key))
    for stage, (before, after) in scaled.items():
        SCALINGS.labels(namespace, flow, stage, "up" if after > before else "down").inc()


def _set(gauge: Gauge, labels: tuple[str, ...], value: Any) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        gauge.labels(*labels).set(value)
    else:
        with contextlib.suppress(KeyError):  # never set: nothing to drop
            gauge.remove(*labels)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` (Prometheus text format) on ``address:port`` from a daemon thread."""
    start_http_server(port, addr=address, registry=REGISTRY)
