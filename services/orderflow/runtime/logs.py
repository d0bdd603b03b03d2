"""JSON-lines logging, so that every line about an order can be found by its order id and event id.

Call sites pass ``extra={"order_id": ..., "event_id": ...}``; those keys (and a few more) become top-level fields.
"""

from __future__ import annotations

import json
import logging
import sys
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
