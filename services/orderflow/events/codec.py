"""CloudEvents 1.0 in the transport seam's neutral form: encoding in binary content mode, decoding binary or
structured, validation.

Every way a message can be unusable is mapped to one ``Poison`` reason here, so the consumer loop has a single
decision to make (dead-letter it, go on) and the dead-letter headers say exactly why.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any, Final

import fastjsonschema
import orjson
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.bindings.common import get_event_factory_for_version
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.spec import SPECVERSION_V1_0
from cloudevents.core.v1.event import CloudEvent

from orderflow.errors import Poison, SchemaViolation
from orderflow.events import catalog
from orderflow.events.event import Event, EventId, OrderId
from orderflow.transport import Record

CONTENT_TYPE: Final = "application/json"
REQUIRED_HEADERS: Final = ("ce_specversion", "ce_id", "ce_source", "ce_type")


class FastJSONFormat(JSONFormat):
    """The SDK's JSON format with orjson for the data payload (binary mode): same bytes in, same values out.

    The CloudEvents SDK stays the binding (attributes, headers, validation); only the JSON codec of ``data`` is
    swapped, which the profile of a saga burst showed as a large part of decoding. Anything orjson refuses is
    handed to the SDK's own code, so malformed payloads fail exactly as before.
    """

    def read_data(self, body: bytes, datacontenttype: str | None) -> dict[str, Any] | str | bytes | None:
        if body and (datacontenttype or CONTENT_TYPE) == CONTENT_TYPE:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                return super().read_data(body, datacontenttype)
            if isinstance(parsed, dict):
                return parsed
        return super().read_data(body, datacontenttype)

    def write_data(self, data: dict[str, Any] | str | bytes | None, datacontenttype: str | None) -> bytes:
        if isinstance(data, dict) and (datacontenttype or CONTENT_TYPE) == CONTENT_TYPE:
            try:
                return orjson.dumps(data)
            except TypeError:
                pass
        return super().write_data(data, datacontenttype)


_FORMAT: Final = FastJSONFormat()


def _compile(schema: Mapping[str, Any]) -> Callable[[Any], Any]:
    validate: Callable[[Any], Any] = fastjsonschema.compile(dict(schema), formats={"date-time": _is_datetime})
    return validate


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_VALIDATORS: Final[Mapping[str, Callable[[Any], Any]]] = {t: _compile(e.schema) for t, e in catalog.CATALOG.items()}


def validate(event_type: str, data: Any) -> None:
    """Raise ``SchemaViolation`` unless ``data`` is valid for ``event_type`` (which must be in the catalog)."""
    try:
        _VALIDATORS[event_type](data)
    except fastjsonschema.JsonSchemaValueException as e:
        raise SchemaViolation(event_type, e.message) from e


def encode(event: Event, *, prefix: str) -> Record:
    """Validate ``event`` and turn it into a binary-mode record on its catalog channel (the seam's neutral form,
    which is the Kafka protocol binding's: ``ce_`` headers; each transport maps it to its own binding)."""
    entry = catalog.get(event.type)
    validate(event.type, event.data)
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "time": event.time,
        "datacontenttype": CONTENT_TYPE,
        "dataschema": entry.schema_uri,
        "partitionkey": event.subject,
    }
    if event.traceparent:
        attributes["traceparent"] = event.traceparent
    message = ce_kafka.to_binary(CloudEvent(attributes, dict(event.data)), _FORMAT)
    key = message.key.encode() if isinstance(message.key, str) else (message.key or b"")
    return Record(channel=entry.topic(prefix), key=key, value=message.value, headers=tuple(message.headers.items()))


def ignorable(headers: list[tuple[str, bytes | None]] | None, handled: Collection[str]) -> bool:
    """True for a binary-mode event of a catalog type the consumer has no handler for: no need to decode its body.

    The type travels in the ``ce_type`` header, so a service skips the events it ignores (billing reads three
    topics and handles a third of what is on them) without parsing them. Types not in the catalog are not
    ignorable: they still go through ``decode`` and to the dead-letter topic as ``unknown_type``.
    """
    for name, value in headers or ():
        if name == "ce_type" and value is not None:
            event_type = value.decode("utf-8", "replace")
            return event_type in catalog.CATALOG and event_type not in handled
    return False


def _from_binary(headers: dict[str, bytes], key: bytes | None, value: bytes | None) -> BaseCloudEvent:
    """The SDK's binary-mode binding (``from_binary``: headers to attributes, data through ``_FORMAT``, the event
    built and validated by the factory for its specversion), with the ``time`` header parsed by the standard library.

    The SDK parses it with dateutil's ``isoparse``, a fifth of a consumed event's decoding in a saga burst;
    ``datetime.fromisoformat`` reads every time a CloudEvents producer writes (``...T10:00:00.123456+00:00``,
    ``...Z``) several times faster. A time it refuses is left to the SDK, so what the SDK accepts is accepted and
    what it rejects fails as before.
    """
    time_header = "ce_time" if "ce_time" in headers else next((n for n in headers if n.lower() == "ce_time"), None)
    time: datetime | None = None
    if time_header is not None:
        try:
            time = datetime.fromisoformat(headers[time_header].decode("utf-8"))
        except ValueError:
            time = None
    if time is None:  # no time, or one for the SDK to judge
        return ce_kafka.from_binary(ce_kafka.KafkaMessage(headers=headers, key=key, value=value or b""), _FORMAT)
    parsed = time

    def factory(attributes: dict[str, Any], data: Any) -> BaseCloudEvent:
        make = get_event_factory_for_version(attributes.get("specversion", SPECVERSION_V1_0))
        attributes["time"] = parsed
        return make(attributes, data)

    rest = {name: v for name, v in headers.items() if name != time_header}
    return ce_kafka.from_binary(ce_kafka.KafkaMessage(headers=rest, key=key, value=value or b""), _FORMAT, factory)


def decode(*, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]] | None) -> Event:
    """Parse a consumed Kafka message into an ``Event`` or raise ``Poison`` saying why it cannot be one."""
    header_map = {name: v for name, v in (headers or ()) if v is not None}
    names = {name.lower() for name in header_map}
    binary = any(name.startswith("ce_") for name in names)
    if binary:
        missing = [h for h in REQUIRED_HEADERS if h not in names]
        if missing:
            raise Poison("missing_attribute", f"binary-mode message lacks header(s) {', '.join(missing)}")
    try:
        if binary:
            cloud_event = _from_binary(header_map, key, value)
        else:
            cloud_event = ce_kafka.from_kafka(
                ce_kafka.KafkaMessage(headers=header_map, key=key, value=value or b""), _FORMAT
            )
    except BaseCloudEventException as e:
        raise Poison("missing_attribute", str(e)) from e
    except (ValueError, TypeError, UnicodeDecodeError, KeyError, AttributeError) as e:
        # json.JSONDecodeError and dateutil's ParserError are ValueErrors; a structured-mode body that is not a
        # JSON object surfaces as TypeError/AttributeError inside the SDK.
        raise Poison("undecodable", f"{type(e).__name__}: {e}") from e
    attributes = cloud_event.get_attributes()
    event_type = attributes.get("type")
    if attributes.get("specversion") != "1.0":
        raise Poison("unsupported_specversion", f"specversion {attributes.get('specversion')!r}")
    # The SDK has already checked that ``type`` is a string; isinstance tells the type checker so.
    if not isinstance(event_type, str) or event_type not in catalog.CATALOG:
        raise Poison("unknown_type", f"type {event_type!r} is not in the event catalog")
    subject = attributes.get("subject")
    if not subject:
        raise Poison("missing_attribute", "subject (the order id) is missing")
    data = cloud_event.get_data()
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except ValueError as e:
            raise Poison("undecodable", f"data is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise SchemaViolation(event_type, f"data must be a JSON object, got {type(data).__name__}")
    validate(event_type, data)
    if data.get("order_id") != subject:
        raise SchemaViolation(event_type, f"data.order_id {data.get('order_id')!r} != subject {subject!r}")
    time = attributes.get("time")
    return Event(
        type=event_type,
        source=str(attributes["source"]),
        id=EventId(str(attributes["id"])),
        subject=OrderId(str(subject)),
        data=data,
        time=time if isinstance(time, datetime) else datetime.fromisoformat("1970-01-01T00:00:00+00:00"),
        traceparent=attributes.get("traceparent"),
    )
