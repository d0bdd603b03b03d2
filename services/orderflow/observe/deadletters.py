"""Dead letters you can act on: list them by service and reason, show one, replay a selection.

A dead letter (runtime/dlq.py) is the original message byte for byte — key, value, headers — plus
``orderflow.dlq.*`` headers saying why and whence. Replaying produces the original message to its original topic
(every consumer of that topic gets it again; their inboxes make that harmless for those that applied it) with a
replay counter header, ``orderflow.replay.count``. A consumer that dead-letters it again keeps that header, so
the counter travels with the message: a replay of a message already replayed ``max_replays`` times is refused,
and a poison message can never go round in a loop. Of several dead letters of one event at one service (the
original and its failed replays) only the latest is replayed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from orderflow.errors import BrokerUnavailable
from orderflow.events import catalog
from orderflow.observe.reader import Reader, headers_of
from orderflow.runtime import dlq

HEADER_REPLAYS: Final = "orderflow.replay.count"
HEADER_REPLAYED_FROM: Final = "orderflow.replay.from"
MAX_REPLAYS: Final = 3


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter: where it sits in the DLQ, why it is there, where it came from, what it carries."""

    service: str
    reason: str
    detail: str
    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    topic: str
    partition: int
    offset: int
    key: str | None
    event_type: str | None
    event_id: str | None
    dead_lettered_at: str | None
    replays: int
    headers: tuple[tuple[str, str], ...] = field(repr=False, default=())
    value: bytes | None = field(repr=False, default=None)

    @property
    def position(self) -> str:
        """``<dlq topic>:<partition>:<offset>``: how ``dlq show`` and ``dlq replay --at`` name it."""
        return f"{self.dlq_topic}:{self.dlq_partition}:{self.dlq_offset}"

    @property
    def origin(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    def summary(self) -> dict[str, Any]:
        return {
            "position": self.position, "service": self.service, "reason": self.reason, "detail": self.detail,
            "origin": self.origin, "order_id": self.key, "event_type": self.event_type, "event_id": self.event_id,
            "dead_lettered_at": self.dead_lettered_at, "replays": self.replays,
        }

    def full(self) -> dict[str, Any]:
        body: Any = _text(self.value)
        with contextlib.suppress(ValueError):
            body = json.loads(body)
        return {**self.summary(), "headers": dict(self.headers), "body": body}


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value is not None else ""


def letter_of(m: Message) -> Letter:
    raw = headers_of(m)
    headers = dict(raw)
    service = _text(headers.get(dlq.HEADER_SERVICE)) or (m.topic() or "").rsplit(".", 2)[-2]

    def number(name: str) -> int:
        try:
            return int(_text(headers.get(name)) or -1)
        except ValueError:
            return -1

    return Letter(
        service=service,
        reason=_text(headers.get(dlq.HEADER_REASON)) or "?",
        detail=_text(headers.get(dlq.HEADER_DETAIL)),
        dlq_topic=m.topic() or "",
        dlq_partition=m.partition() or 0,
        dlq_offset=m.offset() or 0,
        topic=_text(headers.get(dlq.HEADER_TOPIC)),
        partition=number(dlq.HEADER_PARTITION),
        offset=number(dlq.HEADER_OFFSET),
        key=_text(m.key()) if m.key() is not None else None,
        event_type=_text(headers.get("ce_type")) or None,
        event_id=_text(headers.get("ce_id")) or None,
        dead_lettered_at=_text(headers.get(dlq.HEADER_TIME)) or None,
        replays=max(number(HEADER_REPLAYS), 0),
        headers=tuple((k, _text(v)) for k, v in raw),
        value=m.value(),
    )


def read(reader: Reader, prefix: str, services: Iterable[str] = catalog.SERVICES) -> list[Letter]:
    """Every dead letter of ``services`` (whole DLQ topics: they are small), in DLQ order per service."""
    topics = [catalog.dlq_topic(prefix, s) for s in services]
    counts = reader.partitions(topics)
    tps = [(t, p) for t, n in counts.items() for p in range(n)]
    letters = [letter_of(m) for m in reader.read(reader.watermarks(tps))]
    return sorted(letters, key=lambda x: (x.service, x.dlq_partition, x.dlq_offset))


@dataclass(frozen=True, slots=True)
class Selection:
    services: Sequence[str] = ()
    reasons: Sequence[str] = ()
    orders: Sequence[str] = ()
    positions: Sequence[str] = ()

    def matches(self, letter: Letter) -> bool:
        return (
            (not self.services or letter.service in self.services)
            and (not self.reasons or letter.reason in self.reasons)
            and (not self.orders or letter.key in self.orders)
            and (not self.positions or letter.position in self.positions)
        )


def select(letters: Sequence[Letter], selection: Selection) -> list[Letter]:
    return [x for x in letters if selection.matches(x)]


def latest(letters: Sequence[Letter]) -> tuple[list[Letter], list[Letter]]:
    """(the latest dead letter of each (service, event), the earlier ones it supersedes)."""
    newest: dict[tuple[str, str, str], Letter] = {}
    for x in letters:
        ident = (x.service, x.event_id or x.position, x.topic)
        held = newest.get(ident)
        if held is None or (x.replays, x.dlq_offset) > (held.replays, held.dlq_offset):
            newest[ident] = x
    kept = set(id(x) for x in newest.values())
    return [x for x in letters if id(x) in kept], [x for x in letters if id(x) not in kept]


@dataclass(frozen=True, slots=True)
class Outcome:
    letter: Letter
    replayed: bool
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"position": self.letter.position, "replayed": self.replayed, "why": self.why,
                "to": self.letter.origin if self.replayed else None, "replays": self.letter.replays}


def plan(letters: Sequence[Letter], *, max_replays: int = MAX_REPLAYS) -> list[Outcome]:
    """What ``replay`` would do with each selected letter, and why."""
    kept, superseded = latest(letters)
    outcomes = [Outcome(x, False, "superseded by a later dead letter of the same event") for x in superseded]
    for x in kept:
        if not x.topic or x.partition < 0:
            outcomes.append(Outcome(x, False, "no original topic in its headers"))
        elif x.replays >= max_replays:
            outcomes.append(Outcome(x, False, f"replayed {x.replays} times already and still poison "
                                              f"(limit {max_replays}); fix it or drop it"))
        else:
            outcomes.append(Outcome(x, True, f"replay {x.replays + 1} to {x.topic}"))
    order = {id(x): i for i, x in enumerate(letters)}
    return sorted(outcomes, key=lambda o: order[id(o.letter)])


def replay_headers(letter: Letter) -> list[tuple[str, str | bytes | None]]:
    """The original headers, without the DLQ's, with the replay counter raised and where it came from."""
    kept: list[tuple[str, str | bytes | None]] = [(k, v.encode()) for k, v in letter.headers
            if not k.startswith("orderflow.dlq.") and k not in (HEADER_REPLAYS, HEADER_REPLAYED_FROM)]
    return [*kept, (HEADER_REPLAYS, str(letter.replays + 1).encode()),
            (HEADER_REPLAYED_FROM, letter.position.encode())]


def replay(outcomes: Sequence[Outcome], *, config: Mapping[str, Any]) -> None:
    """Produce every outcome marked ``replayed`` to its original topic, byte for byte, and wait for the acks."""
    wanted = [o for o in outcomes if o.replayed]
    if not wanted:
        return
    producer = Producer({**config, "enable.idempotence": True, "acks": "all"})
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    for o in wanted:
        x = o.letter
        try:
            producer.produce(x.topic, key=x.key.encode() if x.key is not None else None,
                             value=x.value, headers=replay_headers(x), on_delivery=delivered)
        except (KafkaException, BufferError) as e:
            raise BrokerUnavailable(f"cannot replay {x.position} to {x.topic}: {e}") from e
    remaining = producer.flush(30)
    if failures or remaining:
        raise BrokerUnavailable(f"replay not acknowledged: {failures[:1] or remaining} message(s)")
