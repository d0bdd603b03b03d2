"""What a service is made of, declared: its tables, its event handlers, its routes and its periodic jobs.

A service module builds one ``Definition``; the runtime turns it into a running service with every delivery
guarantee. ``prepare`` is an optional hook that sees a whole batch before its handlers run, inside the same
transaction — e.g. to lock the rows the batch will touch in a fixed order, so that replicas sharing one
PostgreSQL never deadlock on each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from orderflow.events import Event
from orderflow.runtime.config import Settings
from orderflow.runtime.context import Runtime
from orderflow.runtime.http import Route
from orderflow.runtime.tx import Tx

Handler = Callable[[Tx, Event], None]
Prepare = Callable[[Tx, Sequence[Event]], None]


@dataclass(frozen=True, slots=True)
class Ticker:
    """A periodic job (e.g. the shipping deadline scan); ``interval`` reads the settings."""

    name: str
    interval: Callable[[Settings], float]
    run: Callable[[Runtime], object]


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    metadata: sa.MetaData
    handlers: Mapping[str, Handler]
    routes: Callable[[Runtime], Sequence[Route]]
    tickers: Sequence[Ticker] = field(default_factory=tuple)
    prepare: Prepare | None = None
    # Ready (``/readyz`` 200) while Kafka is down: its HTTP API needs only its database (the order service's
    # intake, whose events wait in the outbox). The broker's state is still reported in the body.
    ready_without_broker: bool = False
