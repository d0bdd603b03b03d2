"""The runtime every OrderFlow service stands on: delivery guarantees, storage, HTTP, metrics, logs.

Modules are imported by name (``from orderflow.runtime import outbox``); the names below are the small public
surface service modules use.
"""

from orderflow.errors import (
    BrokerUnavailable,
    ConfigError,
    OrderFlowError,
    Permanent,
    RequestError,
    Retryable,
    StoreUnavailable,
    WriteConflict,
)
from orderflow.runtime.config import Settings
from orderflow.runtime.context import Runtime
from orderflow.runtime.definition import Definition, Handler, Prepare, Ticker
from orderflow.runtime.http import Request, Response, Route
from orderflow.runtime.service import Service
from orderflow.runtime.tx import Tx

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
    "WriteConflict",
]
