"""`helm uninstall` of every release leaves nothing of ours behind -- but the CRD, which Helm never deletes from a
chart's crds/ (README "Run it on Kubernetes" says so and how to remove it)."""

from __future__ import annotations

import json

import pytest

from orderflow_dev.wait import until
from tests.e2e import kube
from tests.e2e.conftest import SKAFFOLD

pytestmark = pytest.mark.e2e

#: What Kubernetes itself puts in every namespace.
DEFAULTS = {"configmap/kube-root-ca.crt", "serviceaccount/default"}


def _namespaced_kinds(k: kube.Kube) -> list[str]:
    out = kube.run(["kubectl", "--context", k.context, "api-resources", "--verbs=list", "--namespaced", "-o", "name"])
    return [r for r in out.stdout.split() if r not in {"events", "events.events.k8s.io"}]


def _leftovers(k: kube.Kube, kinds: list[str]) -> set[str]:
    items = json.loads(k.kubectl("get", ",".join(kinds), "-o", "json", "--ignore-not-found"))["items"] if kinds else []
    names = {f"{i['kind'].lower()}/{i['metadata']['name']}" for i in items}
    return {n for n in names if n not in DEFAULTS}


def test_helm_uninstall_leaves_nothing_but_the_crd(deployed: kube.Kube) -> None:
    releases = [r["name"] for r in SKAFFOLD["deploy"]["helm"]["releases"]]
    installed = {r["name"] for r in json.loads(deployed.helm("list", "-o", "json"))}
    assert installed == set(releases), installed
    for name in reversed(releases):  # the reverse of skaffold's dependency order
        deployed.helm("uninstall", name, "--wait", "--timeout", "180s", timeout=240)
    kinds = _namespaced_kinds(deployed)
    until(lambda: not _leftovers(deployed, kinds), timeout=180, what="every object of the releases to be gone",
          interval=1)
    cluster_roles = {r["metadata"]["name"] for r in deployed.json("clusterroles", namespace="default")["items"]}
    assert not {r for r in cluster_roles if "orderflow" in r}, f"cluster-scoped RBAC left: {cluster_roles}"
    bindings = {b["metadata"]["name"] for b in deployed.json("clusterrolebindings", namespace="default")["items"]}
    assert not {b for b in bindings if "orderflow" in b}, bindings
    crds = {c["metadata"]["name"] for c in deployed.json("crds", namespace="default")["items"]}
    assert "orderflows.orderflow.dev" in crds  # kept, by Helm's rule for crds/
