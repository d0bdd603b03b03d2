"""Orders through the cluster: the README's own commands verbatim, then a mix of outcomes with every invariant of the
design brief checked through the services' HTTP APIs (the same checks that prove the local runs)."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from orderflow_dev.wait import until
from tests.e2e import kube, readme
from tests.e2e.conftest import SKAFFOLD
from tests.support import invariants

pytestmark = pytest.mark.e2e


def test_the_readme_sets_the_cluster_up_as_the_suite_does() -> None:
    """The first block is what up.sh and the fixtures run (up.sh adds only --image for the offline node image; the
    suite's skaffold adds the `standins` profile)."""
    first, _second = readme.bash_blocks()
    assert first == [
        "kind create cluster --config tests/e2e/kind-config.yaml",
        "kubectl create namespace orderflow",
        "kubectl label namespace orderflow pod-security.kubernetes.io/enforce=restricted",
        "skaffold dev -p kind",
    ]
    up = (kube.CLUSTER_DIR / "up.sh").read_text()
    assert '--config "$E2E_HERE/../kind-config.yaml"' in up


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_readme_curl_sequence_verbatim(deployed: kube.Kube, forwards: dict[str, kube.PortForward]) -> None:
    """Each command of the README's second terminal, as bash runs it; skaffold dev's port-forward of the order API
    (skaffold.yaml `portForward`) is made the way skaffold makes it. Nothing is rephrased: a README edit that breaks
    a user's copy-paste breaks this test."""
    (pf_spec,) = SKAFFOLD["portForward"]
    order_api = kube.PortForward(deployed, f"{pf_spec['resourceType']}/{pf_spec['resourceName']}", pf_spec["port"],
                                 local=pf_spec["localPort"]).wait_ready()
    background: list[subprocess.Popen[bytes]] = []
    outputs: list[str] = []
    order_id = ""
    try:
        for command in readme.bash_blocks()[1]:
            if command.endswith("&"):
                background.append(subprocess.Popen(["bash", "-c", command[:-1]], env=kube.env(),
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                port = int(command.split()[-2].split(":")[0])
                until(lambda p=port: _listening(p), timeout=30, what=f"`{command}` to listen", interval=0.2)
                continue
            if "<order_id>" in command:
                command = command.replace("<order_id>", shlex.quote(order_id))

                def shipped(c: str = command) -> dict[str, object] | None:
                    body = json.loads(kube.run(["bash", "-c", c]).stdout)
                    return body if body.get("status") == "SHIPPED" else None

                order = until(shipped, timeout=60, what="the README's order to be SHIPPED", interval=0.5)
                assert next(e["type"].split(".")[2:4] for e in order["timeline"]) == ["order", "created"], order
                outputs.append(json.dumps(order))
                continue
            out = kube.run(["bash", "-c", command]).stdout
            outputs.append(out)
            if "/orders" in command and "-d" in command:
                order_id = json.loads(out)["order_id"]
        assert order_id, outputs
        assert "True" in outputs[0].splitlines()[1], outputs[0]  # kubectl get of: Ready
    finally:
        for proc in background:
            proc.terminate()
            proc.wait(10)
        order_api.close()


def test_a_mix_of_outcomes_keeps_every_invariant(stack: kube.ClusterStack) -> None:
    """Shipped, out of stock and payment declined, placed concurrently through the order API's port-forward."""
    run = uuid.uuid4().hex[:6]
    skus = {f"E2E-{run}-A": 40, f"E2E-{run}-B": 5}
    customers = {f"rich-{run}": 10_000_000, f"poor-{run}": 3_000}
    for sku, qty in skus.items():
        stack.put_stock(sku, qty)
    for customer, balance in customers.items():
        stack.put_account(customer, balance)
    plan = []
    for i in range(120):
        customer = f"poor-{run}" if i % 6 == 0 else f"rich-{run}"
        sku = f"E2E-{run}-B" if i % 5 == 0 else f"E2E-{run}-A"
        plan.append((customer, [{"sku": sku, "quantity": 1, "unit_price_minor": 1500}]))
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        placed = list(pool.map(lambda p: stack.place_order(p[0], p[1]), plan))
    orders = invariants.settle(stack, [o["order_id"] for o in placed], timeout=180)
    elapsed = time.monotonic() - start
    outcomes = invariants.check(stack, orders, initial_stock=skus, initial_balance=customers)
    print(f"\n[e2e figure] {len(orders)} orders through the cluster, accepted -> settled in {elapsed:.1f} s: "
          f"{len(orders) / elapsed:.1f} orders/s; outcomes {dict(outcomes)}")
    assert outcomes["SHIPPED"] and outcomes["CANCELLED/out_of_stock"] and outcomes["CANCELLED/payment_declined"]
