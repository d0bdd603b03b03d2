"""The charts' NetworkPolicies, enforced by a real agent (kube-router, in firewall mode): the flow works with them
(every other test of the suite runs under them), and a Pod they do not admit is refused by Kafka, PostgreSQL and the
services. Each refusal has a positive control, so a broken network cannot pass for an enforced policy."""

from __future__ import annotations

import json
import uuid

import pytest

from orderflow_dev.wait import until
from tests.e2e import kube

pytestmark = pytest.mark.e2e

# Each target is tried for WINDOW_S: a NetworkPolicy agent admits a new Pod's address a few seconds after the Pod
# starts (kube-router syncs its ipsets), so "blocked" means "never answered in that window", and "open" that it did.
PROBE = """
import socket, sys, threading, time
WINDOW_S = 20.0
results = {}
def attempt(target):
    host, port = target.rsplit(":", 1)
    deadline = time.monotonic() + WINDOW_S
    while True:
        s = socket.socket(); s.settimeout(2)
        try:
            s.connect((host, int(port))); results[target] = "open"; return
        except OSError as e:
            last = e
        finally:
            s.close()
        if time.monotonic() > deadline:
            refused = isinstance(last, (socket.timeout, ConnectionRefusedError))
            refused = refused or getattr(last, "errno", None) in (111, 113, 101)
            results[target] = "blocked" if refused else f"error:{last}"
            return
        time.sleep(0.5)
threads = [threading.Thread(target=attempt, args=(t,)) for t in sys.argv[1:]]
for t in threads: t.start()
for t in threads: t.join()
for target in sys.argv[1:]:
    print(target, results[target], flush=True)
"""

KAFKA = "orderflow-kafka.orderflow.svc.cluster.local:9092"
POSTGRES = "orderflow-postgres.orderflow.svc.cluster.local:5432"
ORDER = "orderflow-order.orderflow.svc.cluster.local:8080"
BILLING = "orderflow-billing.orderflow.svc.cluster.local:8080"
INVENTORY = "orderflow-inventory.orderflow.svc.cluster.local:8080"
TARGETS = [KAFKA, POSTGRES, ORDER, BILLING, INVENTORY]

RESTRICTED = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
    "containerSecurity": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                          "capabilities": {"drop": ["ALL"]}},
}


def _image(k: kube.Kube) -> str:
    image: str = k.deployment("orderflow-order")["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def probe(k: kube.Kube, *, namespace: str, labels: dict[str, str]) -> dict[str, str]:
    """Run a one-shot Pod that tries every target; return target -> open | blocked."""
    name = f"netprobe-{uuid.uuid4().hex[:6]}"
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"orderflow.dev/probe": "true", **labels}},
        "spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            "securityContext": RESTRICTED["securityContext"],
            "containers": [{"name": "probe", "image": _image(k), "imagePullPolicy": "IfNotPresent",
                            "command": ["python3", "-c", PROBE, *TARGETS],
                            "securityContext": RESTRICTED["containerSecurity"]}],
        },
    }
    k.kubectl("apply", "-f", "-", namespace=namespace, input=json.dumps(pod))
    try:
        until(lambda: k.json("pod", name, namespace=namespace)["status"].get("phase") in ("Succeeded", "Failed"),
              timeout=120, what=f"probe Pod {name} to finish", interval=0.5)
        out = k.kubectl("logs", name, namespace=namespace)
    finally:
        k.kubectl("delete", "pod", name, "--wait=false", namespace=namespace)
    results = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert set(results) == set(TARGETS), out
    return results


def test_a_pod_without_the_orderflow_label_is_refused_by_kafka_and_postgresql(deployed: kube.Kube) -> None:
    outsider = probe(deployed, namespace="orderflow", labels={})
    insider = probe(deployed, namespace="orderflow", labels={"app.kubernetes.io/part-of": "orderflow"})
    assert (outsider[KAFKA], outsider[POSTGRES]) == ("blocked", "blocked"), outsider
    assert (insider[KAFKA], insider[POSTGRES]) == ("open", "open"), insider
    # The services' HTTP APIs admit the namespace's Pods (internalApiFrom's default) and anyone (the order API).
    assert (outsider[ORDER], outsider[BILLING]) == ("open", "open"), outsider


def test_a_pod_of_another_namespace_reaches_only_the_public_order_api(deployed: kube.Kube) -> None:
    ns = "orderflow-netpol-probe"
    deployed.kubectl("create", "namespace", ns, namespace="default", check=False)
    try:
        result = probe(deployed, namespace=ns, labels={"app.kubernetes.io/part-of": "orderflow"})
    finally:
        deployed.kubectl("delete", "namespace", ns, "--wait=false", namespace="default")
    assert result[ORDER] == "open", result
    assert (result[BILLING], result[INVENTORY], result[KAFKA], result[POSTGRES]) == ("blocked",) * 4, result


def test_the_services_cannot_call_each_other(deployed: kube.Kube) -> None:
    """Their only channel is Kafka: egress from a service Pod to another service's API is refused, while Kafka and
    PostgreSQL (what the egress policy allows) answer."""
    (pod, *_) = [p for p in deployed.pods("app.kubernetes.io/component=billing") if kube.ready(p)]
    name = pod["metadata"]["name"]
    out = deployed.kubectl("exec", name, "--", "python3", "-c", PROBE, INVENTORY, ORDER, KAFKA, POSTGRES)
    result = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert (result[INVENTORY], result[ORDER]) == ("blocked", "blocked"), result
    assert (result[KAFKA], result[POSTGRES]) == ("open", "open"), result
