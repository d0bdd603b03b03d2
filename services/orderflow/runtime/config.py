"""Configuration from ``ORDERFLOW_*`` environment variables, read once and checked up front.

A service that starts with a bad setting should fail at once naming the variable, not minutes later in a loop.
Any librdkafka setting can be passed as ``ORDERFLOW_KAFKA_<NAME>`` (dots become underscores, e.g.
``ORDERFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` → ``security.protocol``), which is how SASL/TLS is configured.

The broker is Kafka unless ``ORDERFLOW_TRANSPORT`` names another (``nats``, ``rabbitmq``); each takes its address
from ``ORDERFLOW_<TRANSPORT>_URL`` and its TLS/auth settings from the other ``ORDERFLOW_<TRANSPORT>_*`` variables
(``transport_options``, lower-cased without the prefix), which its package documents.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeAlias

from orderflow.errors import ConfigError

KafkaValue: TypeAlias = str | int | float | bool
"""A librdkafka setting's value, as confluent-kafka's clients take it."""
KafkaConfig: TypeAlias = dict[str, KafkaValue]

DEFAULT_PORTS: Final = {"order": 8081, "inventory": 8082, "billing": 8083, "shipping": 8084}

# Variables with a meaning of their own; every other ORDERFLOW_KAFKA_* is passed through to librdkafka.
_KAFKA_RESERVED: Final = frozenset({"ORDERFLOW_KAFKA_BOOTSTRAP", "ORDERFLOW_KAFKA_LOG_LEVEL"})
# Applied under every client's settings: after a broker restart, reconnect within a second, not librdkafka's 10 s;
# Nagle off, since every hop of the saga is a small request waiting on its answer (a produce, a fetch, a commit),
# and with Nagle a request sent behind an unacknowledged one waits for the broker's delayed ACK.
_KAFKA_DEFAULTS: Final[dict[str, KafkaValue]] = {"reconnect.backoff.max.ms": 1000, "socket.nagle.disable": True}
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
# What ORDERFLOW_TRANSPORT may name, and the variable each takes its broker's address from.
TRANSPORTS: Final = {
    "kafka": "ORDERFLOW_KAFKA_BOOTSTRAP",
    "nats": "ORDERFLOW_NATS_URL",
    "rabbitmq": "ORDERFLOW_RABBITMQ_URL",
}
REPLICA_ENV: Final = "ORDERFLOW_REPLICA_ID"
# A replica id becomes a Kafka group.instance.id: at most 249 characters of [A-Za-z0-9._-]. A Pod name always fits.
_REPLICA_ID: Final = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _default_data_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/orderflow/data`` when that variable is set and not empty, else ``~/.local/state/...``."""
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "orderflow" / "data"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a service reads from its environment. See the README's configuration reference."""

    service: str
    kafka_bootstrap: str = ""
    kafka_options: Mapping[str, str] = field(default_factory=dict)
    transport: str = "kafka"
    # the broker's address for a transport other than Kafka (ORDERFLOW_NATS_URL, ORDERFLOW_RABBITMQ_URL)
    transport_url: str = ""
    # ORDERFLOW_<TRANSPORT>_* other than the URL, e.g. ORDERFLOW_NATS_TLS_CA -> {"tls_ca": ...}
    transport_options: Mapping[str, str] = field(default_factory=dict)
    database_url: str = ""
    topic_prefix: str = "orderflow"
    consumer_group: str = ""
    topic_partitions: int = 3
    topic_replication: int = 1
    create_topics: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    batch_size: int = 500
    batch_timeout_ms: int = 100
    order_deadline_s: float = 30.0
    deadline_scan_ms: int = 250
    stuck_after_s: float = 60.0
    log_level: str = "INFO"
    kafka_log_level: str = "WARNING"
    replica_id: str = ""

    @property
    def group(self) -> str:
        return self.consumer_group or f"{self.topic_prefix}-{self.service}"

    def kafka_config(self, defaults: Mapping[str, KafkaValue] | None = None, /, **required: KafkaValue) -> KafkaConfig:
        """librdkafka settings: ``defaults``, overridden by the user's ``ORDERFLOW_KAFKA_*``, then role requirements.

        ``defaults`` is positional-only so that no librdkafka name passed in ``required`` can be taken for it.
        """
        return {
            **_KAFKA_DEFAULTS,
            **(defaults or {}),
            "bootstrap.servers": self.kafka_bootstrap,
            **self.kafka_options,
            **required,
        }


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not value > minimum:
        raise ConfigError(f"{name}={value} must be > {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (true/false)")


def _level(env: Mapping[str, str], name: str, default: str) -> str:
    level = (env.get(name) or default).strip().upper()
    level = "WARNING" if level == "WARN" else level  # Log4j's spelling, as the local broker takes it
    if level not in _LOG_LEVELS:
        raise ConfigError(f"{name}={level!r} must be DEBUG, INFO, WARNING or ERROR")
    return level


def kafka_options(env: Mapping[str, str]) -> dict[str, str]:
    """librdkafka pass-through settings from ``ORDERFLOW_KAFKA_*``."""
    return {
        name.removeprefix("ORDERFLOW_KAFKA_").lower().replace("_", "."): value
        for name, value in env.items()
        if name.startswith("ORDERFLOW_KAFKA_") and name not in _KAFKA_RESERVED
    }


def transport_options(env: Mapping[str, str], transport: str) -> dict[str, str]:
    """``ORDERFLOW_<TRANSPORT>_*`` other than its URL, lower-cased without the prefix (Kafka: ``kafka_options``)."""
    if transport == "kafka":
        return {}
    prefix = f"ORDERFLOW_{transport.upper()}_"
    return {
        name.removeprefix(prefix).lower(): value
        for name, value in env.items()
        if name.startswith(prefix) and name != TRANSPORTS[transport]
    }


def load(service: str, env: Mapping[str, str] | None = None) -> Settings:
    """Read and check the settings of ``service`` from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    transport = (env.get("ORDERFLOW_TRANSPORT") or "kafka").strip().lower()
    if transport not in TRANSPORTS:
        raise ConfigError(f"ORDERFLOW_TRANSPORT={transport!r} must be one of {', '.join(TRANSPORTS)}")
    bootstrap = env.get("ORDERFLOW_KAFKA_BOOTSTRAP", "").strip()
    if transport == "kafka" and not bootstrap:
        raise ConfigError(
            "ORDERFLOW_KAFKA_BOOTSTRAP is not set: point it at your Kafka brokers (host:port,...), "
            "or start a local broker with `orderflow kafka start` and export what it prints"
        )
    url = env.get(TRANSPORTS[transport], "").strip() if transport != "kafka" else ""
    if transport != "kafka" and not url:
        raise ConfigError(
            f"{TRANSPORTS[transport]} is not set: ORDERFLOW_TRANSPORT={transport} needs the broker's address "
            f"(`orderflow {transport} start` starts a local one and prints it)"
        )
    prefix = env.get("ORDERFLOW_TOPIC_PREFIX", "orderflow").strip()
    if not prefix or not all(c.isalnum() or c in "._-" for c in prefix):
        raise ConfigError(f"ORDERFLOW_TOPIC_PREFIX={prefix!r} must be non-empty and use only [A-Za-z0-9._-]")
    database_url = env.get("ORDERFLOW_DATABASE_URL", "").strip()
    if not database_url:
        data_dir = Path(env.get("ORDERFLOW_DATA_DIR") or _default_data_dir(env))
        database_url = f"sqlite:///{data_dir / f'{service}.db'}"
    replica_id = env.get(REPLICA_ENV, "").strip()
    if replica_id and not _REPLICA_ID.match(replica_id):
        raise ConfigError(f"{REPLICA_ENV}={replica_id!r} must be 1-249 characters of [A-Za-z0-9._-] (a Pod name is)")
    return Settings(
        service=service,
        kafka_bootstrap=bootstrap,
        kafka_options=kafka_options(env),
        transport=transport,
        transport_url=url,
        transport_options=transport_options(env, transport),
        database_url=database_url,
        topic_prefix=prefix,
        consumer_group=env.get("ORDERFLOW_CONSUMER_GROUP", "").strip(),
        topic_partitions=_int(env, "ORDERFLOW_TOPIC_PARTITIONS", 3, minimum=1),
        topic_replication=_int(env, "ORDERFLOW_TOPIC_REPLICATION", 1, minimum=1),
        create_topics=_bool(env, "ORDERFLOW_CREATE_TOPICS", True),
        http_host=env.get("ORDERFLOW_HTTP_HOST", "127.0.0.1"),
        http_port=_int(env, "ORDERFLOW_HTTP_PORT", DEFAULT_PORTS.get(service, 8080)),
        batch_size=_int(env, "ORDERFLOW_BATCH_SIZE", 500, minimum=1),
        batch_timeout_ms=_int(env, "ORDERFLOW_BATCH_TIMEOUT_MS", 100, minimum=1),
        order_deadline_s=_float(env, "ORDERFLOW_ORDER_DEADLINE_S", 30.0),
        deadline_scan_ms=_int(env, "ORDERFLOW_DEADLINE_SCAN_MS", 250, minimum=10),
        stuck_after_s=_float(env, "ORDERFLOW_STUCK_AFTER_S", 60.0),
        log_level=_level(env, "ORDERFLOW_LOG_LEVEL", "INFO"),
        kafka_log_level=_level(env, "ORDERFLOW_KAFKA_LOG_LEVEL", "WARNING"),
        replica_id=replica_id,
    )
