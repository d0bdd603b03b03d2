"""OpenTelemetry traces of the flow, exported over OTLP/HTTP when the standard ``OTEL_*`` variables ask for it.

Every hop already carries W3C trace context (the CloudEvent ``traceparent``); this module records the hops as spans,
so that one order is one trace across the four services:

    POST /orders (SERVER, order)
    └─ create OrderCreated (PRODUCER, order)          its context is the event's traceparent
       ├─ send OrderCreated (CLIENT, order)           the outbox relay, from produce to Kafka's ack
       ├─ process OrderCreated (CONSUMER, inventory)  ended when the consuming transaction commits
       │  └─ create StockReserved (PRODUCER, inventory)
       │     └─ process StockReserved (CONSUMER, shipping) ...
       └─ process OrderCreated (CONSUMER, billing) ...

A message sent to the dead-letter topic is a ``dead-letter`` span (status ERROR, with the reason) in the trace of
the message, when its headers carry a ``ce_traceparent``.

Off unless ``OTEL_TRACES_EXPORTER`` names an exporter, or an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` keep it off.
When off the SDK is never imported, and every hook costs one global lookup and an ``is None`` test; events still
get a fresh ``traceparent`` per hop, as they always did. The SDK reads the rest of the standard variables itself
(endpoint, headers, timeout, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ``OTEL_RESOURCE_ATTRIBUTES``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from orderflow.errors import ConfigError
from orderflow.events import Event, catalog
from orderflow.events.event import child_traceparent

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

# Probes and scrapes are not part of any flow: tracing them would bury the orders under a trace every few seconds.
UNTRACED_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
SUPPORTED_PROTOCOL: Final = "http/protobuf"
EXPORTERS: Final = ("otlp", "console")
INSTALL_HINT: Final = "pip install 'orderflow[tracing]'"

_tracer: Tracer | None = None
# messaging.system of every span: the transport's name (OpenTelemetry's values: kafka, nats, rabbitmq)
_system = "kafka"
_provider: TracerProvider | None = None


# -- configuration -----------------------------------------------------------------------------------------------


def exporters_from(env: Mapping[str, str]) -> list[str]:
    """The exporters the standard variables ask for (``[]``: tracing off); ``ConfigError`` naming a bad variable."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not raw:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        names = ["otlp"] if endpoint else []
    else:
        names = [n.strip() for n in raw.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        choices = ", ".join(("none", *EXPORTERS))
        raise ConfigError(f"OTEL_TRACES_EXPORTER={raw!r}: {', '.join(unknown)} is not one of {choices}")
    if "otlp" in names:
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = env.get(variable, "").strip()
            if protocol and protocol != SUPPORTED_PROTOCOL:
                raise ConfigError(f"{variable}={protocol!r}: only {SUPPORTED_PROTOCOL} is supported (OTLP over HTTP)")
            if protocol:
                break
    return names


def configure(service: str, env: Mapping[str, str] | None = None, *, system: str = "kafka") -> bool:
    """Switch tracing on for this process when ``env`` (default: the environment) asks for it; True if it is on.

    ``service.name`` is ``OTEL_SERVICE_NAME`` or ``orderflow-<service>``. Idempotent: a second call keeps the first
    configuration.
    """
    global _tracer, _provider, _system
    env = os.environ if env is None else env
    _system = system
    names = exporters_from(env)
    if not names or _tracer is not None:
        return _tracer is not None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ModuleNotFoundError as e:
        raise ConfigError(f"OTEL_* asks for traces, but the OpenTelemetry SDK is missing: {INSTALL_HINT}") from e
    resource = Resource.create(
        {"service.name": env.get("OTEL_SERVICE_NAME") or f"orderflow-{service}", "service.namespace": "orderflow"}
    )
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for name in names:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider = provider
    _tracer = provider.get_tracer("orderflow.runtime")
    return True


def enabled() -> bool:
    return _tracer is not None


def shutdown() -> None:
    """Export what is buffered and stop (a graceful stop of the service); a no-op when tracing is off."""
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


# -- trace context -----------------------------------------------------------------------------------------------


def traceparent_of(span: Span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _parent(traceparent: str | bytes | None) -> Any:
    """An OpenTelemetry ``Context`` whose parent is ``traceparent``; None (a new trace) when it is missing or bad."""
    if not traceparent:
        return None
    value = traceparent.decode("ascii", "replace") if isinstance(traceparent, bytes) else traceparent
    return _propagator().extract({"traceparent": value})


@functools.cache
def _propagator() -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def _header(headers: Sequence[tuple[str, Any]], name: str) -> Any:
    return next((v for k, v in headers if k.lower() == name), None)


def _event_name(event_type: str) -> str:
    entry = catalog.CATALOG.get(event_type)
    return entry.name if entry is not None else event_type


def _event_attributes(event: Event) -> dict[str, str]:
    return {
        "messaging.system": _system,
        "messaging.message.id": event.id,
        "cloudevents.event_id": event.id,
        "cloudevents.event_type": event.type,
        "cloudevents.event_source": event.source,
        "cloudevents.event_subject": event.subject,
        "orderflow.order_id": event.subject,
    }


# -- HTTP --------------------------------------------------------------------------------------------------------


class ServerSpan:
    """One HTTP request. ``headers`` are the request's with ``traceparent`` pointing at this span, so whatever the
    endpoint emits is a child of the request (the order service passes it on to ``OrderCreated``)."""

    def __init__(self, span: Span, headers: Mapping[str, str]) -> None:
        self.span = span
        self.headers = {**headers, "traceparent": traceparent_of(span)}

    def finish(self, status: int) -> None:
        from opentelemetry.trace import Status, StatusCode

        self.span.set_attribute("http.response.status_code", status)
        if status >= 500:
            self.span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        self.span.end()


def server(
    method: str, target: str, headers: Mapping[str, str], route: Callable[[str], str | None]
) -> ServerSpan | None:
    """A SERVER span for one request, child of its ``traceparent`` header; None when tracing is off or for probes."""
    tracer = _tracer
    if tracer is None:
        return None
    path = urlsplit(target).path
    if path in UNTRACED_PATHS:
        return None
    from opentelemetry.trace import SpanKind

    template = route(path)
    attributes = {"http.request.method": method, "url.path": path}
    if template is not None:
        attributes["http.route"] = template
    span = tracer.start_span(
        f"{method} {template or path}",
        context=_parent(headers.get("traceparent")),
        kind=SpanKind.SERVER,
        attributes=attributes,
    )
    return ServerSpan(span, headers)


# -- events: create (Tx.emit) and process (the consumer's transaction) -------------------------------------------


def create(parent: str | None, *, service: str, event_type: str, subject: str) -> str:
    """The ``traceparent`` of an event being emitted under ``parent``: a PRODUCER span's, when tracing is on."""
    tracer = _tracer
    if tracer is None:
        return child_traceparent(parent)
    from opentelemetry.trace import SpanKind

    span = tracer.start_span(
        f"create {_event_name(event_type)}",
        context=_parent(parent),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": _system,
            "messaging.operation.name": "create",
            "cloudevents.event_type": event_type,
            "orderflow.order_id": subject,
            "orderflow.service": service,
        },
    )
    span.end()
    return traceparent_of(span)


class Consuming:
    """The CONSUMER spans of one transaction's events: started as each handler runs, ended once the transaction
    has committed (or, with the error, when it failed: a retried batch shows as a failed span and a good one)."""

    def __init__(self, tracer: Tracer, service: str) -> None:
        self.tracer = tracer
        self.service = service
        self.spans: list[Span] = []

    def start(self, event: Event) -> str | None:
        """Start the span of handling ``event``; the handler's own emits go under it."""
        from opentelemetry.trace import SpanKind

        span = self.tracer.start_span(
            f"process {_event_name(event.type)}",
            context=_parent(event.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                **_event_attributes(event),
                "messaging.operation.name": "process",
                "messaging.consumer.group.name": self.service,
                "orderflow.service": self.service,
            },
        )
        self.spans.append(span)
        return traceparent_of(span)

    def __enter__(self) -> Consuming:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: TracebackType | None
    ) -> None:
        from opentelemetry.trace import Status, StatusCode

        for span in self.spans:
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"transaction rolled back: {type(error).__name__}"))
            span.end()


class _NotConsuming:
    """What ``consuming`` is when tracing is off: the event's own traceparent, nothing recorded."""

    @staticmethod
    def start(event: Event) -> str | None:
        return event.traceparent

    def __enter__(self) -> _NotConsuming:
        return self

    def __exit__(self, *_: object) -> None:
        return None


_NOT_CONSUMING: Final = _NotConsuming()


def consuming(service: str) -> Consuming | _NotConsuming:
    """The span recorder for one consuming transaction (``with consuming(name) as spans: spans.start(event)``)."""
    tracer = _tracer
    return _NOT_CONSUMING if tracer is None else Consuming(tracer, service)


# -- the outbox relay and the dead-letter topic ------------------------------------------------------------------

class Sending:
    """CLIENT spans of the outbox relay's publishes, each a child of the event's create span."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def begin(self, *, topic: str, headers: Sequence[tuple[str, Any]]) -> Callable[[str | None], None]:
        """Start the send span of one record; the function returned ends it (ERROR with the broker's refusal)."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        event_type = _header(headers, "ce_type")
        event_type = event_type.decode() if isinstance(event_type, bytes) else str(event_type or "event")
        event_id = _header(headers, "ce_id")
        span = self.tracer.start_span(
            f"send {_event_name(event_type)}",
            context=_parent(_header(headers, "ce_traceparent")),
            kind=SpanKind.CLIENT,
            attributes={
                "messaging.system": _system,
                "messaging.operation.name": "send",
                "messaging.destination.name": topic,
                "messaging.message.id": event_id.decode() if isinstance(event_id, bytes) else str(event_id),
                "cloudevents.event_type": event_type,
            },
        )

        def end(error: str | None) -> None:
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
            span.end()

        return end


def sending() -> Sending | None:
    """The relay's span maker for one batch; None when tracing is off."""
    tracer = _tracer
    return None if tracer is None else Sending(tracer)


def dead_lettered(
    *,
    service: str,
    dlq_topic: str,
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    headers: Sequence[tuple[str, Any]],
) -> None:
    """Record a message sent to the dead-letter topic, in the trace of the message when it carries one."""
    tracer = _tracer
    if tracer is None:
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    event_type = _header(headers, "ce_type")
    name = _event_name(event_type.decode("utf-8", "replace")) if isinstance(event_type, bytes) else "message"
    span = tracer.start_span(
        f"dead-letter {name}",
        context=_parent(_header(headers, "ce_traceparent")),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": _system,
            "messaging.operation.name": "send",
            "messaging.destination.name": dlq_topic,
            "orderflow.service": service,
            "orderflow.dlq.reason": reason,
            "orderflow.dlq.detail": detail[:2000],
            "orderflow.dlq.topic": topic,
            "orderflow.dlq.partition": partition,
            "orderflow.dlq.offset": offset,
        },
    )
    span.set_status(Status(StatusCode.ERROR, f"dead-lettered: {reason}"))
    span.end()
