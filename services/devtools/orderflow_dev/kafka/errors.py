"""The local Kafka tooling's errors: what went wrong in fetching or running a development broker."""

from __future__ import annotations


class KafkaToolError(Exception):
    """Base class for every error of the local Kafka tooling."""


class ToolMissingError(KafkaToolError):
    """A program the broker needs (Maven, Java) is not installed or not on PATH."""


class BrokerStartError(KafkaToolError):
    """The broker process died during startup or did not answer in time; the message carries its log tail."""


class BrokerUnreachableError(KafkaToolError):
    """A broker that should be there (ORDERFLOW_KAFKA_BOOTSTRAP, the daemon) does not answer."""
