"""The runtime every OrderFlow service stands on: delivery guarantees, storage, HTTP, metrics, logs.

Modules are imported by name (``from services.runtime import outbox``); the names below are the small public
surface service modules use.
"""

from services.runtime.config import Settings
from services.runtime.definition import Definition, Handler, Prepare, Ticker
from services.runtime.errors import (
    BrokerUnavailable,
    ConfigError,
    OrderFlowError,
    Permanent,
    RequestError,
    Retryable,
    StoreUnavailable,
)
from services.runtime.http import Request, Response, Route
from services.runtime.service import Runtime, Service
from services.runtime.tx import Tx

__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "Definition",
    "Handler",
    "OrderFlowError",
    "Permanent",
    "Prepare",
    "Request",
    "RequestError",
    "Response",
    "Retryable",
    "Route",
    "Runtime",
    "Service",
    "Settings",
    "StoreUnavailable",
    "Ticker",
    "Tx",
]
