"""The operator on real Pods: a stage that falls behind is scaled up, the new Pods start on the kubelet, join the
consumer group and drain the lag, and after the stabilization window the stage is scaled back down.

The stage is made to fall behind the way the demo does it locally: its process is paused (SIGSTOP, sent from the
node, outside the Pod's PID namespace) while a burst of orders arrives, and resumed once the operator has patched
the Deployment. The OrderFlow is tuned the way a user would tune it for a quick look (2 s interval, 30 s window, a
lag target of 100 per replica) and restored afterwards.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from orderflow_dev.wait import until
from tests.e2e import kube
from tests.support import invariants

pytestmark = pytest.mark.e2e

STAGE = "billing"
DEPLOYMENT = f"orderflow-{STAGE}"
NODE = "kind-control-plane"


def _stage(status: dict[str, Any], name: str = STAGE) -> dict[str, Any]:
    (stage,) = [s for s in status.get("stages", []) if s["name"] == name]
    return stage


@pytest.fixture
def tuned(deployed: kube.Kube) -> Iterator[kube.Kube]:
    spec = deployed.orderflow()["spec"]
    index = [s["name"] for s in spec["stages"]].index(STAGE)
    patch = [
        {"op": "replace", "path": "/spec/scaling/intervalSeconds", "value": 2},
        {"op": "replace", "path": "/spec/scaling/scaleDownStabilizationSeconds", "value": 30},
        {"op": "replace", "path": f"/spec/stages/{index}/lagPerReplica", "value": 100},
    ]
    deployed.kubectl("patch", "orderflow", "orderflow", "--type", "json", "-p", json.dumps(patch))
    try:
        yield deployed
    finally:
        restore = [
            {"op": "replace", "path": "/spec/scaling/intervalSeconds", "value": spec["scaling"]["intervalSeconds"]},
            {"op": "replace", "path": "/spec/scaling/scaleDownStabilizationSeconds",
             "value": spec["scaling"]["scaleDownStabilizationSeconds"]},
            {"op": "replace", "path": f"/spec/stages/{index}/lagPerReplica",
             "value": spec["stages"][index]["lagPerReplica"]},
        ]
        deployed.kubectl("patch", "orderflow", "orderflow", "--type", "json", "-p", json.dumps(restore))


def _signal_stage(signal: str) -> None:
    """SIGSTOP/SIGCONT every process of the stage, from the node (the Pod's own PID 1 cannot be stopped from inside)."""
    kube.run(["docker", "exec", NODE, "pkill", f"-{signal}", "-f", f"orderflow run {STAGE}"])


def test_a_stage_that_falls_behind_is_scaled_up_drained_and_scaled_back_down(
    tuned: kube.Kube, stack: kube.ClusterStack, request: pytest.FixtureRequest
) -> None:
    k = tuned
    assert k.deployment(DEPLOYMENT)["spec"]["replicas"] == 1
    run = uuid.uuid4().hex[:6]
    sku, customer = f"SCALE-{run}", f"scale-{run}"
    stack.put_stock(sku, 10_000)
    stack.put_account(customer, 100_000_000)

    samples: list[tuple[float, int, int]] = []  # (time, spec.replicas, readyReplicas), sampled from the burst on
    sampling = threading.Event()
    request.addfinalizer(sampling.set)

    def sample() -> None:
        while not sampling.is_set():
            d = k.deployment(DEPLOYMENT)
            samples.append((time.monotonic(), d["spec"]["replicas"], d["status"].get("readyReplicas") or 0))
            sampling.wait(0.25)  # the sampling period, not a synchronisation

    _signal_stage("STOP")
    sampler = threading.Thread(target=sample, daemon=True)
    try:
        burst = time.monotonic()
        sampler.start()
        with ThreadPoolExecutor(8) as pool:
            placed = list(pool.map(lambda _: stack.place_order(customer, [
                {"sku": sku, "quantity": 1, "unit_price_minor": 100}]), range(400)))
        accepted = time.monotonic()
        until(lambda: any(r > 1 for _, r, _ in samples), timeout=120,
              what=f"the operator to scale {DEPLOYMENT} up", interval=0.25)
    finally:
        _signal_stage("CONT")
    patched, replicas = next((t, r) for t, r, _ in samples if r > 1)

    until(lambda: any(t > patched and ready >= replicas for t, _, ready in samples), timeout=180,
          what=f"{replicas} Ready Pods of {DEPLOYMENT}", interval=0.5)
    pods_ready = next(t for t, _, ready in samples if t > patched and ready >= replicas)

    def drained() -> bool:
        return _stage(k.orderflow()["status"]).get("lag") == 0

    until(drained, timeout=180, what=f"the {STAGE} stage's lag to drain", interval=0.5)
    lag_drained = time.monotonic()
    members = _ready_members(k)
    assert members >= 2, f"the new Pods did not join the consumer group (members with partitions: {members})"
    orders = invariants.settle(stack, [o["order_id"] for o in placed], timeout=180)
    assert {o["status"] for o in orders.values()} == {"SHIPPED"}

    def scaled_down() -> bool:
        return k.deployment(DEPLOYMENT)["spec"]["replicas"] == 1

    until(scaled_down, timeout=180, what=f"{DEPLOYMENT} to be scaled back down after the window", interval=1)
    scaled_back = time.monotonic()
    sampling.set()
    sampler.join(10)
    events = k.kubectl("get", "events", "--field-selector", "involvedObject.kind=OrderFlow", "-o", "json")
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    print(f"\n[e2e figure] {STAGE}: 400 orders accepted in {accepted - burst:.1f} s; "
          f"burst -> scale patch {patched - burst:.1f} s (to {replicas} replicas; {patched - accepted:.1f} s after "
          f"the last order was accepted); "
          f"patch -> new Pods Ready {pods_ready - patched:.1f} s; burst -> lag drained {lag_drained - burst:.1f} s; "
          f"drained -> scaled back down {scaled_back - lag_drained:.1f} s; Events: {sorted(reasons)}")
    assert any("Scal" in r for r in reasons), reasons


def _ready_members(k: kube.Kube) -> int:
    """How many of the stage's Pods hold partitions: each reports its assignment in /metrics."""
    count = 0
    for pod in k.pods(f"app.kubernetes.io/component={STAGE}"):
        if not kube.ready(pod):
            continue
        metrics = k.kubectl("exec", pod["metadata"]["name"], "--", "python3", "-c",
                            "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:8080/metrics').read().decode())")
        assigned = [line for line in metrics.splitlines() if line.startswith("orderflow_assigned_partitions")]
        if any(float(line.rsplit(" ", 1)[1]) > 0 for line in assigned):
            count += 1
    return count
