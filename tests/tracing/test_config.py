"""Tracing is off unless the standard OTEL_* variables ask for it, costs no SDK import when off, and refuses
settings it cannot honour with an error naming the variable."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from orderflow.errors import ConfigError
from orderflow.runtime import tracing
from tests.support import events

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ["console", "otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ["otlp"]),
    ],
)
def test_the_standard_variables_decide_whether_traces_are_exported(env: dict[str, str], expected: list[str]) -> None:
    assert tracing.exporters_from(env) == expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
    ],
)
def test_a_setting_that_cannot_be_honoured_is_refused_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        tracing.exporters_from(env)


def test_off_by_default_the_sdk_is_never_imported_and_events_still_get_trace_context() -> None:
    """The hot path with tracing off: no OpenTelemetry module loaded by a service's runtime, handlers unchanged."""
    code = (
        "import sys\n"
        "from orderflow.runtime import consumer, http, outbox, dlq, service, tracing\n"
        "from orderflow.events import catalog\n"
        "assert tracing.configure('order', {}) is False\n"
        "tp = tracing.create(None, service='order', event_type=catalog.ORDER_CREATED, subject='ord_x')\n"
        "assert tp.startswith('00-') and len(tp.split('-')[1]) == 32, tp\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _recorder() -> tuple[InMemorySpanExporter, tracing.Consuming]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, tracing.Consuming(provider.get_tracer("test"), "billing")


def test_a_consumer_span_is_a_child_of_the_events_traceparent_and_ends_with_its_transaction() -> None:
    exporter, spans = _recorder()
    trace_id, parent_span = "ab" * 16, "cd" * 8
    event = replace(events.order_created(), traceparent=f"00-{trace_id}-{parent_span}-01")
    with spans:
        own = spans.start(event)
        assert exporter.get_finished_spans() == ()  # still open: the transaction has not committed
    (span,) = exporter.get_finished_spans()
    assert span.name == "process OrderCreated"
    assert f"{span.context.trace_id:032x}" == trace_id and f"{span.parent.span_id:016x}" == parent_span
    assert own == f"00-{trace_id}-{span.context.span_id:016x}-01"  # what the handler's emits are children of
    assert span.status.status_code == StatusCode.UNSET


def test_the_spans_of_a_rolled_back_transaction_end_as_errors() -> None:
    exporter, spans = _recorder()
    with pytest.raises(RuntimeError), spans:
        spans.start(events.order_created())
        raise RuntimeError("database busy")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert "rolled back" in (span.status.description or "")
    assert span.events[0].name == "exception"


def test_every_otel_variable_the_code_reads_is_in_the_readme_configuration_reference() -> None:
    source = Path(tracing.__file__).read_text()
    reference = README.read_text().split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    read = set(re.findall(r'"(OTEL_[A-Z_]+)"', source))
    assert read and {v for v in read if f"`{v}`" not in reference} == set()
