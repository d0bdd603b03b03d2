"""Helpers for the operator's tests against the real API server and the real broker.

Waiting is always on a condition with a deadline (:func:`wait_for`), never a bare sleep; every test builds
its topic, group, namespace and resource names from its own unique prefix.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from kubernetes import client
from kubernetes.client.exceptions import ApiException

# The operator's chart and CRD in the checkout, relative to the working directory (its root, where the tests and the
# benchmarks run).
CHART_DIR = Path("charts") / "orderflow-operator"
CRD_FILE = CHART_DIR / "crds" / "orderflows.orderflow.dev.yaml"
GROUP, VERSION, PLURAL = "orderflow.dev", "v1alpha1", "orderflows"

T = TypeVar("T")


class Timeout(AssertionError):
    pass


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Call ``probe`` until it returns something truthy; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise Timeout(f"after {timeout:g}s: {text}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- Kafka ---------------------------------------------------------------------------------------------------


def create_topic(admin: AdminClient, topic: str, partitions: int) -> None:
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(timeout=30)


def produce(bootstrap: str, topic: str, count: int, *, partition: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(count):
        if partition is None:
            producer.produce(topic, key=str(i).encode(), value=b"{}")
        else:
            producer.produce(topic, key=str(i).encode(), value=b"{}", partition=partition)
        if i % 1000 == 999:
            producer.poll(0)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} messages not delivered to {topic}"


def end_offsets(admin: AdminClient, topic: str) -> dict[int, int]:
    n = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    futures = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in range(n)})
    return {tp.partition: f.result(timeout=10).offset for tp, f in futures.items()}


def commit(admin: AdminClient, group: str, topic: str, offsets: Mapping[int, int]) -> None:
    """Set a consumer group's committed offsets, as its consumers would after processing up to there."""
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in offsets.items()])]
    for future in admin.alter_consumer_group_offsets(request).values():
        future.result(timeout=10)


def commit_at_end(admin: AdminClient, group: str, topic: str) -> None:
    commit(admin, group, topic, end_offsets(admin, topic))


def partitions_of(admin: AdminClient, topic: str) -> int:
    return len(admin.list_topics(topic, timeout=10).topics[topic].partitions)


class SteadyProducer:
    """Produces ``rate`` messages per second to a topic from a thread until stopped (at most ``limit_s``)."""

    def __init__(self, bootstrap: str, topic: str, rate: float, *, limit_s: float = 60.0) -> None:
        self.topic, self.rate, self.limit_s = topic, rate, limit_s
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.producer.flush(10)

    def _run(self) -> None:
        started = time.monotonic()
        step = 0.05
        while not self._stop.is_set() and time.monotonic() - started < self.limit_s:
            due = int((time.monotonic() - started) * self.rate)
            while self.sent < due:
                self.producer.produce(self.topic, key=str(self.sent).encode(), value=b"{}")
                self.sent += 1
            self.producer.poll(0)
            self._stop.wait(step)


# -- Kubernetes ----------------------------------------------------------------------------------------------


def make_deployment(api: client.ApiClient, namespace: str, name: str, replicas: int = 1) -> None:
    labels = {"app.kubernetes.io/name": name}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "consumer", "image": "orderflow:test"}]},
            },
        },
    }
    # The same coercion the client's own argument validation applies to a dict body.
    client.AppsV1Api(api).create_namespaced_deployment(namespace, client.V1Deployment.model_validate(body))


def replicas(api: client.ApiClient, namespace: str, name: str) -> int:
    scale = client.AppsV1Api(api).read_namespaced_deployment_scale(name, namespace)
    assert scale.spec is not None, f"the scale of Deployment {namespace}/{name} has no spec"
    return int(scale.spec.replicas or 0)


def stage(name: str, prefix: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "deployment": f"{prefix}-{name}",
        "consumerGroup": f"{prefix}-{name}",
        "topics": [f"{prefix}.{name}"],
        "minReplicas": 1,
        "maxReplicas": 8,
        "lagPerReplica": 100,
        **overrides,
    }


def orderflow(name: str, bootstrap: str, stages: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OrderFlow",
        "metadata": {"name": name},
        "spec": {"kafka": {"bootstrapServers": bootstrap}, "stages": stages, **spec},
    }


def _json_object(decoded: object) -> dict[str, Any]:
    """A custom object as the client returns it: decoded JSON, which the client types only as ``object``."""
    assert isinstance(decoded, dict), decoded
    return decoded


def create_flow(api: client.ApiClient, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return _json_object(
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, dict(body))
    )


def patch_flow_spec(api: client.ApiClient, namespace: str, name: str, spec: Mapping[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        {"spec": dict(spec)},
        _content_type="application/merge-patch+json",
    )


def get_flow(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return _json_object(
        client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    )


def condition(flow: Mapping[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (flow.get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype:
            return dict(c)
    return None


def stage_status(flow: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    for s in (flow.get("status") or {}).get("stages") or ():
        if s.get("name") == name:
            return dict(s)
    return None


def wait_condition(
    api: client.ApiClient,
    namespace: str,
    name: str,
    ctype: str,
    status: str,
    *,
    reason: str | None = None,
    timeout: float,
) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        nonlocal last
        last = get_flow(api, namespace, name)
        c = condition(last, ctype)
        if c and c["status"] == status and (reason is None or c["reason"] == reason):
            return last
        return None

    return wait_for(
        probe,
        timeout=timeout,
        interval=0.1,
        message=lambda: f"{ctype}={status} ({reason}) not reached; status: {json.dumps(last.get('status'))}",
    )


def events(api: client.ApiClient, namespace: str, name: str) -> list[client.CoreV1Event]:
    listed = client.CoreV1Api(api).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return list(listed.items)


def wait_event(
    api: client.ApiClient, namespace: str, name: str, reason: str, *, etype: str | None = None, timeout: float
) -> client.CoreV1Event:
    def probe() -> client.CoreV1Event | None:
        for e in events(api, namespace, name):
            if e.reason == reason and (etype is None or e.type == etype):
                return e
        return None

    return wait_for(
        probe,
        timeout=timeout,
        interval=0.1,
        message=lambda: (
            f"no {etype or ''} Event {reason}; seen: "
            + "; ".join(f"{e.type} {e.reason}: {e.message}" for e in events(api, namespace, name))
        ),
    )


# -- The operator as a process -------------------------------------------------------------------------------


class OperatorProcess:
    """``python -m orderflow_operator`` against a kubeconfig, logging to a file; stopped with SIGTERM."""

    def __init__(self, *, kubeconfig: Path, log_path: Path, namespaces: list[str] | None = None) -> None:
        self.kubeconfig, self.log_path = kubeconfig, log_path
        self.namespaces = namespaces
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> OperatorProcess:
        scope = [f"--namespace={ns}" for ns in self.namespaces] if self.namespaces else ["--all-namespaces"]
        cmd = [
            sys.executable,
            "-W",
            "error",
            "-m",
            "orderflow_operator",
            *scope,
            f"--kubeconfig={self.kubeconfig}",
            f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
            f"--metrics-port={self.metrics_port}",
            "--log-format=full",
            "--verbose",
        ]
        env = dict(os.environ)
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        wait_for(self._healthy, timeout=60, interval=0.1, message=lambda: f"operator not live:\n{self.log_tail()}")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metric(self, name: str, labels: dict[str, str]) -> float | None:
        """The current value of one series on the operator's ``/metrics``, None while it has none."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        samples = (s for family in text_string_to_metric_families(text) for s in family.samples)
        return next((s.value for s in samples if s.name == name and s.labels == labels), None)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


# -- A stand-in order service: a real HTTP server answering GET /flow ----------------------------------------


class FlowEndpoint:
    """Serves ``GET /flow`` with numbers the test sets; records the query strings it was asked with."""

    def __init__(self) -> None:
        self.payload: dict[str, Any] = {
            "in_flight": 0,
            "oldest_in_flight_age_seconds": None,
            "stuck": 0,
            "stuck_order_ids": [],
        }
        self.queries: list[str] = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path != "/flow":
                    self.send_error(404)
                    return
                endpoint.queries.append(query)
                body = json.dumps(endpoint.payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlowEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(timeout=5)
        self.server.server_close()


@contextlib.contextmanager
def sampling_max(probe: Callable[[], int], interval: float = 0.05) -> Iterator[list[int]]:
    """Sample ``probe`` from a thread while the block runs; the yielded list holds every value seen."""
    seen: list[int] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            with contextlib.suppress(ApiException, OSError):
                seen.append(probe())
            stop.wait(interval)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=5)
