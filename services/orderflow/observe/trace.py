"""One order's whole story: its events on every topic, each service's view, its dead letters, where it waits.

How events are found: every event of an order is keyed by the order id, so on each topic they all sit in the one
partition the producer's partitioner gives that key (``partitioner``). Of that partition only the order's
lifetime is read: from its creation (minus a clock margin, located with ``offsets_for_times``) to the end, or —
for an order that is settled (shipped, or cancelled and compensated) — to its last known event plus the margin.
The dead-letter topics are small and read whole, on the key's partition. Nothing the services keep is needed
beyond their APIs, and the cost grows with the order's lifetime, not with the topic.

Where it waits is decided from facts, not guesses: which events exist (and where), which consumer group has
committed past each of them (so has applied it), what each service's API says, and what the dead-letter topics
hold. See ``diagnose``.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Final

from confluent_kafka import Message

from orderflow.errors import Poison
from orderflow.events import catalog, codec
from orderflow.observe import deadletters, partitioner
from orderflow.observe.reader import TP, Reader, headers_of
from orderflow.observe.target import Target, View, get

MARGIN_S: Final = 5.0
VIEW_PATHS: Final = {
    "order": "/orders/{}",
    "inventory": "/reservations/{}",
    "billing": "/payments/{}",
    "shipping": "/shipments/{}",
}
STOCK_ANSWERS: Final = (catalog.STOCK_RESERVED, catalog.STOCK_REJECTED)
PAYMENT_ANSWERS: Final = (catalog.PAYMENT_CHARGED, catalog.PAYMENT_FAILED)
DECISIONS: Final = (catalog.SHIPMENT_DISPATCHED, catalog.SHIPMENT_CANCELLED)


@dataclass(frozen=True, slots=True)
class Hop:
    """One event of the order on one topic: its first copy, and how many more copies of it were seen."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    type: str
    name: str
    producer: str
    id: str
    source: str
    time: str | None
    traceparent: str | None
    delay_ms: int | None = None
    duplicates: int = 0
    duplicate_offsets: tuple[int, ...] = ()
    poison: str | None = None

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Wait:
    """Where the order stands still: ``service`` has not done its part; ``waits_for`` names the missing events."""

    service: str
    stage: str
    waits_for: tuple[str, ...]
    because: str
    has: tuple[str, ...] = ()
    lag: int | None = None

    def sentence(self) -> str:
        head = self.service
        if self.has:
            head += f" has {', '.join(self.has)},"
        wanted = f" waits for {' or '.join(self.waits_for)}" if self.waits_for else ""
        return f"{head}{wanted}: {self.because}" if wanted else f"{head} {self.because}"


@dataclass(slots=True)
class Trace:
    order_id: str
    status: str | None
    terminal: bool
    trace_ids: list[str]
    events: list[Hop]
    views: dict[str, dict[str, Any]]
    dead_letters: list[deadletters.Letter]
    waits: list[Wait]
    scanned: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["dead_letters"] = [x.summary() for x in self.dead_letters]
        out["waiting"] = [w.sentence() for w in self.waits]
        for event, hop in zip(out["events"], self.events, strict=True):
            event["position"] = hop.position
        return out


# -- reading ---------------------------------------------------------------------------------------------------


def _header(headers: Mapping[str, bytes], name: str) -> str | None:
    value = headers.get(name)
    return value.decode("utf-8", "replace") if value is not None else None


def hop_of(m: Message) -> Hop:
    """A consumed message as a hop, read from its CloudEvent headers; a message the services would refuse says why."""
    raw = headers_of(m)
    headers = {k.lower(): v for k, v in raw}
    event_type = _header(headers, "ce_type") or "?"
    entry = catalog.CATALOG.get(event_type)
    poison = None
    try:
        codec.decode(key=m.key(), value=m.value(), headers=list(raw))
    except Poison as p:
        poison = f"{p.reason}: {p.detail}"
    return Hop(
        topic=m.topic() or "",
        partition=m.partition() or 0,
        offset=m.offset() or 0,
        timestamp_ms=m.timestamp()[1],
        type=event_type,
        name=entry.name if entry else event_type,
        producer=entry.producer if entry else (_header(headers, "ce_source") or "?").rsplit("/", 1)[-1],
        id=_header(headers, "ce_id") or "?",
        source=_header(headers, "ce_source") or "?",
        time=_header(headers, "ce_time"),
        traceparent=_header(headers, "ce_traceparent"),
        poison=poison,
    )


def fold(hops: Sequence[Hop]) -> list[Hop]:
    """One hop per CloudEvent (source, id) in timestamp order, counting the further copies; delays between hops."""
    first: dict[tuple[str, str, str], Hop] = {}
    extra: dict[tuple[str, str, str], list[int]] = {}
    for hop in sorted(hops, key=lambda h: (h.timestamp_ms, h.topic, h.offset)):
        key = (hop.topic, hop.source, hop.id)
        if key in first:
            extra.setdefault(key, []).append(hop.offset)
        else:
            first[key] = hop
    out: list[Hop] = []
    previous: int | None = None
    for key, hop in first.items():
        copies = tuple(extra.get(key, ()))
        delay = None if previous is None else hop.timestamp_ms - previous
        previous = hop.timestamp_ms
        out.append(
            Hop(**{**asdict(hop), "delay_ms": delay, "duplicates": len(copies), "duplicate_offsets": copies})
        )
    return out


def _ms(moment: str | None) -> int | None:
    if not moment:
        return None
    try:
        return int(datetime.fromisoformat(moment).timestamp() * 1000)
    except ValueError:
        return None


def _window(order: View, margin_s: float) -> tuple[int | None, int | None]:
    """(from, to) in epoch ms of the order's events on the topics; ``None``: unbounded on that side."""
    if not order.seen or not isinstance(order.body, dict):
        return None, None
    body = order.body
    start = _ms(body.get("created_at"))
    settled = body.get("status") == "SHIPPED" or (body.get("status") == "CANCELLED" and body.get("compensated"))
    end = None
    if settled:
        known = [_ms(body.get("terminal_at"))] + [_ms(e.get("time")) for e in body.get("timeline") or []]
        last = max((k for k in known if k is not None), default=None)
        end = last + int(margin_s * 1000) if last is not None else None
    return (start - int(margin_s * 1000) if start is not None else None), end


def _ranges(
    reader: Reader, tps: Sequence[TP], ends: Mapping[TP, tuple[int, int]], window: tuple[int | None, int | None]
) -> dict[TP, tuple[int, int]]:
    start_ms, end_ms = window
    starts = reader.offsets_at(tps, start_ms) if start_ms is not None else {}
    stops = reader.offsets_at(tps, end_ms) if end_ms is not None else {}
    out = {}
    for tp in tps:
        low, high = ends[tp]
        start = starts.get(tp, low)
        start = high if start < 0 else max(start, low)
        stop = stops.get(tp, high)
        stop = high if stop < 0 else min(stop, high)
        out[tp] = (start, stop)
    return out


def key_partitions(target: Target, counts: Mapping[str, int], key: bytes) -> list[TP]:
    """The partitions that can hold ``key``: one per topic, or all of a topic when the partitioner is random."""
    out: list[TP] = []
    for topic, n in counts.items():
        p = partitioner.partition_for(key, n, target.partitioner)
        out.extend([(topic, p)] if p is not None else [(topic, i) for i in range(n)])
    return out


def trace(target: Target, order_id: str, *, reader: Reader, full_scan: bool = False,
          margin_s: float = MARGIN_S) -> Trace:
    """Everything the flow knows of ``order_id``, and where it waits."""
    started = time.perf_counter()
    key = order_id.encode()
    with concurrent.futures.ThreadPoolExecutor(len(VIEW_PATHS)) as pool:
        futures = {
            s: pool.submit(get, s, target.url(s) + path.format(order_id)) for s, path in VIEW_PATHS.items()
        }
        topics = list(catalog.all_topics(target.prefix))
        dlq_topics = [catalog.dlq_topic(target.prefix, s) for s in catalog.SERVICES]
        counts = reader.partitions([*topics, *dlq_topics])
        tps = key_partitions(target, {t: n for t, n in counts.items() if t in topics}, key)
        dlq_tps = key_partitions(target, {t: n for t, n in counts.items() if t in dlq_topics}, key)
        ends = reader.watermarks([*tps, *dlq_tps])
        groups = [target.group(s) for s in catalog.SERVICES]
        committed_f = pool.submit(reader.committed, groups, tps)
        views = {s: f.result() for s, f in futures.items()}
        window = (None, None) if full_scan else _window(views["order"], margin_s)
        ranges = _ranges(reader, tps, ends, window)
        ranges.update({tp: ends[tp] for tp in dlq_tps})
        hops: list[Hop] = []
        letters: list[deadletters.Letter] = []
        scanned: dict[str, int] = {}
        for m in reader.read(ranges):
            topic = m.topic() or ""
            scanned[topic] = scanned.get(topic, 0) + 1
            if m.key() != key:
                continue
            if topic in dlq_topics:
                letters.append(deadletters.letter_of(m))
            else:
                hops.append(hop_of(m))
        committed = committed_f.result()
    events = fold(hops)
    order = views["order"].body if views["order"].seen else None
    status = order.get("status") if isinstance(order, dict) else None
    trace_ids = sorted({tp.split("-")[1] for h in events if (tp := h.traceparent) and tp.count("-") == 3})
    result = Trace(
        order_id=order_id,
        status=status,
        terminal=status in ("SHIPPED", "CANCELLED"),
        trace_ids=trace_ids,
        events=events,
        views={s: {"url": v.url, "status": v.status, "body": v.body, "error": v.error} for s, v in views.items()},
        dead_letters=sorted(letters, key=lambda x: (x.service, x.dlq_offset)),
        waits=[],
        scanned=scanned,
    )
    result.waits = diagnose(result, positions=Positions(target, committed, ends))
    result.seconds = time.perf_counter() - started
    return result


# -- where it waits ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Positions:
    """The consumer groups' committed offsets and the partitions' ends, on the order's partitions."""

    target: Target
    committed: Mapping[tuple[str, str, int], int]
    ends: Mapping[TP, tuple[int, int]]

    def applied(self, service: str, hop: Hop) -> bool:
        """Has ``service``'s group committed past ``hop`` (so applied it, or dead-lettered it)?"""
        return self.committed.get((self.target.group(service), hop.topic, hop.partition), -1) > hop.offset

    def behind(self, service: str, hop: Hop) -> tuple[int, int]:
        """(messages before ``hop`` the group still has to read, the group's lag on that partition)."""
        low, high = self.ends.get((hop.topic, hop.partition), (0, 0))
        position = self.committed.get((self.target.group(service), hop.topic, hop.partition), low)
        return max(hop.offset - position, 0), max(high - position, 0)


def _names(types: Sequence[str]) -> tuple[str, ...]:
    return tuple(catalog.get(t).name for t in types)


def _answer(
    service: str, stage: str, answers: Sequence[str], trigger: Hop, found: Mapping[str, Hop], trace: Trace,
    positions: Positions,
) -> Wait | None:
    """``service`` answers ``trigger`` with one of ``answers``: none yet — why not?"""
    if any(t in found for t in answers):
        return None
    letter = next((x for x in trace.dead_letters if x.service == service and x.event_id == trigger.id), None)
    if letter is not None:
        return Wait(service, stage, _names(answers),
                    f"it dead-lettered {trigger.name} ({letter.reason}: {letter.detail}); fix the cause, then "
                    f"`orderflow dlq replay --service {service} --order {trace.order_id}`")
    if not positions.applied(service, trigger):
        ahead, lag = positions.behind(service, trigger)
        return Wait(service, stage, _names(answers),
                    f"{service} has not seen {trigger.name} ({trigger.position}): its group lag there is {lag:,}"
                    f" ({ahead:,} message{'' if ahead == 1 else 's'} before it)", lag=lag)
    view = trace.views.get(service, {})
    if view.get("error"):
        return Wait(service, stage, _names(answers),
                    f"it applied {trigger.name}, its answer is not on the topic, and its API does not answer "
                    f"({view['error']})")
    return Wait(service, stage, _names(answers),
                f"it applied {trigger.name} but its answer is not on the topic yet (outbox not relayed?)")


def diagnose(trace: Trace, *, positions: Positions) -> list[Wait]:
    """What each service still owes the order, and why it has not given it; empty once the order is settled."""
    found: dict[str, Hop] = {}
    for hop in trace.events:
        found.setdefault(hop.type, hop)
    order = trace.views.get("order", {})
    created = found.get(catalog.ORDER_CREATED)
    if created is None:
        if order.get("status") == 200:
            return [Wait("order", "publish", ("OrderCreated",),
                         "the order service accepted the order but OrderCreated is not on the topic yet (outbox)")]
        return [Wait("order", "accept", (), "knows no such order, and no topic holds an event of it")]
    waits: list[Wait] = []
    decision = next((found[t] for t in DECISIONS if t in found), None)
    if decision is None:
        owed = (("inventory", "reserve", STOCK_ANSWERS), ("billing", "charge", PAYMENT_ANSWERS))
        for service, stage, answers in owed:
            wait = _answer(service, stage, answers, created, found, trace, positions)
            if wait is not None:
                waits.append(wait)
        waits.append(_shipping(found, created, trace, positions))
    else:
        waits += _compensation(found, decision, trace, positions)
        if decision.type == catalog.SHIPMENT_DISPATCHED and not positions.applied("inventory", decision):
            _, lag = positions.behind("inventory", decision)
            waits.append(Wait("inventory", "ship", ("ShipmentDispatched",),
                              f"inventory has not seen ShipmentDispatched: its group lag there is {lag:,}", lag=lag))
        if trace.status == "PENDING":
            _, lag = positions.behind("order", decision)
            waits.append(Wait("order", "record", (decision.name,),
                              f"the order service has not recorded {decision.name} ({decision.position}): its "
                              f"group lag there is {lag:,}", lag=lag))
    return waits


def _shipping(found: Mapping[str, Hop], created: Hop, trace: Trace, positions: Positions) -> Wait:
    """The decision point: what it has heard, what it lacks, and why it lacks it."""
    has, lacks, why = [], [], []
    for answers in ((catalog.ORDER_CREATED,), STOCK_ANSWERS, PAYMENT_ANSWERS):
        hop = next((found[t] for t in answers if t in found), None)
        if hop is not None and positions.applied("shipping", hop):
            has.append(hop.name)
        elif hop is not None:
            lacks.append(hop.name)
            _, lag = positions.behind("shipping", hop)
            why.append(f"{hop.name} is on {hop.position} but shipping's group lag there is {lag:,}")
        else:
            lacks.extend(_names(answers))
            producer = catalog.get(answers[0]).producer
            why.append(f"{producer} has not published {' or '.join(_names(answers))}")
    if not lacks:
        return Wait("shipping", "decide", (), "has heard everything it needs but has not decided yet (outbox?)",
                    has=tuple(has))
    wanted = tuple(n for n in lacks if n != "OrderCreated") or ("OrderCreated",)
    return Wait("shipping", "decide", wanted, "; ".join(why), has=tuple(has))


def _compensation(found: Mapping[str, Hop], decision: Hop, trace: Trace, positions: Positions) -> list[Wait]:
    """A cancelled order is settled once nothing is held: a reservation released, a charge refunded."""
    if decision.type != catalog.SHIPMENT_CANCELLED:
        return []
    waits = []
    for service, held, undo, stage in (
        ("inventory", catalog.STOCK_RESERVED, catalog.STOCK_RELEASED, "release"),
        ("billing", catalog.PAYMENT_CHARGED, catalog.PAYMENT_REFUNDED, "refund"),
    ):
        if held in found and undo not in found:
            wait = _answer(service, stage, (undo,), decision, found, trace, positions)
            if wait is not None:
                waits.append(wait)
    return waits
