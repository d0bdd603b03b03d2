"""The operator's own errors, each carrying the condition reason it surfaces as.

Errors from confluent-kafka, the transports' backlog readers, the Kubernetes client and urllib are wrapped (and
chained) at the edge of the module that calls them, so the reconciler deals in a handful of typed outcomes and
every one of them ends as a status condition with a stable ``reason`` — never as an exception that kills the
per-resource loop.
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
    "TransportConfigInvalid",
    "TransportError",
    "TransportNotInstalled",
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
    """No broker answered within the request timeout (Kafka's, or the NATS / RabbitMQ server a flow names: the
    class predates the other transports, and its reason is what every flow's status has always shown)."""

    reason = "BrokerUnavailable"


class KafkaAccessDenied(KafkaError):
    reason = "KafkaAccessDenied"


class TopicMissing(KafkaError):
    """A topic (or, on NATS and RabbitMQ, a channel of the group: its consumer or queue) does not exist yet."""

    reason = "TopicMissing"

    def __init__(self, message: str, *, topics: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.topics = topics


class TransportError(OperatorError):
    """The flow's transport (other than Kafka) cannot be used as its spec says."""

    reason = "TransportError"


class TransportNotInstalled(TransportError):
    """The transport's backlog reader (``orderflow.transport.<name>.backlog``) or its client is not installed."""

    reason = "TransportNotInstalled"


class TransportConfigInvalid(TransportError):
    """No broker URL in the spec or its Secret, or the reader refused the URL or an option."""

    reason = "TransportConfigInvalid"


class KubernetesError(OperatorError):
    reason = "KubernetesApiError"


class DeploymentMissing(KubernetesError):
    reason = "DeploymentMissing"


class SecretUnavailable(KubernetesError):
    reason = "SecretUnavailable"


class FlowHealthUnavailable(OperatorError):
    reason = "OrderServiceUnreachable"
