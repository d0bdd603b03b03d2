"""pytest plugin: a real kube-apiserver + etcd for the whole session.

Load it with ``-p tests.envtest.fixtures`` (or ``pytest_plugins = ["tests.envtest.fixtures"]`` in the root
conftest.py). Fixtures:

- ``envtest`` (session): a started :class:`orderflow_dev.envtest.EnvTest`.
- ``k8s_api_client`` (function): a ``kubernetes.client.ApiClient`` for the admin user of that API server.
- ``k8s_namespace`` (function): a fresh, uniquely named namespace; deleted afterwards without waiting
  (with no controller-manager a namespace stays ``Terminating`` for ever).

The binaries are built (or found in the cache) once, after collection and only when a selected test uses
``envtest``, so a long first build does not count against a test's timeout.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orderflow_dev.envtest import EnvTest, build

_BIN_DIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "envtest: needs the real kube-apiserver + etcd")


def _uses_envtest(item: pytest.Item) -> bool:
    return "envtest" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _uses_envtest(item):
            item.add_marker(pytest.mark.envtest)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or not any(_uses_envtest(i) for i in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("envtest: ensuring etcd/kube-apiserver/kubectl binaries (tests/envtest/build.sh)")
    # Outside any test, so pytest-timeout does not cut a first (uncached) build short.
    session.config.stash[_BIN_DIR] = build()


@pytest.fixture(scope="session")
def envtest(request: pytest.FixtureRequest) -> Iterator[EnvTest]:
    bin_dir = request.config.stash.get(_BIN_DIR, None)
    env = EnvTest(bin_dir=bin_dir)
    env.start()
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="session")
def _k8s_configuration(envtest: EnvTest):  # type: ignore[no-untyped-def]
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(envtest.kubeconfig), client_configuration=configuration)
    return configuration


@pytest.fixture
def k8s_api_client(_k8s_configuration) -> Iterator[object]:  # type: ignore[no-untyped-def]
    from kubernetes import client

    api_client = client.ApiClient(configuration=_k8s_configuration)
    try:
        yield api_client
    finally:
        api_client.close()
        # Close pooled connections now: left to the GC they raise ResourceWarning (an error under
        # filterwarnings = error).
        api_client.rest_client.pool_manager.clear()


@pytest.fixture
def k8s_namespace(k8s_api_client) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(k8s_api_client)
    name = f"test-{uuid.uuid4().hex[:16]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"orderflow.test/envtest": "true"}))
    )
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as e:  # already gone or being deleted
            if e.status not in (404, 409):
                raise
