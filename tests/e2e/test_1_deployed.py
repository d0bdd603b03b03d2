"""What a user's first `skaffold run -p kind` gives on a real cluster: every Pod Ready under Pod Security "restricted",
as non-root with a read-only root filesystem, and the operator reporting the flow from the real consumer groups."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orderflow_dev.wait import until
from tests.e2e import kube

pytestmark = pytest.mark.e2e

#: Every workload of the four releases (skaffold.yaml), by its app.kubernetes.io/name label.
EXPECTED = {"kafka", "postgres", "orderflow-operator", "orderflow"}


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = pod["spec"]["containers"]
    return containers


def test_the_namespace_enforces_pod_security_restricted(deployed: kube.Kube) -> None:
    labels = deployed.json("namespace", deployed.namespace, namespace="default")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # The API server really enforces it: a Pod that asks to run as root is refused at admission.
    result = kube.run(["kubectl", "--context", deployed.context, "-n", deployed.namespace, "run", "root-probe",
                       "--image=orderflow.local/standin/python:3.11-bookworm", "--image-pull-policy=Never",
                       "--restart=Never", "--", "id"], check=False)
    assert result.returncode != 0 and "violates PodSecurity" in result.stderr, result.stderr


def test_every_pod_of_every_release_is_ready(deployed: kube.Kube) -> None:
    def all_ready() -> list[dict[str, Any]] | None:
        pods = [p for p in deployed.pods("app.kubernetes.io/part-of=orderflow")]
        names = {p["metadata"]["labels"].get("app.kubernetes.io/name") for p in pods}
        return pods if names >= EXPECTED and all(kube.ready(p) for p in pods) else None

    pods = until(all_ready, timeout=300, what="every Pod of the four releases to be Ready", interval=2)
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
    assert {"order", "inventory", "billing", "shipping", "operator"} <= components
    restarted = {p["metadata"]["name"]: _restart_evidence(deployed, p) for p in pods
                 if any(s["restartCount"] for s in p["status"]["containerStatuses"])}
    if restarted:  # the whole evidence, which an assertion's repr would cut short
        print("\n[e2e restarts]", json.dumps(restarted, indent=1))
    # Known and open (issue 9's closing note): the operator's container restarted once during the first deploy in
    # some runs, right after logging BrokerUnavailable while the dev broker came up. Tolerated once, with its
    # evidence printed above; a second restart (a crash loop) or any restart of another Pod fails.
    operator = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"]
    assert all(s["restartCount"] <= 1 for p in operator for s in p["status"]["containerStatuses"]), restarted
    assert not {n for n in restarted if n not in {p["metadata"]["name"] for p in operator}}, restarted


def _restart_evidence(k: kube.Kube, pod: dict[str, Any]) -> dict[str, Any]:
    """Why a container restarted: its last state (exit code, reason, signal) and the end of its previous log."""
    evidence: dict[str, Any] = {}
    for status in pod["status"]["containerStatuses"]:
        if status["restartCount"]:
            previous = kube.run(["kubectl", "--context", k.context, "-n", k.namespace, "logs", "--previous",
                                 pod["metadata"]["name"], "-c", status["name"], "--tail", "40"], check=False)
            evidence[status["name"]] = {"lastState": status.get("lastState"),
                                        "previous log": (previous.stdout + previous.stderr)[-4000:]}
    return evidence


@pytest.mark.parametrize("component", ["order", "billing", "operator", "kafka-dev", "postgres-dev"])
def test_pods_run_as_non_root_on_a_read_only_root_filesystem(deployed: kube.Kube, component: str) -> None:
    """Checked inside the running container, not only in the spec: the process's uid, and a write to / refused."""
    (pod, *_) = [p for p in deployed.pods(f"app.kubernetes.io/component={component}") if kube.ready(p)]
    name = pod["metadata"]["name"]
    for container in _containers(pod):
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True, (name, sc)
        assert sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False, (name, sc)
    uid = deployed.kubectl("exec", name, "--", "sh", "-c", "id -u").strip()
    assert uid != "0", (name, uid)
    write = kube.run(["kubectl", "--context", deployed.context, "-n", deployed.namespace, "exec", name, "--",
                      "sh", "-c", "touch /orderflow-probe"], check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr, (name, write.stderr)


def test_the_operator_reports_ready_and_each_stages_lag_from_the_real_consumer_groups(deployed: kube.Kube) -> None:
    def reported() -> dict[str, Any] | None:
        status = deployed.orderflow().get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        stages = status.get("stages") or []
        ok = conditions.get("Ready") == "True" and len(stages) == 4 and all("lag" in s for s in stages)
        return status if ok else None

    status = until(reported, timeout=180, what="the OrderFlow to be Ready with every stage's lag", interval=2)
    assert {s["name"] for s in status["stages"]} == {"order", "inventory", "billing", "shipping"}
    groups = {f"orderflow-{n}" for n in ("order", "inventory", "billing", "shipping")}
    assert {s["consumerGroup"] for s in status["stages"]} == groups
    assert all(s["partitions"] >= 1 and s["replicas"] >= 1 for s in status["stages"]), status["stages"]
    # `kubectl get of`, as the README shows it.
    table = deployed.kubectl("get", "of", "-o", "wide")
    header, row = table.strip().splitlines()[:2]
    assert header.split()[:3] == ["NAME", "READY", "REASON"], table
    assert row.split()[1] == "True", table
