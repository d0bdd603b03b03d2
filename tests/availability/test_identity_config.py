"""The replica identity and Kafka log settings as a service reads them, and the consumer settings they lead to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orderflow.errors import ConfigError
from orderflow.runtime import config, identity
from orderflow.transport import kafka

BASE = {"ORDERFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:9092"}


def test_a_replica_id_makes_a_static_member_and_names_the_lease_holder() -> None:
    settings = config.load("billing", {**BASE, "ORDERFLOW_REPLICA_ID": "orderflow-billing-7d9f8b6c5-x2x4q"})
    consumer = kafka.consumer_config(settings, client_id="orderflow-billing")
    assert consumer["group.instance.id"] == "orderflow-billing-7d9f8b6c5-x2x4q"
    assert consumer["group.id"] == "orderflow-billing" and consumer["enable.auto.commit"] is False
    assert consumer["session.timeout.ms"] == kafka.SESSION_TIMEOUT_MS
    assert identity.lease_holder(settings) == "orderflow-billing-7d9f8b6c5-x2x4q"


def test_without_a_replica_id_the_member_is_dynamic_and_the_lease_is_held_by_the_process() -> None:
    settings = config.load("billing", BASE)
    assert "group.instance.id" not in kafka.consumer_config(settings, client_id="c")
    assert identity.lease_holder(settings).endswith(f":{os.getpid()}")


def test_the_kip848_protocol_leaves_the_session_to_the_broker() -> None:
    settings = config.load("billing", {**BASE, "ORDERFLOW_KAFKA_GROUP_PROTOCOL": "consumer"})
    consumer = kafka.consumer_config(settings, client_id="c")
    assert consumer["group.protocol"] == "consumer"
    assert "session.timeout.ms" not in consumer and "heartbeat.interval.ms" not in consumer


@pytest.mark.parametrize("bad", ["has space", "a/b", "x" * 250])
def test_a_replica_id_that_cannot_be_a_group_instance_id_is_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="ORDERFLOW_REPLICA_ID"):
        config.load("billing", {**BASE, "ORDERFLOW_REPLICA_ID": bad})


def test_the_kafka_log_level_is_ours_not_librdkafkas() -> None:
    settings = config.load("order", {**BASE, "ORDERFLOW_KAFKA_LOG_LEVEL": "warn"})
    assert settings.kafka_log_level == "WARNING" and "log.level" not in settings.kafka_options
    with pytest.raises(ConfigError, match="ORDERFLOW_KAFKA_LOG_LEVEL"):
        config.load("order", {**BASE, "ORDERFLOW_KAFKA_LOG_LEVEL": "7"})


def test_every_client_reconnects_within_a_second_unless_told_otherwise() -> None:
    assert config.load("order", BASE).kafka_config()["reconnect.backoff.max.ms"] == 1000
    custom = config.load("order", {**BASE, "ORDERFLOW_KAFKA_RECONNECT_BACKOFF_MAX_MS": "5000"})
    assert custom.kafka_config()["reconnect.backoff.max.ms"] == "5000"


def test_every_client_sends_small_requests_at_once_unless_told_otherwise() -> None:
    assert config.load("order", BASE).kafka_config()["socket.nagle.disable"] is True
    custom = config.load("order", {**BASE, "ORDERFLOW_KAFKA_SOCKET_NAGLE_DISABLE": "false"})
    assert custom.kafka_config()["socket.nagle.disable"] == "false"


def test_the_relay_sends_a_committed_batch_at_once_and_always_idempotently() -> None:
    relay = kafka.producer_config(config.load("order", BASE))
    assert relay["linger.ms"] == 0 and relay["enable.idempotence"] is True and relay["acks"] == "all"
    custom = kafka.producer_config(
        config.load("order", {**BASE, "ORDERFLOW_KAFKA_LINGER_MS": "5", "ORDERFLOW_KAFKA_ACKS": "1"})
    )
    assert custom["linger.ms"] == "5" and custom["acks"] == "all"


def test_the_data_dir_follows_xdg_state_home_from_the_environment_it_is_given(tmp_path: Path) -> None:
    with_xdg = config.load("order", {**BASE, "XDG_STATE_HOME": str(tmp_path)})
    assert with_xdg.database_url == f"sqlite:///{tmp_path}/orderflow/data/order.db"
    empty = config.load("order", {**BASE, "XDG_STATE_HOME": ""})
    assert empty.database_url == f"sqlite:///{Path.home()}/.local/state/orderflow/data/order.db"
    explicit = config.load("order", {**BASE, "XDG_STATE_HOME": str(tmp_path), "ORDERFLOW_DATA_DIR": "/srv/of"})
    assert explicit.database_url == "sqlite:////srv/of/order.db"
