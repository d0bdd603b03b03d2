"""JSON-lines logging, so that every line about an order can be found by its order id and event id.

Call sites pass ``extra={"order_id": ..., "event_id": ...}``; those keys (and a few more) become top-level fields.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Final

_FIELDS: Final = (
    "service",
    "order_id",
    "event_id",
    "event_type",
    "topic",
    "partition",
    "offset",
    "reason",
    "count",
    "facility",
    "client",
    "suppressed",
)


class Throttle:
    """One line per key per ``window`` seconds; the rest are counted, and the next line let through says how many.

    A flood of one message (a client retrying a broker, a burst of events for orders this service never saw) then
    costs a counter each, not a formatted line each, and the log stays readable.
    """

    def __init__(self, window: float, *, clock: Callable[[], float] = time.monotonic, memory: int = 1000) -> None:
        self.window = window
        self.clock = clock
        self.memory = memory
        self._lock = threading.Lock()
        # key -> (when it was last let through, how many were held back since)
        self._seen: dict[Hashable, tuple[float, int]] = {}

    def admit(self, key: Hashable) -> tuple[int, str] | None:
        """None to hold this line back; else how many were held back since the last one, and the suffix the line
        carries: "" or " (N more like it in the last Ts)"."""
        now = self.clock()
        with self._lock:
            last, held = self._seen.get(key, (None, 0))
            if last is not None and now - last < self.window:
                self._seen[key] = (last, held + 1)
                return None
            self._seen[key] = (now, 0)
            if len(self._seen) > self.memory:  # a bounded memory of recent keys, whatever the callers send
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window}
        if held and last is not None:
            return held, f" ({held} more like it in the last {now - last:.0f}s)"
        return 0, ""


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "service": self.service,
            "msg": record.getMessage(),
        }
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(service: str, level: str) -> None:
    """Route the root logger to stderr as JSON lines (idempotent)."""
    import time

    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(service)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
