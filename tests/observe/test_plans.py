"""The pure parts of trace and dlq, without a broker: folding copies of one event, and what a replay would do."""

from __future__ import annotations

from orderflow.observe import deadletters, trace


def _hop(offset: int, ms: int, event_id: str, topic: str = "t.orders") -> trace.Hop:
    return trace.Hop(topic=topic, partition=0, offset=offset, timestamp_ms=ms, type="x", name="X", producer="order",
                     id=event_id, source="/orderflow/order", time=None, traceparent=None)


def test_copies_of_one_event_fold_into_one_hop_and_delays_are_between_hops() -> None:
    hops = trace.fold([_hop(7, 1_500, "b"), _hop(3, 1_000, "a"), _hop(9, 2_000, "a"), _hop(1, 1_200, "c", "t.pay")])
    assert [(h.id, h.offset, h.duplicates, h.duplicate_offsets) for h in hops] == [
        ("a", 3, 1, (9,)), ("c", 1, 0, ()), ("b", 7, 0, ())]
    assert [h.delay_ms for h in hops] == [None, 200, 300]


def _letter(offset: int, replays: int, event_id: str = "e1", topic: str = "t.orders") -> deadletters.Letter:
    return deadletters.Letter(
        service="billing", reason="handler_error", detail="boom", dlq_topic="t.billing.dlq", dlq_partition=0,
        dlq_offset=offset, topic=topic, partition=1, offset=5, key="ord_x", event_type="x", event_id=event_id,
        dead_lettered_at=None, replays=replays, headers=(("ce_id", event_id), ("orderflow.dlq.reason", "x"),
                                                          (deadletters.HEADER_REPLAYS, str(replays))),
    )


def test_only_the_latest_letter_of_an_event_is_replayed_and_never_past_the_limit() -> None:
    plan = deadletters.plan([_letter(0, 0), _letter(1, 1), _letter(2, 0, "e2")], max_replays=2)
    assert [(o.letter.dlq_offset, o.replayed) for o in plan] == [(0, False), (1, True), (2, True)]
    assert "superseded" in plan[0].why
    refused = deadletters.plan([_letter(3, 2)], max_replays=2)
    assert not refused[0].replayed and "still poison" in refused[0].why
    assert not deadletters.plan([_letter(4, 0, topic="")])[0].replayed


def test_a_replay_carries_the_original_headers_and_a_raised_counter() -> None:
    headers = dict(deadletters.replay_headers(_letter(5, 1)))
    assert headers["ce_id"] == b"e1"
    assert headers[deadletters.HEADER_REPLAYS] == b"2"
    assert headers[deadletters.HEADER_REPLAYED_FROM] == b"t.billing.dlq:0:5"
    assert not any(k.startswith("orderflow.dlq.") for k in headers)
