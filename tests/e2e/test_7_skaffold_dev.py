"""`skaffold dev` as a user runs it: it deploys the whole product, a change to a service's source is rebuilt and
rolled out, and Ctrl-C stops it cleanly and removes the releases.

It runs in a copy of the checkout (a fresh git repository, as a clone is), so the edit never touches the tree under
test. Last in the suite but the uninstall check before it: it starts from an empty namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from orderflow.order import service as order_service
from orderflow_dev.wait import until
from tests.e2e import kube
from tests.e2e.conftest import PROFILES, SKAFFOLD

pytestmark = pytest.mark.e2e

SERVICES = [f"orderflow-{s}" for s in ("order", "inventory", "billing", "shipping")]


def _checkout_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=kube.ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = kube.ROOT / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=e2e", "-c", "user.email=e2e@orderflow.local",
                                                 "commit", "-q", "-m", "copy of the checkout under test"]):
        subprocess.run(["git", *args], cwd=dest, check=True)
    return dest


def _rolled_out(k: kube.Kube, name: str) -> dict[str, Any] | None:
    d = k.deployment(name)
    status = d["status"]
    done = (d["metadata"]["generation"] == status.get("observedGeneration")
            and status.get("updatedReplicas") == status.get("replicas") == status.get("readyReplicas")
            and not status.get("unavailableReplicas"))
    return d if done else None


def _running_images(k: kube.Kube, component: str) -> set[str]:
    return {c["imageID"] for p in k.pods(f"app.kubernetes.io/component={component}") if kube.ready(p)
            for c in p["status"]["containerStatuses"]}


def test_skaffold_dev_rebuilds_and_rolls_out_a_source_change(deployed: kube.Kube, tmp_path: Path) -> None:
    k = deployed
    assert json.loads(k.helm("list", "-o", "json")) == [], "the uninstall test leaves an empty namespace"
    repo = _checkout_copy(tmp_path / "checkout")
    log = (tmp_path / "skaffold-dev.log").open("w")
    dev = subprocess.Popen(["skaffold", "dev", "-p", PROFILES], cwd=repo, env=kube.env(), stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    try:
        start = time.monotonic()
        until(lambda: all(_rolled_out(k, d) for d in SERVICES) if _exists(k, SERVICES) else False,
              timeout=900, what="skaffold dev to deploy every service", interval=2)
        deployed_after = time.monotonic() - start
        (pf,) = SKAFFOLD["portForward"]
        order_api = kube.PortForward(k, f"svc/{pf['resourceName']}", pf["port"])
        order_api.wait_ready()
        order_api.close()
        # The edit must come after skaffold has listed what it watches, or it is part of the baseline.
        until(lambda: "Watching for changes" in (tmp_path / "skaffold-dev.log").read_text(), timeout=120,
              what="skaffold dev to watch the sources", interval=1)
        before = _running_images(k, "order")
        image_before = k.deployment("orderflow-order")["spec"]["template"]["spec"]["containers"][0]["image"]

        source = repo / Path(order_service.__file__).resolve().relative_to(kube.ROOT)
        source.write_text(source.read_text() + "\n# edited by the e2e suite: skaffold dev must rebuild and roll out\n")
        changed = time.monotonic()

        def new_image_rolled_out() -> bool:
            after = _running_images(k, "order")
            return bool(after) and not (after & before) and _rolled_out(k, "orderflow-order") is not None

        until(new_image_rolled_out, timeout=600, what="the edited order service to be rebuilt and rolled out",
              interval=2)
        rolled_after = time.monotonic() - changed
        image_after = k.deployment("orderflow-order")["spec"]["template"]["spec"]["containers"][0]["image"]
        print(f"\n[e2e figure] skaffold dev: deployed in {deployed_after:.0f} s; source change -> new Pods Ready "
              f"in {rolled_after:.0f} s ({image_before} -> {image_after})")
    finally:
        os_killpg(dev, signal.SIGINT)  # Ctrl-C, as the user stops it
        try:
            code = dev.wait(300)
        finally:
            log.close()
            if dev.poll() is None:
                os_killpg(dev, signal.SIGKILL)
    output = (tmp_path / "skaffold-dev.log").read_text()
    assert code == 0, output[-4000:]
    until(lambda: json.loads(k.helm("list", "-o", "json")) == [], timeout=120,
          what="skaffold dev's cleanup to remove every release", interval=1)


def _exists(k: kube.Kube, names: list[str]) -> bool:
    out = k.kubectl("get", "deployments", "-o", "name", "--ignore-not-found")
    return all(f"deployment.apps/{n}" in out for n in names)


def os_killpg(proc: subprocess.Popen[Any], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
