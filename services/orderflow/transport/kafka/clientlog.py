"""librdkafka's own log lines and errors, through the service's JSON logger, with repeats rate-limited.

Left alone, librdkafka writes ``%3|1733100000.123|FAIL|rdkafka#consumer-1| ...`` lines to stderr, outside the JSON
log stream, and while a broker is down it writes one every reconnect attempt of every client. confluent-kafka's
``logger`` setting hands each line to a ``log(level, fmt, fac, name, message)`` method instead (on the thread that
polls the client); :class:`KafkaLog` turns it into a record of the logger ``orderflow.kafka`` with the facility and
the client name as fields, and lets the same message (numbers aside) through once per ``window`` seconds, saying
how many it held back. Its ``error_cb`` does the same for client errors and tells the broker state (``readiness``)
when every broker is down.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any, Final

from confluent_kafka import KafkaError

from orderflow.runtime.logs import Throttle

log = logging.getLogger("orderflow.kafka")

WINDOW_S: Final = 30.0
# librdkafka's log_level is syslog's scale; each threshold the service accepts maps to one.
SYSLOG_LEVEL: Final = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3}
_NUMBERS: Final = re.compile(r"\d+")


class KafkaLog:
    """The ``logger`` and ``error_cb`` of one service's Kafka clients (one instance may serve them all)."""

    def __init__(
        self,
        *,
        level: str = "WARNING",
        window: float = WINDOW_S,
        on_all_brokers_down: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.level = level
        self.window = window
        self.on_all_brokers_down = on_all_brokers_down
        self.clock = clock
        self._throttle = Throttle(window, clock=clock)

    def config(self) -> dict[str, Any]:
        """The settings that route a client's logs and errors here (merge into its librdkafka settings)."""
        return {"logger": self, "error_cb": self.error_cb, "log_level": SYSLOG_LEVEL[self.level]}

    # -- what confluent-kafka calls -------------------------------------------------------------------------

    def log(self, level: int, _fmt: str, facility: str, client: str, message: str, *_: object) -> None:
        """confluent-kafka's logger protocol: ``log(level, "%s [%s] %s", facility, client, message)``."""
        self.emit(level, facility, client, message)

    def error_cb(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN and self.on_all_brokers_down is not None:
            self.on_all_brokers_down(err.str())
        level = logging.ERROR if err.fatal() else logging.WARNING
        self.emit(level, err.name(), "", err.str())

    # -- the rate limit --------------------------------------------------------------------------------------

    def emit(self, level: int, facility: str, client: str, message: str) -> None:
        if not log.isEnabledFor(level):
            return
        admitted = self._throttle.admit((facility, _NUMBERS.sub("N", message)))
        if admitted is None:
            return
        held, suffix = admitted
        log.log(
            level,
            "%s%s",
            message,
            suffix,
            extra={"facility": facility, "client": client or None, "suppressed": held or None},
        )
