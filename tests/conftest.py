"""Shared pytest fixtures for OrderFlow's tests. Keep this file small: only fixtures that many tests use.

Kafka (a real broker, never a fake):

* ``kafka_bootstrap`` (session): bootstrap servers from ``orderflow_dev.kafka.ensure_broker`` --
  ``ORDERFLOW_KAFKA_BOOTSTRAP`` if set, else the ``orderflow kafka start`` daemon if it runs, else a private
  broker started for this session (a few seconds; the very first run also fetches the jars with Maven).
  The broker has ``auto.create.topics.enable=false``: create the topics a test needs (``kafka_admin``).
* ``kafka_admin``: a confluent-kafka ``AdminClient`` on that broker.
* ``unique_prefix``: a fresh ``t<10 hex>`` per test. Build every topic and consumer-group name from it, so
  tests never share topics or groups (they may run against a long-lived broker).
"""

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orderflow.events import catalog
from orderflow_dev.kafka import ensure_broker
from orderflow_dev.stack import Stack

# The component behind each fixture, and so the marker every test that uses it (directly or through another fixture)
# must carry: `pytest -m "not kafka and not postgres and not envtest"` has to run with none of them.
COMPONENT_MARKERS = {
    "kafka_bootstrap": "kafka",
    "nats_url": "nats",
    "rabbitmq_url": "rabbitmq",
    "postgres_server": "postgres",
    "envtest": "envtest",
    "jaeger": "jaeger",
}


def unmarked_component_tests(items: list[pytest.Item]) -> list[str]:
    """``nodeid: uses <fixture> without @pytest.mark.<marker>`` for every item that lacks a marker it needs."""
    return [
        f"{item.nodeid}: uses {fixture} without @pytest.mark.{marker}"
        for item in items
        for fixture, marker in COMPONENT_MARKERS.items()
        if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(marker) is None
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = unmarked_component_tests(items)
    if unmarked:
        raise pytest.UsageError("tests that need a component must carry its marker:\n  " + "\n  ".join(unmarked))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers ("host:port") of a running Kafka broker, for the whole test session."""
    with ensure_broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """URL (``nats://host:port``) of a NATS server with JetStream: ``ORDERFLOW_NATS_URL`` or a private one."""
    from orderflow_dev.nats import ensure_server

    with ensure_server() as url:
        yield url


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """URL (``amqp://user:pass@host:port/vhost``) of a RabbitMQ server: ``ORDERFLOW_RABBITMQ_URL`` or a private one."""
    from orderflow_dev.rabbitmq import ensure_server

    with ensure_server() as url:
        yield url


@pytest.fixture
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    """An AdminClient connected to ``kafka_bootstrap``."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def unique_prefix() -> str:
    """A prefix unique to this test, for topic and consumer-group names."""
    return f"t{uuid.uuid4().hex[:10]}"


# -- the services as real processes --------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def make_stack(
    request: pytest.FixtureRequest, kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> Iterator[Callable[..., Stack]]:
    """Start services as ``orderflow run`` processes on this test's topics: ``make_stack(services=[...], env={...})``.

    ``database="postgres"`` puts each service on its own database of the session's real PostgreSQL server;
    ``transport="nats"|"rabbitmq"`` runs them on that broker (the session's ``nats_url`` / ``rabbitmq_url``).

    On a failed test the tail of every service log is printed, which is usually where the answer is.
    """
    stacks: list[Stack] = []

    def make(*, database: str = "sqlite", transport: str = "kafka", **kwargs: Any) -> Stack:
        workdir = tmp_path / f"stack{len(stacks)}"
        if transport != "kafka":
            kwargs["transport"] = transport
            kwargs["transport_url"] = request.getfixturevalue(f"{transport}_url")
        if database == "postgres":
            # One PostgreSQL database per service (and per stack), on the session's real server.
            server = request.getfixturevalue("postgres_server")
            names = kwargs.get("services", catalog.SERVICES)
            kwargs["database_urls"] = {s: server.create_database(f"{unique_prefix}_{len(stacks)}_{s}") for s in names}
        elif database != "sqlite":
            raise ValueError(f"unknown database {database!r}")
        stack = Stack(bootstrap=kafka_bootstrap, prefix=unique_prefix, workdir=workdir, **kwargs)
        stacks.append(stack)
        stack.start()
        return stack

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for stack in stacks:
        stack.stop()
        if failed:
            for service in stack.processes():
                print(f"\n----- {service.name} log (tail) -----\n{service.log_tail(40)}")


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    """All four services, started and ready."""
    return make_stack()


# The real kube-apiserver + etcd (+ kubectl): fixtures ``envtest``, ``k8s_namespace``, ``k8s_api_client``.
pytest_plugins = ["tests.envtest.fixtures", "tests.support.postgres"]
