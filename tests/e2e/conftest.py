"""The e2e suite's one cluster and one deployment, shared by every test (`make e2e`).

* ``cluster`` (session): ``tests/e2e/cluster/up.sh`` -- a real kind cluster whose Pods run on a real kubelet, every
  part built here from registries only and cached (see that script); its kubeconfig context.
* ``deployed`` (session): the namespace ``orderflow`` labelled to *enforce* Pod Security "restricted", then the
  whole product deployed exactly as ``skaffold.yaml`` says, by skaffold itself: ``skaffold run -p kind,standins``
  builds the image from our Dockerfile, loads it into kind and installs the four Helm releases in dependency order
  (the ``standins`` profile only swaps in the local stand-ins for images Docker Hub would serve).
* ``stack`` (session): the four services through port-forwards, as ``tests.support.invariants`` expects them.

The cluster is deleted at the end unless ``ORDERFLOW_E2E_KEEP=1`` (then the next run reuses it).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from tests.e2e import kube

pytestmark = pytest.mark.e2e

SKAFFOLD = yaml.safe_load((kube.ROOT / "skaffold.yaml").read_text())
PROFILES = "kind,standins"
#: The Pod Security level the namespace enforces (README "Run it on Kubernetes").
POD_SECURITY = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}


def _up() -> str:
    """Run up.sh (its progress on stderr, as `make e2e` shows it); return the context it prints last."""
    result = subprocess.run(["bash", str(kube.CLUSTER_DIR / "up.sh")], stdout=subprocess.PIPE, text=True,
                            env=kube.env(), check=False)
    if result.returncode != 0:
        raise RuntimeError(f"tests/e2e/cluster/up.sh failed (exit {result.returncode}); its log is above")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def cluster() -> Iterator[kube.Kube]:
    context = _up()
    assert context == SKAFFOLD_CONTEXT, f"up.sh made {context}; skaffold.yaml's kind profile uses {SKAFFOLD_CONTEXT}"
    yield kube.Kube(context)
    if os.environ.get("ORDERFLOW_E2E_KEEP") != "1":
        subprocess.run(["bash", str(kube.CLUSTER_DIR / "down.sh")], env=kube.env(), check=False)


def _kind_profile_context() -> str:
    (profile,) = [p for p in SKAFFOLD["profiles"] if p["name"] == "kind"]
    context: str = profile["deploy"]["kubeContext"]
    return context


SKAFFOLD_CONTEXT = _kind_profile_context()


def namespace_with_pod_security(k: kube.Kube) -> None:
    """The README's first step: the namespace, enforcing Pod Security "restricted" before anything runs in it."""
    if k.kubectl("get", "namespace", k.namespace, "--ignore-not-found", "-o", "name").strip() == "":
        k.kubectl("create", "namespace", k.namespace)
    k.kubectl("label", "namespace", k.namespace, "--overwrite", *(f"{key}={v}" for key, v in POD_SECURITY.items()))


def skaffold_run(k: kube.Kube, *, timeout: float = 1200) -> str:
    """``skaffold run -p kind,standins``: build, load into kind, install every release; return skaffold's output."""
    result = kube.run(["skaffold", "run", "-p", PROFILES, "--status-check=true", "--port-forward=off"],
                      timeout=timeout)
    return result.stdout + result.stderr


@pytest.fixture(scope="session")
def deployed(cluster: kube.Kube) -> kube.Kube:
    namespace_with_pod_security(cluster)
    skaffold_run(cluster)
    return cluster


@pytest.fixture(scope="session")
def forwards(deployed: kube.Kube) -> Iterator[dict[str, kube.PortForward]]:
    """A port-forward per service (to its Service, as the README does), each answering /healthz."""
    pfs = {name: kube.PortForward(deployed, f"svc/orderflow-{name}", 8080)
           for name in ("order", "inventory", "billing", "shipping")}
    try:
        for pf in pfs.values():
            pf.wait_ready()
        yield pfs
    finally:
        for pf in pfs.values():
            pf.close()


@pytest.fixture(scope="session")
def stack(forwards: dict[str, kube.PortForward]) -> kube.ClusterStack:
    return kube.ClusterStack(forwards)
