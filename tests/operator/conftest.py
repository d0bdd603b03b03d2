"""Fixtures for the operator's tests: the CRD installed on the envtest API server, a per-test namespace with
the operator running against it as a real process, and the kubeconfig it uses.

The envtest fixtures (``envtest``, ``k8s_api_client``, ``k8s_namespace``) come from the
``tests.envtest.fixtures`` plugin and the Kafka ones (``kafka_bootstrap``, ``kafka_admin``, ``unique_prefix``)
from the root conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orderflow_dev import operatorkit as kit


@pytest.fixture(scope="session")
def orderflow_crd(envtest: Any) -> str:
    """Install the chart's CRD once per session and wait until it is served and explained."""
    envtest.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(kit.CRD_FILE), check=True)
    envtest.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/orderflows.orderflow.dev", check=True)
    kit.wait_for(
        lambda: envtest.kubectl("explain", "orderflow.spec.stages").returncode == 0,
        timeout=60,
        interval=0.25,
        message="the OrderFlow schema never showed up in the published OpenAPI",
    )
    return "orderflows.orderflow.dev"


@pytest.fixture
def flow_namespace(orderflow_crd: str, k8s_namespace: str) -> str:
    """A fresh namespace on an API server that knows OrderFlows."""
    return k8s_namespace


@pytest.fixture
def run_operator(
    request: pytest.FixtureRequest, envtest: Any, tmp_path: Path
) -> Iterator[Callable[..., kit.OperatorProcess]]:
    """Start the operator as a process: ``run_operator(namespaces=[ns])``; the log tail prints on failure."""
    started: list[kit.OperatorProcess] = []

    def start(*, namespaces: list[str] | None = None, kubeconfig: Path | None = None) -> kit.OperatorProcess:
        proc = kit.OperatorProcess(
            kubeconfig=kubeconfig or Path(envtest.kubeconfig),
            log_path=tmp_path / f"operator-{len(started)}.log",
            namespaces=namespaces,
        )
        started.append(proc)
        return proc.start()

    yield start
    report = getattr(request.node, "rep_call", None)
    for proc in started:
        code = proc.stop()
        if report is not None and report.failed:
            print(f"\n----- operator log (tail, exit {code}) -----\n{proc.log_tail(80)}")


@pytest.fixture
def operator_in(run_operator: Callable[..., kit.OperatorProcess], flow_namespace: str) -> kit.OperatorProcess:
    """The operator, watching this test's namespace only."""
    return run_operator(namespaces=[flow_namespace])
