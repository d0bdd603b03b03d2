"""CloudEvents 1.0 in the transport seam's neutral form: encoding in binary content mode, decoding binary or
structured, validation.

Every way a message can be unusable is mapped to one ``Poison`` reason here, so the consumer loop has a single
decision to make (dead-letter it, go on) and the dead-letter headers say exactly why.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping
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
from cloudevents.core.v1.event import OPTIONAL_ATTRIBUTES, REQUIRED_ATTRIBUTES, CloudEvent

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
    return _encode(event, prefix=prefix, fast=True)


def _encode(event: Event, *, prefix: str, fast: bool) -> Record:
    """``encode``; ``fast=False`` always goes through the SDK (what the fast path must equal, byte for byte)."""
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
    channel = entry.topic(prefix)
    if fast and _valid_to_send(event):
        return Record(
            channel=channel,
            key=event.subject.encode(),
            value=_FORMAT.write_data(dict(event.data), CONTENT_TYPE),
            headers=tuple(_binary_headers(attributes)),
        )
    message = ce_kafka.to_binary(CloudEvent(attributes, dict(event.data)), _FORMAT)
    key = message.key.encode() if isinstance(message.key, str) else (message.key or b"")
    return Record(channel=channel, key=key, value=message.value, headers=tuple(message.headers.items()))


def _valid_to_send(event: Event) -> bool:
    """True when the SDK's ``CloudEvent`` would accept ``event``'s attributes without a word (the rest of them are
    constants of ``encode``): then ``encode`` writes the binding's headers itself instead of building the SDK's
    event to validate and walk, a third of encoding. Anything else goes through the SDK, which raises its error."""
    return (
        isinstance(event.id, str)
        and isinstance(event.source, str)
        and isinstance(event.subject, str)
        and isinstance(event.time, datetime)
        and isinstance(event.traceparent, (str, type(None)))
        and bool(event.id and event.source and event.subject)
        and event.time.tzinfo is not None
    )


def _binary_headers(attributes: Mapping[str, Any]) -> Iterator[tuple[str, bytes]]:
    """The Kafka binding's binary-mode headers for valid attributes, as ``ce_kafka.to_binary`` writes them."""
    for name, value in attributes.items():
        if value is None:
            continue
        if name == "datacontenttype":
            yield "content-type", str(value).encode()
        elif isinstance(value, datetime):
            text = value.isoformat()
            yield f"ce_{name}", (text[:-6] + "Z" if text.endswith("+00:00") else text).encode()
        else:
            yield f"ce_{name}", str(value).encode()


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
    time_headers = [n for n in headers if n.lower() == "ce_time"]
    time_header = time_headers[0] if len(time_headers) == 1 else None  # two: the SDK's rule (the last one wins)
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


_EXTENSION_NAME: Final = re.compile(r"^[a-z0-9]+$")
_SPEC_ATTRIBUTES: Final = frozenset(REQUIRED_ATTRIBUTES) | frozenset(OPTIONAL_ATTRIBUTES)


@functools.lru_cache(maxsize=1024)
def _valid_extension_name(name: str) -> bool:
    """The SDK's rule for an extension attribute's name (lower-case letters and digits, not ``data``)."""
    return name != "data" and _EXTENSION_NAME.match(name) is not None


def _binary_attributes(headers: Mapping[str, bytes], key: bytes | None) -> dict[str, Any] | None:
    """The attributes the SDK's binary-mode binding reads from ``headers`` and ``key`` when the v1.0 event it would
    build from them is valid without question; ``None`` for anything else, which the SDK then decides (its default
    time, its errors).

    A saga burst spent a third of a consumed event's decoding in the SDK building and validating its event object
    attribute by attribute; this reads the same headers the same way (``ce_`` names lower-cased, ``content-type``
    as ``datacontenttype``, the key as ``partitionkey``) and checks what the SDK's ``CloudEvent`` checks, once.
    """
    attributes: dict[str, Any] = {}
    try:
        for name, raw in headers.items():
            lowered = name.lower()
            if lowered.startswith("ce_"):
                attributes[lowered[3:]] = raw.decode("utf-8")
            elif lowered == "content-type":
                attributes["datacontenttype"] = raw.decode("utf-8")
        if key is not None:
            attributes["partitionkey"] = key.decode("utf-8")
        time = datetime.fromisoformat(attributes["time"])
    except (UnicodeDecodeError, ValueError, KeyError):
        return None
    if time.tzinfo is None or attributes.get("specversion") != SPECVERSION_V1_0:
        return None
    if not all(attributes.get(name) for name in REQUIRED_ATTRIBUTES):
        return None
    if any(attributes.get(name) == "" for name in OPTIONAL_ATTRIBUTES):
        return None
    if not all(_valid_extension_name(name) for name in attributes if name not in _SPEC_ATTRIBUTES):
        return None
    attributes["time"] = time
    return attributes


def decode(*, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]] | None) -> Event:
    """Parse a consumed Kafka message into an ``Event`` or raise ``Poison`` saying why it cannot be one."""
    return _decode(key=key, value=value, headers=headers, fast=True)


def _decode(
    *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]] | None, fast: bool
) -> Event:
    """``decode``; ``fast=False`` always builds the SDK's event (what the fast path must equal, in every outcome)."""
    header_map = {name: v for name, v in (headers or ()) if v is not None}
    names = {name.lower() for name in header_map}
    binary = any(name.startswith("ce_") for name in names)
    if binary:
        missing = [h for h in REQUIRED_HEADERS if h not in names]
        if missing:
            raise Poison("missing_attribute", f"binary-mode message lacks header(s) {', '.join(missing)}")
    try:
        attributes = _binary_attributes(header_map, key) if binary and fast else None
        if attributes is not None:
            data = _FORMAT.read_data(value or b"", attributes.get("datacontenttype"))
        else:
            if binary:
                cloud_event = _from_binary(header_map, key, value)
            else:
                cloud_event = ce_kafka.from_kafka(
                    ce_kafka.KafkaMessage(headers=header_map, key=key, value=value or b""), _FORMAT
                )
            attributes, data = cloud_event.get_attributes(), cloud_event.get_data()
    except BaseCloudEventException as e:
        raise Poison("missing_attribute", str(e)) from e
    except (ValueError, TypeError, UnicodeDecodeError, KeyError, AttributeError) as e:
        # json.JSONDecodeError and dateutil's ParserError are ValueErrors; a structured-mode body that is not a
        # JSON object surfaces as TypeError/AttributeError inside the SDK.
        raise Poison("undecodable", f"{type(e).__name__}: {e}") from e
    event_type = attributes.get("type")
    if attributes.get("specversion") != "1.0":
        raise Poison("unsupported_specversion", f"specversion {attributes.get('specversion')!r}")
    # The SDK has already checked that ``type`` is a string; isinstance tells the type checker so.
    if not isinstance(event_type, str) or event_type not in catalog.CATALOG:
        raise Poison("unknown_type", f"type {event_type!r} is not in the event catalog")
    subject = attributes.get("subject")
    if not subject:
        raise Poison("missing_attribute", "subject (the order id) is missing")
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
