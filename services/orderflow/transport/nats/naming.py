"""Where a channel lives on JetStream, in one place: its stream, its subjects, a group's durable consumer.

A channel (``<prefix>.orders``) is one stream named like it with ``.`` -> ``_`` (stream names may not hold dots),
capturing ``<channel>.p.*``. A record goes to ``<channel>.p.<n>``, ``n`` = CRC-32 of its key modulo the channel's
partition count, so all events of one order share one subject: JetStream keeps a stream in arrival order, and the
subject is where per-key ordering schemes (and ``Received.partition``) hang. CRC-32 because it is stable across
processes and languages (Python's ``hash`` is salted) and cheap; nothing needs it to match Kafka's murmur2.

Why ``.p.*`` and not ``.>``: the dead-letter channel of the inventory service is ``<prefix>.inventory.dlq``, below
the inventory channel ``<prefix>.inventory``; with ``.>`` the two streams' subjects would overlap, which JetStream
refuses. ``<prefix>.inventory.p.*`` and ``<prefix>.inventory.dlq.p.*`` never match the same subject.
"""

from __future__ import annotations

import re
import zlib
from typing import Final

# Stream and consumer names become subject tokens of the JetStream API: no dots, wildcards, whitespace or slashes.
_UNSAFE_NAME: Final = re.compile(r"[^A-Za-z0-9_-]")


def stream(channel: str) -> str:
    """The stream that holds ``channel``."""
    return _UNSAFE_NAME.sub("_", channel)


def subjects(channel: str) -> list[str]:
    """What the stream of ``channel`` captures: every partition subject below it."""
    return [f"{channel}.p.*"]


def partition(key: bytes, partitions: int) -> int:
    """The subject partition of ``key``: stable across processes, so one key always lands on one subject."""
    return zlib.crc32(key) % max(1, partitions)


def subject(channel: str, key: bytes, partitions: int) -> str:
    return f"{channel}.p.{partition(key, partitions)}"


def partition_of(subject_: str) -> int:
    """The partition a delivered message's subject names (0 for a subject not published by this transport)."""
    last = subject_.rsplit(".", 1)[-1]
    return int(last) if last.isdigit() else 0


def consumer(group: str) -> str:
    """The durable consumer of ``group``, one per stream (its name only has to be unique within the stream)."""
    return _UNSAFE_NAME.sub("_", group)
