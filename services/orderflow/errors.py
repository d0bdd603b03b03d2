"""OrderFlow's own exceptions, in one tree: what a caller can do about a failure is in its type, not its message.

::

    OrderFlowError                  every error OrderFlow raises on purpose
    ├── ConfigError                 an ORDERFLOW_* variable is invalid: refuse to start, naming it
    ├── RequestError                a bad HTTP request: answered 4xx with {"error", "details"}
    ├── Retryable                   the same work may succeed later: retry with backoff, never dead-letter
    │   ├── BrokerUnavailable       Kafka unreachable, or refusing for a transient reason
    │   └── StoreUnavailable        the database busy, locked or unreachable
    │       └── WriteConflict       a concurrent writer won a unique key first (an integrity race)
    ├── Permanent                   this input can never succeed: dead-letter it (``reason``, ``detail``), go on
    │   └── Poison                  the message itself is unusable: undecodable, missing attributes, unknown type
    │       └── SchemaViolation     its data breaks the JSON Schema of its type
    └── OperatorError               the operator's subtree (orderflow_operator.errors), one condition reason each

Errors from a dependency are mapped to these in one place each, and chained: the database's in ``runtime/db.py``
(``Store``), the broker's in the transports (``transport/<name>/``), ``runtime/outbox.py``, ``runtime/dlq.py`` and
``runtime/readiness.py`` (the broker probe), a message's in
``events/codec.py``; the operator's at the edge of the module that calls the client.
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "OrderFlowError",
    "Permanent",
    "Poison",
    "RequestError",
    "Retryable",
    "SchemaViolation",
    "StoreUnavailable",
    "WriteConflict",
]


class OrderFlowError(Exception):
    """Base of every error OrderFlow raises on purpose."""


class ConfigError(OrderFlowError):
    """The configuration (environment variables) is invalid; the message says which variable and why."""


class Retryable(OrderFlowError):
    """Transient: retry the same work later."""


class BrokerUnavailable(Retryable):
    """Kafka could not be reached or refused the operation for a transient reason."""


class StoreUnavailable(Retryable):
    """The database is busy, locked or unreachable."""


class WriteConflict(StoreUnavailable):
    """A concurrent transaction inserted the same key first (e.g. two replicas, or two requests with one new
    Idempotency-Key, on PostgreSQL): running the same work again finds the winner's row."""


class Permanent(OrderFlowError):
    """This input can never be processed; ``reason`` is a short stable code for the dead-letter headers."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Poison(Permanent):
    """A message that can never be decoded into an event, whatever is retried (raised by ``events.codec``)."""


class SchemaViolation(Poison):
    def __init__(self, event_type: str, detail: str) -> None:
        super().__init__("schema_violation", f"{event_type}: {detail}")


class RequestError(OrderFlowError):
    """A bad HTTP request: answered with ``status`` and a JSON body carrying ``message``."""

    def __init__(self, status: int, message: str, *, details: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def response(self) -> tuple[int, dict[str, object]]:
        """The answer a client gets: ``{"error": message, "details": ...}`` (details only when there are some)."""
        return self.status, {"error": self.message, **({"details": self.details} if self.details is not None else {})}
