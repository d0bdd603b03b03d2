"""Choosing a broker for the tests and the demo: the configured one, else the running daemon, else a private one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Final

from orderflow_dev.kafka.broker import LocalBroker, broker_answers
from orderflow_dev.kafka.daemon import daemon_status
from orderflow_dev.kafka.errors import BrokerUnreachableError

BOOTSTRAP_ENV: Final = "ORDERFLOW_KAFKA_BOOTSTRAP"


@contextlib.contextmanager
def ensure_broker(*, connect_timeout: float = 10.0, startup_timeout: float = 120.0) -> Iterator[str]:
    """Yield the bootstrap servers of a running broker.

    ``ORDERFLOW_KAFKA_BOOTSTRAP`` if set (it must answer: no silent fallback), else the
    ``orderflow kafka start`` daemon if it answers, else a private :class:`LocalBroker` started now and
    stopped on exit.
    """
    configured = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if configured:
        if not broker_answers(configured, timeout=connect_timeout):
            raise BrokerUnreachableError(
                f"{BOOTSTRAP_ENV}={configured} does not answer as a Kafka broker "
                f"(waited {connect_timeout:.0f}s): "
                f"start it (`orderflow kafka start` runs one locally) or unset {BOOTSTRAP_ENV} to have a "
                f"private broker started"
            )
        yield configured
        return
    status = daemon_status()
    if status is not None and status["answering"]:
        yield status["bootstrap"]
        return
    with LocalBroker(startup_timeout=startup_timeout) as broker:
        yield broker.bootstrap
