"""The neutral record <-> a NATS message: the CloudEvents NATS protocol binding, version 1.0.3 (binary content mode).

Which version, and why: the released NATS binding 1.0.2 knows only *structured* mode ("the NATS protocol does not
support custom message headers, necessary for binary mode"); the binding's next text, 1.0.3-wip (cloudevents/spec
main, ``cloudevents/bindings/nats-protocol-binding.md``), adds *binary* mode over the headers NATS has had since
server 2.2. Binary mode is what the outbox stores and every other transport here carries, and it keeps the type in
a header, so a consumer skips the events it ignores without parsing them (``codec.ignorable``). So this writes
1.0.3 binary mode and reads binary or structured mode (1.0.3 structured, and 1.0.2's header-less messages):

* every attribute ``ce_<name>`` -> header ``ce-<name>`` (1.0.3 §3.1.3.1), ``datacontenttype`` (the neutral
  ``content-type``) included -> ``ce-datacontenttype``: in NATS binary mode it is an attribute header like the others;
* values are percent-encoded as §3.1.3.2 says (space, ``"``, ``%`` and everything outside printable ASCII as
  ``%XX`` of its UTF-8 bytes); reading, a double-quoted value is unquoted first, then one round of percent-decoding
  gives the bytes back. Invalid UTF-8 is left for ``orderflow.events.codec`` to reject as poison (the binding says
  it MUST be rejected; the codec is where this project rejects a message, with a reason, to the dead-letter channel);
* a message is structured when its ``Content-Type`` header is ``application/cloudevents...`` (§3), or when it has
  no headers at all (a 1.0.2 sender, or a server before 2.2): it maps to the neutral ``content-type`` (1.0.2's gets
  ``application/cloudevents+json``) with the payload as the value, which ``codec.decode`` reads as structured.

What NATS headers cannot hold, and how it still round-trips byte for byte (dead letters keep everything):

* other headers (``orderflow.dlq.*``, a foreign producer's) pass through unchanged when their value is printable
  ASCII without surrounding blanks; any other value (a detail with a newline, raw bytes) is percent-encoded too, and
  its name listed in the ``orderflow.nats.encoded`` header so that only those are decoded on the way back;
* NATS has no message key: the key rides as the ``ce-partitionkey`` attribute it always equals for an event, and
  in an ``orderflow.nats.key`` header only when it differs (a dead letter of a foreign message);
* ``Nats-Msg-Id`` is set to the event id, so JetStream drops a second publication of one event within the stream's
  duplicate window (2 minutes): an outbox relay that republishes after a lost PubAck stores the event once (and a
  dead letter replayed onto its channel within 2 minutes of the original is dropped as that duplicate: replay
  later, or lower ``ORDERFLOW_NATS_DUPLICATE_WINDOW``). Read back, that header (when it is the event id) is dropped;
* header names are case-insensitive in NATS; nats-py hands headers over as a dict, so a repeated header name keeps
  its last value, and a received non-ASCII value that another producer wrote raw arrives with U+FFFD replacements.
  A neutral name that is no NATS header token (a space, a colon) cannot be sent: ``ValueError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

from orderflow.transport import Headers

#: The binding version and mode written (README: Transports, and the binding test).
VERSION: Final = "1.0.3"
MODE: Final = "binary"

CE_PREFIX: Final = "ce-"
NEUTRAL_CE_PREFIX: Final = "ce_"
NEUTRAL_CONTENT_TYPE: Final = "content-type"
DATACONTENTTYPE: Final = "ce-datacontenttype"
CONTENT_TYPE: Final = "Content-Type"
STRUCTURED: Final = "application/cloudevents"
STRUCTURED_JSON: Final = "application/cloudevents+json"
MSG_ID: Final = "Nats-Msg-Id"
KEY: Final = "orderflow.nats.key"
ENCODED: Final = "orderflow.nats.encoded"
_PRIVATE: Final = frozenset({KEY, ENCODED})

# RFC 7230 token characters: what nats-py accepts as a header name.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Bytes §3.1.3.2 leaves as they are: printable ASCII except space, double quote and percent.
_PLAIN: Final = frozenset(range(0x21, 0x7F)) - {0x22, 0x25}
_PERCENT: Final = re.compile(rb"%([0-9A-Fa-f]{2})")


def percent_encode(value: bytes) -> str:
    """§3.1.3.2 percent-encoding over the value's bytes (the same as per character for UTF-8 text)."""
    return "".join(chr(b) if b in _PLAIN else f"%{b:02X}" for b in value)


def percent_decode(value: str) -> bytes:
    """Unquote an RFC 7230 quoted-string if it is one, then one round of percent-decoding, to bytes."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return _PERCENT.sub(lambda m: bytes([int(m.group(1), 16)]), value.encode("utf-8", "surrogateescape"))


def _raw_safe(value: bytes) -> bool:
    # What survives nats-py unchanged: printable ASCII (space included), nothing it would strip at either end.
    return all(0x20 <= b < 0x7F for b in value) and value == value.strip(b" ")


def to_wire(*, key: bytes, headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    """The NATS headers for a neutral record (its value is the payload as it is)."""
    out: dict[str, str] = {}
    encoded: list[str] = []
    partitionkey: bytes | None = None
    event_id: str | None = None
    for name, value in headers:
        if value is None:
            continue
        if name.startswith(NEUTRAL_CE_PREFIX):
            wire = CE_PREFIX + name[len(NEUTRAL_CE_PREFIX) :]
            out[wire] = percent_encode(value)
            if name == "ce_partitionkey":
                partitionkey = value
            elif name == "ce_id":
                event_id = out[wire]
        elif name == NEUTRAL_CONTENT_TYPE:
            if value.decode("ascii", "replace").lower().startswith(STRUCTURED):
                out[CONTENT_TYPE] = percent_encode(value)
            else:
                out[DATACONTENTTYPE] = percent_encode(value)
        elif name in _PRIVATE or not _TOKEN.fullmatch(name):
            raise ValueError(f"header {name!r} cannot be carried as a NATS header")
        elif _raw_safe(value):
            out[name] = value.decode("ascii")
        else:
            out[name] = percent_encode(value)
            encoded.append(name)
    if encoded:
        out[ENCODED] = " ".join(encoded)
    if partitionkey != key:
        out[KEY] = percent_encode(key)
    if event_id is not None:
        out[MSG_ID] = event_id
    return out


def from_wire(headers: Mapping[str, str] | None) -> tuple[bytes | None, Headers]:
    """The neutral key and headers of a received NATS message (its payload is the value as it is)."""
    if not headers:
        # No headers at all: structured mode of binding 1.0.2 (or of a server before 2.2).
        return None, [(NEUTRAL_CONTENT_TYPE, STRUCTURED_JSON.encode())]
    encoded = set(headers.get(ENCODED, "").split())
    event_id = next((v for k, v in headers.items() if k.lower() == "ce-id"), None)
    key: bytes | None = None
    out: Headers = []
    for name, value in headers.items():
        lower = name.lower()
        if lower == KEY:
            key = percent_decode(value)
        elif lower == ENCODED or (lower == MSG_ID.lower() and value == event_id):
            continue
        elif lower == DATACONTENTTYPE:
            out.append((NEUTRAL_CONTENT_TYPE, percent_decode(value)))
        elif lower.startswith(CE_PREFIX):
            out.append((NEUTRAL_CE_PREFIX + lower[len(CE_PREFIX) :], percent_decode(value)))
        elif lower == "content-type" and value.lower().startswith(STRUCTURED):
            out.append((NEUTRAL_CONTENT_TYPE, percent_decode(value)))
        elif name in encoded:
            out.append((name, percent_decode(value)))
        else:
            out.append((name, value.encode("utf-8", "surrogateescape")))
    if key is None:
        key = next((v for k, v in out if k == "ce_partitionkey"), None)
    return key, out
