"""The operator's own errors, each carrying the condition reason it surfaces as.

Errors from confluent-kafka, the Kubernetes client and urllib are wrapped (and chained) at the edge of the
module that calls them, so the reconciler deals in a handful of typed outcomes and every one of them ends as a
status condition with a stable ``reason`` — never as an exception that kills the per-resource loop.
"""

from __future__ import annotations

from orderflow.errors import OrderFlowError

__all__ = [
    "BrokerUnavailable",
    "DeploymentMissing",
    "FlowHealthUnavailable",
    "InvalidSpec",
    "KafkaAccessDenied",
    "KafkaConfigInvalid",
    "KafkaError",
    "KubernetesError",
    "OperatorError",
    "SecretUnavailable",
    "TopicMissing",
]


class OperatorError(OrderFlowError):
    """Base of everything the operator raises on purpose (a branch of OrderFlow's one tree, drawn in
    ``orderflow.errors``). ``reason`` is a CamelCase condition reason."""

    reason = "Error"


class InvalidSpec(OperatorError):
    reason = "InvalidSpec"


class KafkaError(OperatorError):
    reason = "KafkaError"


class KafkaConfigInvalid(KafkaError):
    """librdkafka refused the client settings (bootstrap servers or a key of the referenced Secret)."""

    reason = "KafkaConfigInvalid"


class BrokerUnavailable(KafkaError):
    """No broker answered within the request timeout."""

    reason = "BrokerUnavailable"


class KafkaAccessDenied(KafkaError):
    reason = "KafkaAccessDenied"


class TopicMissing(KafkaError):
    reason = "TopicMissing"

    def __init__(self, message: str, *, topics: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.topics = topics


class KubernetesError(OperatorError):
    reason = "KubernetesApiError"


class DeploymentMissing(KubernetesError):
    reason = "DeploymentMissing"


class SecretUnavailable(KubernetesError):
    reason = "SecretUnavailable"


class FlowHealthUnavailable(OperatorError):
    reason = "OrderServiceUnreachable"
