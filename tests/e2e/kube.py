"""The e2e suite's hands on the cluster: kubectl, port-forwards that survive the Pod behind them, and the services
behind those port-forwards in the shape the invariant checks already know (``tests.support.invariants``).

Everything goes through the real CLIs (kubectl, helm, skaffold, kind) built by ``tests/e2e/cluster/up.sh``, the same
way a user drives the cluster; no Kubernetes client library stands in for them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from orderflow_dev import client
from orderflow_dev.stack import ServiceProcess, Stack
from orderflow_dev.wait import until

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_DIR = ROOT / "tests" / "e2e" / "cluster"
NAMESPACE = "orderflow"
CACHE = Path(os.environ.get("ORDERFLOW_CACHE") or Path.home() / ".cache" / "orderflow") / "kind"
#: The tools up.sh built, first on PATH (the docker shim directory before them, as up.sh sets it).
TOOL_PATH = f"{CACHE / 'path'}:{CACHE / 'bin'}:{os.environ.get('PATH', '')}"


def env() -> dict[str, str]:
    """The environment for every CLI the suite runs: the cluster's tools first on PATH."""
    real_docker = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
    return {**os.environ, "PATH": TOOL_PATH, "ORDERFLOW_REAL_DOCKER": os.environ.get("ORDERFLOW_DOCKER", real_docker),
            "DOCKER_CONFIG": str(CACHE / "docker-config"),
            # Written by up.sh (lib.sh skaffold_config): no metrics, no update check -- nothing leaves the machine.
            "SKAFFOLD_CONFIG": str(CACHE / "skaffold-config.yaml"), "SKAFFOLD_UPDATE_CHECK": "false"}


def run(args: Sequence[str], *, input: str | None = None, timeout: float = 300, check: bool = True,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a CLI; on failure the error carries its output."""
    result = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=timeout, env=env(),
                            cwd=cwd or ROOT)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} -> exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


class Kube:
    """kubectl (and helm) against one context and, by default, the flow's namespace."""

    def __init__(self, context: str, namespace: str = NAMESPACE) -> None:
        self.context = context
        self.namespace = namespace

    def kubectl(self, *args: str, namespace: str | None = None, **kw: Any) -> str:
        ns = namespace or self.namespace
        return run(["kubectl", "--context", self.context, "-n", ns, *args], **kw).stdout

    def json(self, *args: str, namespace: str | None = None) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json", namespace=namespace))

    def pods(self, selector: str = "", namespace: str | None = None) -> list[dict[str, Any]]:
        args = ["pods", "-l", selector] if selector else ["pods"]
        items: list[dict[str, Any]] = self.json(*args, namespace=namespace)["items"]
        return items

    def deployment(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.json("deployment", name)
        return result

    def orderflow(self, name: str = "orderflow") -> dict[str, Any]:
        result: dict[str, Any] = self.json("orderflow", name)
        return result

    def steady(self, selector: str = "app.kubernetes.io/part-of=orderflow") -> bool:
        """Every Deployment of the flow has all its replicas Ready and up to date, and no Pod is terminating: what a
        test that disturbs one Pod starts from (a scale-down left by an earlier test would disturb it too)."""
        for d in self.json("deployments", "-l", selector)["items"]:
            want, status = d["spec"].get("replicas", 1), d.get("status", {})
            if (status.get("readyReplicas", 0), status.get("updatedReplicas", 0), status.get("replicas", 0)) != (
                (want,) * 3
            ):
                return False
        return not any(p["metadata"].get("deletionTimestamp") for p in self.pods(selector))

    def diagnostics(self, components: Sequence[str], *, lines: int = 25) -> str:
        """Replicas, Pods and the last log lines of ``components``: printed when a test of the cluster fails."""
        out = [self.kubectl("get", "deployments,pods", "-o", "wide", check=False)]
        for c in components:
            out.append(f"----- {c} logs (last {lines} lines per Pod) -----")
            out.append(self.kubectl("logs", "-l", f"app.kubernetes.io/component={c}", "--tail", str(lines),
                                    "--prefix", "--max-log-requests", "10", check=False))
        return "\n".join(out)

    def helm(self, *args: str, **kw: Any) -> str:
        return run(["helm", "--kube-context", self.context, "-n", self.namespace, *args], **kw).stdout


def ready(pod: Mapping[str, Any]) -> bool:
    """A Pod that runs and whose containers are all ready (and that is not being deleted)."""
    if pod["metadata"].get("deletionTimestamp") or pod["status"].get("phase") != "Running":
        return False
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return conditions.get("Ready") == "True"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PortForward:
    """``kubectl port-forward svc/NAME LOCAL:REMOTE`` on 127.0.0.1, restarted whenever it exits.

    kubectl forwards to one Pod chosen when it starts and exits when that Pod goes (a scale-down, a forced delete);
    a watcher thread starts it again, so callers see a short window of refused connections -- which the suite's
    waits treat as "not yet" -- and never a dead forward.
    """

    def __init__(self, kube: Kube, target: str, remote: int, local: int | None = None) -> None:
        self.kube, self.target, self.remote = kube, target, remote
        self.local = local or free_port()
        self.url = f"http://127.0.0.1:{self.local}"
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self.restarts = -1
        self._thread = threading.Thread(target=self._watch, name=f"port-forward {target}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.restarts += 1
            self._proc = subprocess.Popen(
                ["kubectl", "--context", self.kube.context, "-n", self.kube.namespace, "port-forward",
                 "--address", "127.0.0.1", self.target, f"{self.local}:{self.remote}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(),
            )
            self._proc.wait()
            self._stop.wait(0.5)  # not a synchronisation: the back-off between restarts of a dead forward

    def wait_ready(self, path: str = "/healthz", timeout: float = 60) -> PortForward:
        def answers() -> bool:
            try:
                return client.call("GET", self.url + path, timeout=5)[0] == 200
            except OSError:
                return False

        until(answers, timeout=timeout, what=f"{self.url}{path} through the port-forward to {self.target}",
              interval=0.3)
        return self

    def close(self) -> None:
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        self._thread.join(10)


#: How long a call through a port-forward keeps retrying a refused or cut connection (the forward is restarting
#: after its Pod went away: a scale-down, a forced delete).
RETRY_S = 60.0


def _retrying(call: Callable[[], T]) -> T:
    deadline = time.monotonic() + RETRY_S
    while True:
        try:
            return call()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)  # the back-off between attempts of a deadline-bounded retry


class _Forwarded(ServiceProcess):
    """A service behind a port-forward: ``get``/``find`` as the harness's, retried while the forward restarts."""

    def get(self, path: str) -> Any:
        return _retrying(lambda: ServiceProcess.get(self, path))

    def find(self, path: str) -> Any:
        return _retrying(lambda: ServiceProcess.find(self, path))


class ClusterStack(Stack):
    """The four services of the cluster's release, reached through port-forwards: the same API as the process
    harness's ``Stack`` (place_order, wait_terminal, ``stack["billing"].get(...)``), so the invariant checks that
    prove the local runs prove the cluster too. Starting and stopping belong to Kubernetes here, not to this."""

    def __init__(self, forwards: Mapping[str, PortForward]) -> None:
        self.forwards = dict(forwards)
        self.replicas = []
        self.services = {
            name: _Forwarded(name, env={"ORDERFLOW_HTTP_PORT": str(pf.local)}, log_path=Path(os.devnull))
            for name, pf in forwards.items()
        }

    def put_stock(self, sku: str, available: int) -> Any:
        return _retrying(lambda: Stack.put_stock(self, sku, available))

    def put_account(self, customer_id: str, balance_minor: int, currency: str = "EUR") -> Any:
        return _retrying(lambda: Stack.put_account(self, customer_id, balance_minor, currency))

    def place_order(self, customer_id: str, items: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        """Retried like the rest, which is safe because every order carries an Idempotency-Key: a retry of a
        request that did reach the service gets the same order back, never a second one."""
        kw.setdefault("key", f"e2e-{uuid.uuid4().hex}")
        return _retrying(lambda: Stack.place_order(self, customer_id, items, **kw))

    def order(self, order_id: str) -> dict[str, Any]:
        return _retrying(lambda: Stack.order(self, order_id))

    def start(self, timeout: float = 90) -> None:
        raise NotImplementedError("the cluster runs the services")

    def stop(self) -> None:
        for pf in self.forwards.values():
            pf.close()

    def kill(self) -> None:
        self.stop()
