"""``codec.encode`` and ``codec.decode`` write and read the Kafka binding's binary mode themselves for the events
the CloudEvents SDK would accept without a word, and hand everything else to the SDK. They must be
indistinguishable from the SDK: the same record for every event encoded, and for every message decoded the same
``Event`` or the same refusal (the ``Poison`` reason and detail the dead-letter headers carry).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from orderflow.events import Event, Poison, codec, new_order_id
from orderflow.transport import Record
from tests.support import events as ev

Headers = list[tuple[str, bytes | None]]
RECORD_KEY = b"<the record's own key>"

EVENTS: dict[str, Callable[[], Event]] = {
    "order_created": lambda: ev.order_created(),
    "stock_reserved": lambda: ev.stock_reserved(new_order_id()),
    "stock_rejected": lambda: ev.stock_rejected(new_order_id()),
    "payment_charged": lambda: ev.payment_charged(new_order_id()),
    "payment_failed": lambda: ev.payment_failed(new_order_id()),
    "shipment_cancelled": lambda: ev.shipment_cancelled(new_order_id()),
    "shipment_dispatched": lambda: ev.shipment_dispatched(new_order_id()),
    "traced": lambda: _replace(
        ev.stock_reserved(new_order_id()), traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ),
    "offset_time": lambda: _replace(
        ev.payment_charged(new_order_id()), time=datetime(2026, 12, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    ),
}


def _replace(event: Event, **changes: object) -> Event:
    fields = {name: getattr(event, name) for name in ("type", "source", "subject", "data", "id", "time", "traceparent")}
    return Event(**{**fields, **changes})  # type: ignore[arg-type]


def _outcome(record: Record, headers: Headers, *, fast: bool, key: bytes | None = RECORD_KEY) -> object:
    try:
        return codec._decode(
            key=record.key if key is RECORD_KEY else key, value=record.value, headers=headers, fast=fast
        )
    except Poison as p:
        return ("poison", p.reason, p.detail)


def _same_as_sdk(record: Record, headers: Headers, *, key: bytes | None = RECORD_KEY) -> object:
    ours = _outcome(record, headers, fast=True, key=key)
    sdk = _outcome(record, headers, fast=False, key=key)
    if isinstance(ours, Event) and isinstance(sdk, Event):
        if not any(n.lower() == "ce_time" and v is not None for n, v in headers):  # the SDK stamps "now", twice
            assert abs(ours.time - sdk.time) < timedelta(minutes=1)
            ours = _replace(ours, time=sdk.time)
        assert ours.time.utcoffset() == sdk.time.utcoffset()
    assert ours == sdk
    return ours


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_an_encoded_event_is_the_record_the_sdk_writes(name: str) -> None:
    event = EVENTS[name]()
    fast = codec._encode(event, prefix="fast", fast=True)
    assert fast == codec._encode(event, prefix="fast", fast=False)
    decoded = codec.decode(key=fast.key, value=fast.value, headers=list(fast.headers))
    assert decoded == event


@pytest.mark.parametrize(
    "change",
    [{"id": ""}, {"source": ""}, {"subject": ""}, {"time": datetime(2026, 12, 1, 10, 0)}, {"time": "2026-12-01"}],
    ids=["empty-id", "empty-source", "empty-subject", "naive-time", "time-not-a-datetime"],
)
def test_an_event_the_sdk_refuses_is_refused_the_same_way(change: dict[str, object]) -> None:
    event = _replace(ev.stock_reserved(new_order_id()), **change)
    with pytest.raises(Exception) as sdk:
        codec._encode(event, prefix="fast", fast=False)
    with pytest.raises(type(sdk.value)) as ours:
        codec.encode(event, prefix="fast")
    assert str(ours.value) == str(sdk.value)


def _mutations(record: Record) -> dict[str, Headers]:
    """The record's headers, and each way a producer could get them wrong or merely unusual."""
    base: Headers = list(record.headers)
    names = [n for n, _ in base]

    def without(name: str) -> Headers:
        return [(n, v) for n, v in base if n != name]

    def replaced(name: str, value: bytes | None) -> Headers:
        return [(n, value if n == name else v) for n, v in base]

    cases: dict[str, Headers] = {"as-written": base, "upper-case names": [(n.upper(), v) for n, v in base]}
    for name in names:
        cases[f"without {name}"] = without(name)
        cases[f"empty {name}"] = replaced(name, b"")
        cases[f"not utf-8 {name}"] = replaced(name, b"\xff\xfe")
        cases[f"null {name}"] = replaced(name, None)
    cases.update(
        {
            "specversion 0.3": replaced("ce_specversion", b"0.3"),
            "specversion 2.0": replaced("ce_specversion", b"2.0"),
            "naive time": replaced("ce_time", b"2026-12-01T10:00:00"),
            "date only": replaced("ce_time", b"2026-12-01"),
            "time with offset": replaced("ce_time", b"2026-12-01T12:30:00+02:30"),
            "basic-format time": replaced("ce_time", b"20261201T100000Z"),
            "unparseable time": replaced("ce_time", b"yesterday"),
            "extension": [*base, ("ce_tenant", b"acme")],
            "extension named data": [*base, ("ce_data", b"x")],
            "extension with a dash": [*base, ("ce_my-ext", b"x")],
            "upper-case extension": [*base, ("ce_Tenant", b"acme")],
            "empty extension": [*base, ("ce_tenant", b"")],
            "unknown type": replaced("ce_type", b"dev.orderflow.nope.v1"),
            "other content type": replaced("content-type", b"text/plain"),
            "structured content type": replaced("content-type", b"application/cloudevents+json"),
            "duplicate time, second wins": [*base, ("CE_TIME", b"2026-12-01T10:00:00Z")],
            "non-ce header": [*base, ("x-trace", b"whatever")],
        }
    )
    return cases


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_every_message_decodes_to_what_the_sdk_decodes(name: str) -> None:
    record = codec.encode(EVENTS[name](), prefix="fast")
    outcomes = {case: _same_as_sdk(record, headers) for case, headers in _mutations(record).items()}
    # The corpus exercises both paths: events the fast path reads, and refusals of each kind the SDK decides.
    assert isinstance(outcomes["as-written"], Event)
    assert isinstance(outcomes["extension"], Event)
    reasons = {o[1] for o in outcomes.values() if isinstance(o, tuple)}
    assert {"missing_attribute", "undecodable", "unsupported_specversion", "unknown_type"} <= reasons


@pytest.mark.parametrize("body", [b"", b"{", b"[1, 2]", b'"text"', b"\xff", b'{"order_id": "someone else"}'])
def test_a_bad_body_is_refused_as_the_sdk_refuses_it(body: bytes) -> None:
    record = codec.encode(ev.stock_reserved(new_order_id()), prefix="fast")
    bad = Record(channel=record.channel, key=record.key, value=body, headers=record.headers)
    with pytest.raises(Poison):
        codec.decode(key=bad.key, value=bad.value, headers=list(bad.headers))
    _same_as_sdk(bad, list(bad.headers))


@pytest.mark.parametrize("key", [None, b"", b"another-key", b"\xff"], ids=["none", "empty", "other", "not-utf-8"])
def test_the_key_is_read_as_the_sdk_reads_it(key: bytes | None) -> None:
    record = codec.encode(ev.payment_failed(new_order_id()), prefix="fast")
    _same_as_sdk(record, list(record.headers), key=key)
