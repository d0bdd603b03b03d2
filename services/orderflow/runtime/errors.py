"""OrderFlow's own exceptions: what a caller can do about a failure is in its type, not its message.

``Retryable`` means "the same work may succeed later" (database busy, broker down): the consumer retries the
batch with backoff and never dead-letters. ``Permanent`` means "this input can never succeed": the message goes to
the dead-letter topic and the consumer goes on. Errors from dependencies are wrapped and chained.
"""

from __future__ import annotations


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


class Permanent(OrderFlowError):
    """This input can never be processed; ``reason`` is a short stable code for the dead-letter headers."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RequestError(OrderFlowError):
    """A bad HTTP request: answered with ``status`` and a JSON body carrying ``message``."""

    def __init__(self, status: int, message: str, *, details: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
