"""Prometheus metrics of one service, in a registry of its own so that tests can run several in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"service": service}
        self.consumed = Counter(
            "orderflow_events_consumed_total",
            "Events consumed and applied (duplicates excluded), by type.",
            ["service", "type"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "orderflow_events_duplicate_total",
            "Events skipped because the inbox had already seen their source+id.",
            ["service"],
            registry=self.registry,
        ).labels(**labels)
        self.ignored = Counter(
            "orderflow_events_ignored_total",
            "Valid events on a subscribed topic that this service does not consume.",
            ["service"],
            registry=self.registry,
        ).labels(**labels)
        self.produced = Counter(
            "orderflow_events_produced_total",
            "Events relayed from the outbox to the broker and acknowledged, by channel (topic).",
            ["service", "topic"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "orderflow_events_dead_lettered_total",
            "Messages sent to the dead-letter topic, by reason.",
            ["service", "reason"],
            registry=self.registry,
        )
        self.retries = Counter(
            "orderflow_batch_retries_total",
            "Batches retried after a transient failure (database busy, broker down).",
            ["service"],
            registry=self.registry,
        ).labels(**labels)
        self.batch_seconds = Histogram(
            "orderflow_batch_processing_seconds",
            "Time to apply one consumed batch and commit it.",
            ["service"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        ).labels(**labels)
        self.batch_size = Histogram(
            "orderflow_batch_size_messages",
            "Messages per consumed batch.",
            ["service"],
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=self.registry,
        ).labels(**labels)
        self.assigned_partitions = Gauge(
            "orderflow_assigned_partitions",
            "Partitions the consumer group currently assigns to this replica.",
            ["service"],
            registry=self.registry,
        ).labels(**labels)
        self.outbox_backlog = Gauge(
            "orderflow_outbox_backlog",
            "Events committed to the outbox and not yet acknowledged by the broker.",
            ["service"],
            registry=self.registry,
        ).labels(**labels)
        self._service = service

    def count_consumed(self, event_type: str, n: int = 1) -> None:
        self.consumed.labels(service=self._service, type=event_type).inc(n)

    def count_produced(self, topic: str, n: int = 1) -> None:
        self.produced.labels(service=self._service, topic=topic).inc(n)

    def count_dead_lettered(self, reason: str) -> None:
        self.dead_lettered.labels(service=self._service, reason=reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
