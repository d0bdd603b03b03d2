"""``codec.decode`` reads the ``time`` attribute itself (the standard library's parser), and must read it exactly as
the CloudEvents SDK's binding does: the same instant for every time the SDK accepts, the same refusal for the rest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from cloudevents.core.bindings import kafka as ce_kafka

from orderflow.events import Poison, codec, new_order_id
from tests.support import events as ev


def _message(time_text: str | None, *, header: str = "ce_time") -> tuple[bytes, bytes, list[tuple[str, bytes | None]]]:
    record = codec.encode(ev.stock_reserved(new_order_id()), prefix="decode")
    headers = [(n, v) for n, v in record.headers if n != "ce_time"]
    if time_text is not None:
        headers.append((header, time_text.encode()))
    return record.key, record.value or b"", headers


def _sdk_time(key: bytes, value: bytes, headers: list[tuple[str, bytes | None]]) -> datetime | None:
    message = ce_kafka.KafkaMessage(headers={n: v for n, v in headers if v is not None}, key=key, value=value)
    time = ce_kafka.from_kafka(message, codec.FastJSONFormat()).get_attributes().get("time")
    assert time is None or isinstance(time, datetime)
    return time


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-01T10:00:00.123456+00:00",  # what OrderFlow writes
        "2026-12-01T10:00:00Z",
        "2026-12-01T10:00:00.5Z",
        "2026-12-01T12:30:00+02:30",
        "2026-12-01T10:00:00.123-05:00",
        "20261201T100000Z",  # ISO 8601 basic format
    ],
)
def test_every_time_is_the_instant_the_sdk_reads(text: str) -> None:
    key, value, headers = _message(text)
    ours = codec.decode(key=key, value=value, headers=headers).time
    sdk = _sdk_time(key, value, headers)
    assert sdk is not None
    assert ours == sdk
    assert ours.utcoffset() == sdk.utcoffset()


def test_the_time_header_is_found_whatever_its_case() -> None:
    key, value, headers = _message("2026-12-01T11:00:00+01:00", header="CE_TIME")
    decoded = codec.decode(key=key, value=value, headers=headers)
    assert decoded.time == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert decoded.time.utcoffset() == timedelta(hours=1)
    assert decoded.time.tzinfo == timezone(timedelta(hours=1))


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01T10:00:00Z", "2026-12-01T25:00:00Z", ""])
def test_a_time_the_sdk_refuses_is_poison(text: str) -> None:
    key, value, headers = _message(text)
    with pytest.raises(ValueError):
        _sdk_time(key, value, headers)
    with pytest.raises(Poison) as caught:
        codec.decode(key=key, value=value, headers=headers)
    assert caught.value.reason == "undecodable"


def test_an_event_without_time_gets_the_sdks_default() -> None:
    key, value, headers = _message(None)
    decoded = codec.decode(key=key, value=value, headers=headers)
    assert abs(decoded.time - datetime.now(UTC)) < timedelta(minutes=1)  # the SDK's factory stamps it
