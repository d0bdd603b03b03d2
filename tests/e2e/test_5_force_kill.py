"""A Pod killed with `--grace-period=0 --force` while orders flow: the Deployment recovers, and every order still
ends once with stock and money conserved (the inbox, the outbox and offsets-after-commit on a real kubelet)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from orderflow_dev.wait import until
from tests.e2e import kube
from tests.support import invariants

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("service", ["inventory", "shipping"])
def test_a_force_killed_pod_under_load_changes_nothing(deployed: kube.Kube, stack: kube.ClusterStack,
                                                        service: str) -> None:
    # From a steady cluster: an earlier test's scale-down still draining would stall a stage of its own.
    until(deployed.steady, timeout=180, what="every Deployment of the flow steady (no Pod starting or terminating)",
          interval=1)
    run = uuid.uuid4().hex[:6]
    skus = {f"KILL-{run}": 150}
    customers = {f"kill-{run}": 1_000_000, f"broke-{run}": 500}
    for sku, qty in skus.items():
        stack.put_stock(sku, qty)
    for customer, balance in customers.items():
        stack.put_account(customer, balance)
    (victim, *_) = [p["metadata"]["name"] for p in deployed.pods(f"app.kubernetes.io/component={service}")
                    if kube.ready(p)]

    placed: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            for i in range(200):
                customer = f"broke-{run}" if i % 10 == 0 else f"kill-{run}"
                placed.append(stack.place_order(customer, [{"sku": f"KILL-{run}", "quantity": 1,
                                                            "unit_price_minor": 1000}]))
        except BaseException as e:  # surfaced below: a failed intake must fail the test
            errors.append(e)

    loader = threading.Thread(target=load)
    loader.start()
    until(lambda: len(placed) >= 50, timeout=60, what="orders to be flowing", interval=0.1)
    killed = time.monotonic()
    deployed.kubectl("delete", "pod", victim, "--grace-period=0", "--force")
    loader.join(120)
    assert not errors, errors

    def recovered() -> bool:
        fresh = [p for p in deployed.pods(f"app.kubernetes.io/component={service}") if p["metadata"]["name"] != victim]
        return any(kube.ready(p) for p in fresh)

    until(recovered, timeout=180, what=f"a new {service} Pod to be Ready", interval=0.5)
    recovered_after = time.monotonic() - killed
    try:
        orders = invariants.settle(stack, [o["order_id"] for o in placed], timeout=240)
        outcomes = invariants.check(stack, orders, initial_stock=skus, initial_balance=customers)
        print(f"\n[e2e figure] {service} Pod force-deleted under load: a new Pod Ready after {recovered_after:.1f} s; "
              f"{len(orders)} orders, outcomes {dict(outcomes)}")
        assert outcomes["SHIPPED"] > 0, dict(outcomes)
    except BaseException:
        print(deployed.diagnostics(["order", "inventory", "billing", "shipping"]))
        raise
