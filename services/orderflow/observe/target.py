"""Where the flow to observe lives: its Kafka cluster and topic prefix, and its services' HTTP APIs.

Read from the same ``ORDERFLOW_*`` variables the services read (bootstrap servers, topic prefix, any librdkafka
setting including the ``partitioner``), plus one URL per service (``ORDERFLOW_<SERVICE>_URL``, default the
service's default port on 127.0.0.1), so the commands see what the services see when run in their environment.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from orderflow.errors import ConfigError
from orderflow.events import catalog
from orderflow.observe import partitioner
from orderflow.runtime import config

HTTP_TIMEOUT_S: Final = 3.0


@dataclass(frozen=True, slots=True)
class Target:
    kafka: config.KafkaConfig
    prefix: str = "orderflow"
    urls: Mapping[str, str] = field(default_factory=dict)
    partitioner: str = partitioner.DEFAULT

    def group(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    def url(self, service: str) -> str:
        return self.urls.get(service) or f"http://127.0.0.1:{config.DEFAULT_PORTS[service]}"


def url_variable(service: str) -> str:
    return f"ORDERFLOW_{service.upper()}_URL"


def from_env(
    env: Mapping[str, str] | None = None, *, bootstrap: str | None = None, prefix: str | None = None,
    urls: Mapping[str, str] | None = None,
) -> Target:
    """The target the environment describes; arguments given on the command line win."""
    env = os.environ if env is None else env
    servers = bootstrap or env.get("ORDERFLOW_KAFKA_BOOTSTRAP", "").strip()
    if not servers:
        raise ConfigError("no Kafka to read: set ORDERFLOW_KAFKA_BOOTSTRAP or pass --bootstrap host:port")
    options = config.kafka_options(env)
    chosen = {s: env[url_variable(s)] for s in catalog.SERVICES if env.get(url_variable(s))}
    chosen.update(urls or {})
    return Target(
        kafka={**options, "bootstrap.servers": servers},
        prefix=prefix or env.get("ORDERFLOW_TOPIC_PREFIX", "").strip() or "orderflow",
        urls={s: u.rstrip("/") for s, u in chosen.items()},
        partitioner=options.get("partitioner", partitioner.DEFAULT),
    )


@dataclass(frozen=True, slots=True)
class View:
    """What one service's API answered: its JSON, or that it has not seen the resource, or why it could not say."""

    service: str
    url: str
    body: Any = None
    status: int | None = None
    error: str | None = None

    @property
    def seen(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def get(service: str, url: str, *, timeout: float = HTTP_TIMEOUT_S) -> View:
    """``GET url`` as a ``View``: 404 is an answer ("has not seen it"), an unreachable service is an error."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return View(service, url, json.loads(response.read()), response.status)
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read())
        except ValueError:
            body = None
        finally:
            e.close()
        return View(service, url, body, e.code, None if e.code == 404 else f"HTTP {e.code}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        return View(service, url, error=f"{type(e).__name__}: {getattr(e, 'reason', e)}")
