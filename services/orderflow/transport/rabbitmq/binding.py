"""Neutral form <-> the CloudEvents RabbitMQ protocol binding (binary content mode) on AMQP 0-9-1.

Which binding: RabbitMQ speaks AMQP 0-9-1, whose messages carry a *headers table* and basic properties. The
CloudEvents AMQP binding (``cloudevents.core.bindings.amqp``) is for AMQP 1.0: ``cloudEvents_`` application
properties and the AMQP 1.0 ``content-type`` property, which 0-9-1 does not have. The binding written for
RabbitMQ's 0-9-1 messages is the "RabbitMQ Protocol Binding for CloudEvents - Version 1.0.2-wip" (knative
eventing-rabbitmq's ``cloudevents-protocol-spec``), which the installed SDK implements as
``cloudevents.core.bindings.rabbitmq``: in binary mode every attribute but ``datacontenttype`` is a ``ce-<name>``
header whose value is a string, ``datacontenttype`` is the ``content_type`` property and the data is the body.
That is the wire format here, so any consumer using the SDK's ``rabbitmq.from_binary`` reads our events.

Mode: binary, always, for what we publish. The mapping is by name only (``ce_<a>`` <-> ``ce-<a>``, ``content-type``
header <-> ``content_type`` property): the neutral form's values are already the strings the binding wants (the
Kafka binding and this one format attributes alike), so nothing is parsed or re-encoded and every attribute,
extensions included (``partitionkey``, ``traceparent``), arrives as it left. A message that comes in structured
mode (``content_type`` ``application/cloudevents+json``, the event in the body) maps to the neutral
``content-type`` header plus the body, which ``orderflow.events.codec.decode`` reads as structured mode.

Other headers pass through: a value that is UTF-8 text goes as an AMQP long string, anything else as a byte
array, so it comes back byte for byte (dead letters keep everything). Values the broker adds in its own types
come back as text (an integer as its digits, ``x-death``'s table as its repr), except ``x-delivery-count``,
which becomes :attr:`Received.deliveries <orderflow.transport.Received>` and is not a header of the event (a
replayed letter must not carry its old count).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import pika
from cloudevents.core.bindings import rabbitmq as ce_rabbitmq

from orderflow.transport import Headers

NEUTRAL_PREFIX: Final = "ce_"
WIRE_PREFIX: Final = ce_rabbitmq.CE_PREFIX  # "ce-"
CONTENT_TYPE: Final = "content-type"
DELIVERY_COUNT: Final = "x-delivery-count"
PERSISTENT: Final = 2


def _wire_value(value: bytes | None) -> str | bytes | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _neutral_value(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(value).encode("utf-8")


def properties(headers: Sequence[tuple[str, bytes | None]], *, message_id: str | None = None) -> pika.BasicProperties:
    """The AMQP properties (headers table, content type, persistent) for a message with neutral ``headers``."""
    table: dict[str, Any] = {}
    content_type: str | None = None
    for name, value in headers:
        if name == CONTENT_TYPE and value is not None and content_type is None:
            try:
                content_type = value.decode("ascii")
                continue
            except UnicodeDecodeError:
                pass  # not a media type: keep it, as a header, byte for byte
        if name.startswith(NEUTRAL_PREFIX):
            name = WIRE_PREFIX + name[len(NEUTRAL_PREFIX) :]
        table.setdefault(name, _wire_value(value))
    return pika.BasicProperties(
        headers=table, content_type=content_type, delivery_mode=PERSISTENT, message_id=message_id
    )


def message_id(headers: Sequence[tuple[str, bytes | None]]) -> str | None:
    """The event's id (``ce_id``) as the AMQP message id, which tools and the management UI show."""
    for name, value in headers:
        if name == "ce_id" and value is not None:
            return value.decode("utf-8", "replace")
    return None


def headers(props: pika.BasicProperties) -> Headers:
    """The neutral headers of a consumed message (``x-delivery-count`` left out: see :func:`deliveries`)."""
    out: Headers = []
    table: Mapping[str, object] = props.headers or {}
    for name, value in table.items():
        if name == DELIVERY_COUNT:
            continue
        if name.lower().startswith(WIRE_PREFIX):
            name = NEUTRAL_PREFIX + name[len(WIRE_PREFIX) :].lower()
        out.append((name, _neutral_value(value)))
    if props.content_type is not None:
        out.append((CONTENT_TYPE, props.content_type.encode("utf-8")))
    return out


def deliveries(props: pika.BasicProperties, *, redelivered: bool) -> int:
    """How many times this message has been delivered to the group, this time included.

    Quorum queues count returns in ``x-delivery-count`` (absent on the first delivery); without it, the
    ``redelivered`` flag says at least the second time."""
    count = (props.headers or {}).get(DELIVERY_COUNT)
    if isinstance(count, int) and not isinstance(count, bool):
        return count + 1
    return 2 if redelivered else 1
