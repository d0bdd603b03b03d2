"""The transport section of an OrderFlow and the backlog seam, without a broker or an API server.

``spec.transport.type`` picks the reader: Kafka's offsets reader as before, or the transport package's
``backlog.read`` for NATS and RabbitMQ, imported only when a flow needs it. Stand-in reader modules are put
where the real ones live (``sys.modules``), so the lazy import itself is what is tested; a whole reconcile tick
runs against them and a small in-memory Kubernetes API. The real servers are in test_transport_scaling.py.
"""

from __future__ import annotations

import asyncio
import re
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from orderflow import errors as orderflow_errors
from orderflow.runtime import config
from orderflow_operator import backlog, errors, offsets, reconcile, spec
from orderflow_operator.spec import Transport

STAGE = {
    "name": "inventory",
    "deployment": "inventory",
    "consumerGroup": "p-inventory",
    "topics": ["p.orders", "p.payments"],
    "maxReplicas": 8,
    "lagPerReplica": 100,
}


def flow_spec(**sections: Any) -> dict[str, Any]:
    return {"stages": [dict(STAGE)], "scaling": {"intervalSeconds": 1}, **sections}


# -- the spec ------------------------------------------------------------------------------------------------


def test_a_flow_without_a_transport_section_is_a_kafka_flow_as_before() -> None:
    flow = spec.parse(flow_spec(kafka={"bootstrapServers": "k:9092", "secretRef": {"name": "s"}}))
    assert flow.transport is Transport.KAFKA and flow.broker is None
    assert flow.kafka == spec.KafkaSpec(bootstrap_servers="k:9092", secret_name="s")
    same = spec.parse(flow_spec(transport={"type": "kafka"}, kafka={"bootstrapServers": "k:9092"}))
    assert same.transport is Transport.KAFKA and same.kafka is not None


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"type": "nats", "nats": {"url": "nats://n:4222"}}, spec.BrokerSpec(url="nats://n:4222")),
        ({"type": "rabbitmq", "rabbitmq": {"secretRef": {"name": "mq"}}}, spec.BrokerSpec(secret_name="mq")),
        (
            {"type": "rabbitmq", "rabbitmq": {"url": "amqp://h:5672/%2F", "secretRef": {"name": "mq"}}},
            spec.BrokerSpec(url="amqp://h:5672/%2F", secret_name="mq"),
        ),
    ],
)
def test_nats_and_rabbitmq_flows_take_their_own_section_and_need_no_kafka(
    section: dict[str, Any], expected: spec.BrokerSpec
) -> None:
    flow = spec.parse(flow_spec(transport=section))
    assert flow.transport.value == section["type"] and flow.kafka is None and flow.broker == expected


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({}, "spec.kafka is required when spec.transport.type is kafka"),
        ({"transport": {"type": "nats"}}, "spec.transport.nats is required"),
        ({"transport": {"type": "rabbitmq", "nats": {"url": "nats://n:4222"}}}, "spec.transport.rabbitmq is required"),
        ({"transport": {"type": "nats", "nats": {}}}, "needs url or secretRef"),
        ({"transport": {"type": "sqs"}}, "'sqs' is not one of kafka, nats, rabbitmq"),
    ],
)
def test_a_transport_without_its_section_is_an_invalid_spec(sections: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.InvalidSpec, match=message):
        spec.parse(flow_spec(**sections))


# -- settings from a Secret ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", [Transport.NATS, Transport.RABBITMQ])
def test_a_secret_of_orderflow_variables_gives_what_a_service_reads_from_them(transport: Transport) -> None:
    """One Secret serves the services (envFrom) and the operator: the same URL, the same options."""
    prefix = f"ORDERFLOW_{transport.value.upper()}_"
    secret = {f"{prefix}URL": "x://u:p@h:1", f"{prefix}TLS_CA": "/ca.pem", f"{prefix}USER": "u",
              "ORDERFLOW_KAFKA_BOOTSTRAP": "k:9092", "unrelated": "1"}
    url, options = backlog.from_secret(secret, transport)
    assert url == "x://u:p@h:1"
    assert options == config.transport_options(secret, transport.value) == {"tls_ca": "/ca.pem", "user": "u"}
    assert backlog.from_secret({}, transport) == (None, {})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://orderflow:s3cret@mq:5672/%2F", "amqp://orderflow:***@mq:5672/%2F"),
        ("nats://a:1@n1:4222,nats://b:2@n2:4222", "nats://a:***@n1:4222,nats://b:***@n2:4222"),
        ("nats://token@n:4222", "nats://token@n:4222"),
        ("amqp://mq:5672", "amqp://mq:5672"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert backlog.redact(url) == shown


# -- the readers ---------------------------------------------------------------------------------------------


class FakeReader:
    """A transport's ``backlog.read``: answers ``counts`` (or raises ``error``) and records each call."""

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self.counts = dict(counts or {})
        self.error: BaseException | None = None
        self.calls: list[tuple[str, dict[str, str], str, list[str]]] = []

    def read(self, url: str, options: Mapping[str, str], *, group: str, channels: Sequence[str]) -> dict[str, int]:
        self.calls.append((url, dict(options), group, list(channels)))
        if self.error is not None:
            raise self.error
        return {c: self.counts[c] for c in channels if c in self.counts}


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Callable[[Transport, FakeReader | None], None]:
    """Put a fake reader module where ``orderflow.transport.<name>.backlog`` is imported from (None: not installed)."""

    def put(transport: Transport, fake: FakeReader | None) -> None:
        if fake is None:
            monkeypatch.setitem(sys.modules, backlog.READERS[transport], None)  # an import of it fails
            return
        module = types.ModuleType(backlog.READERS[transport])
        module.read = fake.read  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, backlog.READERS[transport], module)

    return put


@pytest.mark.parametrize("transport", [Transport.NATS, Transport.RABBITMQ])
def test_each_transport_reads_through_its_own_package(
    transport: Transport, install: Callable[[Transport, FakeReader | None], None]
) -> None:
    nats, rabbitmq = FakeReader({"c": 1}), FakeReader({"c": 2})
    install(Transport.NATS, nats)
    install(Transport.RABBITMQ, rabbitmq)
    query = offsets.GroupQuery("s", "g", ("c",))
    got = backlog.read(transport, "x://h:1", {}, [query])
    assert got == {"s": backlog.StageBacklog(stage="s", lag=1 if transport is Transport.NATS else 2,
                                             by_channel={"c": 1 if transport is Transport.NATS else 2})}
    chosen, other = (nats, rabbitmq) if transport is Transport.NATS else (rabbitmq, nats)
    assert len(chosen.calls) == 1 and other.calls == []


def test_a_reader_that_takes_a_timeout_is_given_the_reconcilers(
    install: Callable[[Transport, FakeReader | None], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """So it gives up by itself instead of leaving a thread behind the reconciler's wait (nats' reader has one)."""
    seen: list[float] = []

    def read(url: str, options: Mapping[str, str], *, group: str, channels: Sequence[str],
             timeout: float = 10.0) -> dict[str, int]:
        seen.append(timeout)
        return dict.fromkeys(channels, 0)

    module = types.ModuleType(backlog.READERS[Transport.NATS])
    module.read = read  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, backlog.READERS[Transport.NATS], module)
    backlog.read(Transport.NATS, "nats://n", {}, [offsets.GroupQuery("a", "g", ("c",))], timeout=3.0)
    install(Transport.RABBITMQ, FakeReader({"c": 0}))  # no timeout keyword: called without one
    backlog.read(Transport.RABBITMQ, "amqp://h", {}, [offsets.GroupQuery("a", "g", ("c",))], timeout=3.0)
    assert seen == [3.0]


def test_a_transport_that_is_not_installed_is_a_condition_reason_not_a_crash(
    install: Callable[[Transport, FakeReader | None], None]
) -> None:
    install(Transport.NATS, None)
    with pytest.raises(errors.TransportNotInstalled, match=r"orderflow\.transport\.nats\.backlog"):
        backlog.reader(Transport.NATS)


def test_one_call_per_group_over_its_stages_channels_and_each_stage_sums_its_own(
    install: Callable[[Transport, FakeReader | None], None]
) -> None:
    fake = FakeReader({"p.orders": 30, "p.payments": 12, "p.shipments": 5})
    install(Transport.NATS, fake)
    queries = [offsets.GroupQuery("a", "g1", ("p.orders", "p.payments")),
               offsets.GroupQuery("b", "g1", ("p.payments", "p.shipments")),
               offsets.GroupQuery("c", "g2", ("p.orders",))]
    got = backlog.read(Transport.NATS, "nats://n:4222", {"tls_ca": "/ca"}, queries)
    assert [(c[2], c[3]) for c in fake.calls] == [("g1", ["p.orders", "p.payments", "p.shipments"]),
                                                  ("g2", ["p.orders"])]
    assert fake.calls[0][:2] == ("nats://n:4222", {"tls_ca": "/ca"})
    assert {s: r.lag for s, r in got.items() if isinstance(r, backlog.StageBacklog)} == {"a": 42, "b": 17, "c": 30}


def test_a_channel_the_broker_has_nothing_for_is_that_stages_topic_missing(
    install: Callable[[Transport, FakeReader | None], None]
) -> None:
    install(Transport.RABBITMQ, FakeReader({"p.orders": 3}))
    got = backlog.read(Transport.RABBITMQ, "amqp://h", {}, [offsets.GroupQuery("a", "g", ("p.orders", "p.gone")),
                                                          offsets.GroupQuery("b", "h", ("p.orders",))])
    missing = got["a"]
    assert isinstance(missing, errors.TopicMissing) and missing.topics == ("p.gone",)
    assert "RabbitMQ has no backlog for channel p.gone of group g" in str(missing)
    assert got["b"] == backlog.StageBacklog(stage="b", lag=3, by_channel={"p.orders": 3})


@pytest.mark.parametrize(
    ("raised", "expected", "text"),
    [
        (orderflow_errors.BrokerUnavailable("connection refused"), errors.BrokerUnavailable, "connection refused"),
        (ConnectionRefusedError(111, "refused"), errors.BrokerUnavailable, "refused"),
        (orderflow_errors.ConfigError("tls_ca: no such file"), errors.TransportConfigInvalid, "no such file"),
        (ValueError("bad url"), errors.TransportConfigInvalid, "bad url"),
    ],
)
def test_reader_errors_become_the_operators_own_and_never_show_the_password(
    install: Callable[[Transport, FakeReader | None], None],
    raised: BaseException, expected: type[errors.OperatorError], text: str,
) -> None:
    fake = FakeReader()
    fake.error = raised
    install(Transport.RABBITMQ, fake)
    with pytest.raises(expected, match=text) as caught:
        backlog.read(Transport.RABBITMQ, "amqp://u:s3cret@mq:5672", {}, [offsets.GroupQuery("a", "g", ("c",))])
    assert caught.value.__cause__ is raised
    assert "s3cret" not in str(caught.value) and "RabbitMQ at amqp://u:***@mq:5672" in str(caught.value)


def test_an_answer_of_the_wrong_shape_is_a_transport_error(
    install: Callable[[Transport, FakeReader | None], None]
) -> None:
    fake = FakeReader()
    fake.read = lambda *a, **k: {"c": -1}  # type: ignore[method-assign]
    install(Transport.NATS, fake)
    with pytest.raises(errors.TransportError, match=re.escape("not {channel: count}")):
        backlog.read(Transport.NATS, "nats://n", {}, [offsets.GroupQuery("a", "g", ("c",))])


# -- a whole tick ----------------------------------------------------------------------------------------------


class FakeKube:
    """The four calls the reconciler makes, in memory."""

    def __init__(self, replicas: dict[str, int], secrets: dict[str, dict[str, str]] | None = None) -> None:
        self.replicas = replicas
        self.secrets = secrets or {}
        self.statuses: list[dict[str, Any]] = []

    def get_replicas(self, namespace: str, deployment: str) -> int:
        return self.replicas[deployment]

    def set_replicas(self, namespace: str, deployment: str, replicas: int) -> None:
        self.replicas[deployment] = replicas

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        if name not in self.secrets:
            raise errors.SecretUnavailable(f"Secret {namespace}/{name} not found")
        return self.secrets[name]

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.statuses.append(dict(status))


def tick(body_spec: dict[str, Any], kube: FakeKube, state: reconcile.FlowState | None = None) -> reconcile.TickResult:
    body = {"metadata": {"namespace": "ns", "name": "flow", "generation": 1}, "spec": body_spec}
    events: list[tuple[str, str, str]] = []
    return asyncio.run(reconcile.tick(body, state or reconcile.FlowState(), kube=kube,
                                      post_event=lambda *e: events.append(e)))


def condition(status: Mapping[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


@pytest.fixture
def no_kafka(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A NATS or RabbitMQ tick must not touch the Kafka reader."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Kafka reader was used for a flow on another transport")

    monkeypatch.setattr(offsets, "read", refuse)
    monkeypatch.setattr(offsets, "connect", refuse)
    yield


def test_a_nats_flow_is_scaled_by_its_backlog_and_its_status_says_nats(
    install: Callable[[Transport, FakeReader | None], None], no_kafka: None
) -> None:
    fake = FakeReader({"p.orders": 400, "p.payments": 50})
    install(Transport.NATS, fake)
    install(Transport.RABBITMQ, None)  # never needed
    kube = FakeKube({"inventory": 1})
    result = tick(flow_spec(transport={"type": "nats", "nats": {"url": "nats://n:4222"}}), kube)
    assert kube.replicas["inventory"] == 5 and result.scaled == {"inventory": (1, 5)}  # ceil(450 / 100)
    status = result.status
    assert status["transport"] == "nats" and status["totalLag"] == 450
    (stage,) = status["stages"]
    assert stage["lag"] == 450 and stage["lastScaleReason"] == "LagAboveTarget"
    assert "partitions" not in stage and "arrivalRate" not in stage  # a backlog reader reports neither
    reachable = condition(status, "BrokerReachable")
    assert (reachable["status"], reachable["reason"]) == ("True", "Connected")
    assert reachable["message"] == "read backlog from NATS JetStream at nats://n:4222"
    assert "KafkaReachable" not in {c["type"] for c in status["conditions"]}
    assert condition(status, "Ready")["status"] == "True"
    assert fake.calls == [("nats://n:4222", {}, "p-inventory", ["p.orders", "p.payments"])]


def test_a_rabbitmq_flow_takes_url_and_options_from_the_services_secret(
    install: Callable[[Transport, FakeReader | None], None], no_kafka: None
) -> None:
    fake = FakeReader({"p.orders": 120, "p.payments": 0})
    install(Transport.RABBITMQ, fake)
    kube = FakeKube({"inventory": 1}, {"mq": {"ORDERFLOW_RABBITMQ_URL": "amqps://of:s3cret@mq:5671/%2F",
                                              "ORDERFLOW_RABBITMQ_TLS_CA": "/etc/ca.pem"}})
    result = tick(flow_spec(transport={"type": "rabbitmq", "rabbitmq": {"secretRef": {"name": "mq"}}}), kube)
    assert fake.calls == [("amqps://of:s3cret@mq:5671/%2F", {"tls_ca": "/etc/ca.pem"}, "p-inventory",
                           ["p.orders", "p.payments"])]
    assert kube.replicas["inventory"] == 2 and result.status["transport"] == "rabbitmq"
    message = condition(result.status, "BrokerReachable")["message"]
    assert message == "read backlog from RabbitMQ at amqps://of:***@mq:5671/%2F"


def test_a_broker_that_is_down_leaves_replicas_alone_and_says_so(
    install: Callable[[Transport, FakeReader | None], None], no_kafka: None
) -> None:
    fake = FakeReader()
    fake.error = orderflow_errors.BrokerUnavailable("nats: no servers available for connection")
    install(Transport.NATS, fake)
    kube = FakeKube({"inventory": 3})
    result = tick(flow_spec(transport={"type": "nats", "nats": {"url": "nats://n:4222"}}), kube)
    assert kube.replicas["inventory"] == 3 and result.scaled == {} and not result.ready
    reachable, ready = condition(result.status, "BrokerReachable"), condition(result.status, "Ready")
    assert (reachable["status"], reachable["reason"]) == ("False", "BrokerUnavailable")
    assert "no servers available" in reachable["message"]
    assert (ready["status"], ready["reason"]) == ("False", "BrokerUnreachable")
    assert result.status["stages"][0]["state"] == "BrokerUnavailable" and result.status["totalLag"] is None


@pytest.mark.parametrize(
    ("section", "secrets", "reason"),
    [
        ({"type": "rabbitmq", "rabbitmq": {"secretRef": {"name": "mq"}}}, {}, "SecretUnavailable"),
        ({"type": "rabbitmq", "rabbitmq": {"secretRef": {"name": "mq"}}}, {"mq": {"x": "y"}}, "TransportConfigInvalid"),
        ({"type": "nats", "nats": {"url": "nats://n:4222"}}, {}, "TransportNotInstalled"),
    ],
)
def test_settings_that_cannot_be_used_are_the_reachability_conditions_reason(
    install: Callable[[Transport, FakeReader | None], None], no_kafka: None,
    section: dict[str, Any], secrets: dict[str, dict[str, str]], reason: str,
) -> None:
    install(Transport.NATS, None)
    install(Transport.RABBITMQ, FakeReader({"p.orders": 1, "p.payments": 1}))
    result = tick(flow_spec(transport=section), FakeKube({"inventory": 1}, secrets))
    reachable = condition(result.status, "BrokerReachable")
    assert (reachable["status"], reachable["reason"]) == ("False", reason)
    assert condition(result.status, "Ready")["reason"] == reason


def test_a_kafka_flow_still_reads_offsets_and_reports_kafka(
    install: Callable[[Transport, FakeReader | None], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    install(Transport.NATS, None)
    install(Transport.RABBITMQ, None)
    seen: list[list[offsets.GroupQuery]] = []

    def read(admin: object, queries: list[offsets.GroupQuery], *, timeout: float) -> dict[str, offsets.StageOffsets]:
        seen.append(queries)
        return {"inventory": offsets.StageOffsets(stage="inventory", lag=250, end_total=250, committed_total=0,
                                                  partitions=2, partitions_by_topic={"p.orders": 2, "p.payments": 2})}

    monkeypatch.setattr(offsets, "read", read)
    kube = FakeKube({"inventory": 1})
    result = tick(flow_spec(kafka={"bootstrapServers": "127.0.0.1:1"}), kube)
    assert seen == [[offsets.GroupQuery("inventory", "p-inventory", ("p.orders", "p.payments"))]]
    assert kube.replicas["inventory"] == 2  # ceil(250 / 100) = 3, capped by 2 partitions
    assert result.status["transport"] == "kafka" and result.status["stages"][0]["partitions"] == 2
    reachable = condition(result.status, "KafkaReachable")
    assert (reachable["status"], reachable["message"]) == ("True", "read offsets from 127.0.0.1:1")
    assert "BrokerReachable" not in {c["type"] for c in result.status["conditions"]}
