"""A real RabbitMQ node for the tests, the demo and a developer's shell (developer tooling).

* ``server`` -- :class:`RabbitMQServer`, a private node (and its epmd) on free loopback ports, data in a temp dir;
* ``daemon`` -- the background node of ``orderflow rabbitmq start|stop|status``;
* ``cli`` -- :func:`main`, that command line;
* :func:`ensure_server` -- what tests and the demo call: ``ORDERFLOW_RABBITMQ_URL`` if set, else the running
  daemon, else a private node for the duration.

The transport's backlog reader needs the management API as well: :func:`ensure_server` exports
``ORDERFLOW_RABBITMQ_MANAGEMENT_URL`` (unless it is set) while it runs, so services started meanwhile find it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from orderflow_dev.rabbitmq.cli import MANAGEMENT_ENV, URL_ENV, main
from orderflow_dev.rabbitmq.daemon import DaemonStatus, daemon_status, start_daemon, stop_daemon
from orderflow_dev.rabbitmq.server import RabbitMQServer, RabbitMQUnavailable, answers

__all__ = [
    "MANAGEMENT_ENV",
    "URL_ENV",
    "DaemonStatus",
    "RabbitMQServer",
    "RabbitMQUnavailable",
    "answers",
    "daemon_status",
    "ensure_server",
    "main",
    "start_daemon",
    "stop_daemon",
]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _exported(name: str, value: str) -> Iterator[None]:
    if os.environ.get(name):
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


@contextlib.contextmanager
def ensure_server(*, connect_timeout: float = 10.0, startup_timeout: float = 60.0) -> Iterator[str]:
    """Yield the AMQP URL of a running RabbitMQ node (see the module docstring for which one)."""
    configured = os.environ.get(URL_ENV, "").strip()
    if configured:
        if not answers(configured, timeout=connect_timeout):
            raise RabbitMQUnavailable(
                f"{URL_ENV}={configured} does not answer (waited {connect_timeout:.0f}s): start it "
                f"(`orderflow rabbitmq start` runs one locally) or unset {URL_ENV} to have a private one started"
            )
        yield configured
        return
    status = daemon_status()
    if status is not None and status["answering"]:
        with _exported(MANAGEMENT_ENV, status["management_url"]):
            yield status["url"]
        return
    with RabbitMQServer() as server:
        log.info("private RabbitMQ node %s up in %.1fs at %s", server.node, server.start_seconds, server.url)
        with _exported(MANAGEMENT_ENV, server.management_url):
            yield server.url
