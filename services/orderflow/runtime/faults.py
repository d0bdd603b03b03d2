"""Fault injection for crash tests: kill this process at a named point, on purpose, to prove nothing is lost.

Off unless ``ORDERFLOW_FAULTS`` is set (``point=N[,point=N]``: SIGKILL this process the N-th time ``point`` is
reached). When unset, ``reach`` costs a dictionary lookup on an empty dict. Points: ``consumer.mid_batch`` (after
the handlers ran, before the transaction commits), ``consumer.after_commit`` (state committed, offsets not),
``relay.after_publish`` (Kafka acknowledged, outbox rows not yet deleted).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Final

from orderflow.errors import ConfigError


def _parse(raw: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, _, count = part.partition("=")
        try:
            points[name] = int(count or "1")
        except ValueError:
            raise ConfigError(f"ORDERFLOW_FAULTS: {part!r} is not point=N") from None
    return points


_ARMED: Final[dict[str, int]] = _parse(os.environ.get("ORDERFLOW_FAULTS", ""))


def reach(point: str) -> None:
    if not _ARMED or point not in _ARMED:
        return
    _ARMED[point] -= 1
    if _ARMED[point] <= 0:
        sys.stderr.write(f'{{"level": "WARNING", "msg": "fault injection: SIGKILL at {point}"}}\n')
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
