"""Each kind of poison message lands in the dead-letter topic with its reason; good events flow on around it."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent

from orderflow.events import codec
from orderflow.runtime import dlq
from orderflow.transport import Record
from orderflow_dev import topics as kafka
from orderflow_dev.stack import Stack
from orderflow_dev.wait import until
from tests.support import events

pytestmark = pytest.mark.kafka


def _headers_without(record: Record, *names: str) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in record.headers if k not in names]


def _with_header(record: Record, name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(k, value if k == name else v) for k, v in record.headers]


def test_poison_goes_to_the_dlq_with_reason_and_origin(
    make_stack: Callable[..., Stack], kafka_bootstrap: str, unique_prefix: str
) -> None:
    stack = make_stack(services=["billing"])
    stack.put_account("alice", 1_000_000)
    topic = f"{unique_prefix}.orders"

    def good() -> Record:
        return codec.encode(events.order_created(unit_price=100), prefix=unique_prefix)

    template = good()
    bad_schema = events.order_created()
    bad_schema_record = codec.encode(bad_schema, prefix=unique_prefix)
    bad_schema_value = json.loads(bad_schema_record.value)
    bad_schema_value["items"][0]["quantity"] = 0
    structured_ok = events.order_created(unit_price=100)
    structured = ce_kafka.to_structured_event(
        CloudEvent(
            {
                "id": structured_ok.id,
                "source": structured_ok.source,
                "type": structured_ok.type,
                "subject": structured_ok.subject,
                "partitionkey": structured_ok.subject,
                "specversion": "1.0",
                "datacontenttype": "application/json",
            },
            dict(structured_ok.data),
        )
    )

    poison = {
        b"p-undecodable": (template.key, b"\xff\xfe not json", list(template.headers)),
        b"p-missing-id": (template.key, template.value, _headers_without(template, "ce_id")),
        b"p-missing-subject": (template.key, template.value, _headers_without(template, "ce_subject")),
        b"p-unknown-type": (template.key, template.value, _with_header(template, "ce_type", b"dev.orderflow.nope.v1")),
        b"p-schema": (bad_schema_record.key, json.dumps(bad_schema_value).encode(), list(bad_schema_record.headers)),
        b"p-structured-garbage": (b"x", b'{"specversion": 1', [("content-type", b"application/cloudevents+json")]),
        b"p-no-headers": (b"x", b"hello", []),
    }
    expected_reason = {
        b"p-undecodable": "undecodable",
        b"p-missing-id": "missing_attribute",
        b"p-missing-subject": "missing_attribute",
        b"p-unknown-type": "unknown_type",
        b"p-schema": "schema_violation",
        b"p-structured-garbage": "undecodable",
        b"p-no-headers": "undecodable",
    }
    goods = [good() for _ in poison]
    records: list = []
    for (marker, (_key, value, headers)), ok in zip(poison.items(), goods, strict=True):
        records.append((topic, marker, value, headers))  # the marker key finds it again on both topics
        records.append(ok)
    records.append((topic, structured.key.encode(), structured.value, list(structured.headers.items())))
    kafka.publish(kafka_bootstrap, records)

    charged = [json.loads(g.value)["order_id"] for g in goods] + [structured_ok.subject]
    until(lambda: all(_state(stack, o) == "CHARGED" for o in charged), timeout=30, what="every good order charged")

    originals = {r.key: r for r in kafka.read_all(kafka_bootstrap, topic, at_least=len(records))}
    letters = kafka.read_all(kafka_bootstrap, f"{unique_prefix}.billing.dlq", at_least=len(poison))
    assert len(letters) == len(poison)
    for letter in letters:
        original = originals[letter.key]
        assert letter.headers[dlq.HEADER_REASON].decode() == expected_reason[letter.key], letter.key
        assert letter.headers[dlq.HEADER_TOPIC].decode() == topic
        assert int(letter.headers[dlq.HEADER_PARTITION]) == original.partition
        assert int(letter.headers[dlq.HEADER_OFFSET]) == original.offset
        assert letter.headers[dlq.HEADER_DETAIL]
        assert letter.value == original.value  # kept byte for byte, so it can be replayed once fixed
    metrics = stack["billing"].get("/metrics")
    assert 'orderflow_events_dead_lettered_total{reason="schema_violation",service="billing"} 1.0' in metrics


def _state(stack: Stack, order_id: str) -> str | None:
    return (stack["billing"].find(f"/payments/{order_id}") or {}).get("state")
