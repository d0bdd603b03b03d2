"""``orderflow dlq list|show|replay``: dead letters you can act on, against the real broker and services.

A message dead-lettered because a dependency was broken is replayed once the dependency is fixed, and the order
ends terminal; a message that is still poison goes back to the DLQ with its replay counter and is refused after
``--max-replays``, so it can never loop.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg
import pytest

from orderflow.events import codec
from orderflow.observe import deadletters
from orderflow_dev import topics as kafka
from orderflow_dev.stack import Stack
from orderflow_dev.wait import until
from tests.observe import cli
from tests.support import events

pytestmark = pytest.mark.kafka

LINE = [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 500}]
BROKEN = """
CREATE FUNCTION ledger_offline() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'ledger service offline'; END $$;
CREATE TRIGGER ledger_offline BEFORE INSERT ON payments FOR EACH ROW EXECUTE FUNCTION ledger_offline();
"""
FIXED = "DROP TRIGGER ledger_offline ON payments; DROP FUNCTION ledger_offline();"


@pytest.mark.postgres
def test_a_letter_dead_lettered_by_a_broken_dependency_is_replayed_once_fixed_and_the_order_ships(
    make_stack: Callable[..., Stack], kafka_bootstrap: str
) -> None:
    stack = make_stack(database="postgres")
    stack.put_stock("SKU-1", 10)
    stack.put_account("alice", 10_000)
    billing_db = stack["billing"].env["ORDERFLOW_DATABASE_URL"]
    with psycopg.connect(billing_db, autocommit=True) as conn:
        conn.execute(BROKEN)  # what billing depends on fails every charge, for a reason retrying cannot fix
    order_id = stack.place_order("alice", LINE, deadline_seconds=600)["order_id"]

    def letters() -> list[dict]:
        return cli.json_of(stack, "dlq", "list", "--order", order_id, bootstrap=kafka_bootstrap)

    until(lambda: len(letters()) == 1, timeout=60, what="billing to dead-letter the OrderCreated")
    [letter] = letters()
    assert letter["service"] == "billing" and letter["reason"] == "handler_error"
    assert "ledger service offline" in letter["detail"]
    assert letter["event_type"] == "dev.orderflow.order.created.v1" and letter["replays"] == 0
    assert letter["origin"].startswith(f"{stack.prefix}.orders[")

    story = cli.json_of(stack, "trace", order_id, bootstrap=kafka_bootstrap)
    billing = next(w for w in story["waits"] if w["service"] == "billing")
    assert "it dead-lettered OrderCreated (handler_error" in billing["because"]
    assert story["dead_letters"][0]["position"] == letter["position"]

    [shown] = cli.json_of(stack, "dlq", "show", "--at", letter["position"], bootstrap=kafka_bootstrap)
    assert shown["body"]["order_id"] == order_id and shown["headers"]["ce_type"] == letter["event_type"]
    assert shown["headers"]["orderflow.dlq.reason"] == "handler_error"

    with psycopg.connect(billing_db, autocommit=True) as conn:
        conn.execute(FIXED)
    [outcome] = cli.json_of(stack, "dlq", "replay", "--order", order_id, bootstrap=kafka_bootstrap)
    assert outcome["replayed"] and outcome["to"] == letter["origin"]

    [done] = stack.wait_terminal([order_id]).values()
    assert done["status"] == "SHIPPED"
    # The replay reached every consumer of the topic; the inbox made it a no-op for those that had applied it.
    assert stack["inventory"].get("/stock/SKU-1")["reserved"] + stack["inventory"].get("/stock/SKU-1")[
        "shipped"] == 2
    assert stack["billing"].get("/accounts/alice")["balance_minor"] == 9_000
    after = cli.json_of(stack, "trace", order_id, bootstrap=kafka_bootstrap)
    created = next(e for e in after["events"] if e["name"] == "OrderCreated")
    assert created["duplicates"] == 1 and after["waits"] == []


def test_a_still_poison_letter_returns_with_its_counter_and_is_refused_after_max_replays(
    make_stack: Callable[..., Stack], kafka_bootstrap: str
) -> None:
    stack = make_stack(services=["billing"])
    bad = events.order_created()
    record = codec.encode(bad, prefix=stack.prefix)
    value = json.loads(record.value)
    value["items"][0]["quantity"] = 0  # breaks OrderCreated's schema: poison for good
    kafka.publish(kafka_bootstrap, [(record.topic, record.key, json.dumps(value).encode(), list(record.headers))])

    def letters() -> list[dict]:
        return cli.json_of(stack, "dlq", "list", "--service", "billing", bootstrap=kafka_bootstrap)

    until(lambda: len(letters()) == 1, timeout=30, what="the poison message in billing's DLQ")
    assert letters()[0]["reason"] == "schema_violation"
    for round_ in (1, 2):
        outcomes = cli.json_of(stack, "dlq", "replay", "--service", "billing", "--max-replays", "2",
                               bootstrap=kafka_bootstrap)
        # Only the latest dead letter of the event is replayed; the earlier ones are superseded by it.
        assert [o["replayed"] for o in outcomes] == [False] * (round_ - 1) + [True], outcomes
        until(lambda n=round_: len(letters()) == n + 1, timeout=30, what=f"replay {round_} dead-lettered again")
        assert max(x["replays"] for x in letters()) == round_
    outcomes = cli.json_of(stack, "dlq", "replay", "--service", "billing", "--max-replays", "2",
                           bootstrap=kafka_bootstrap, expect=3)
    refused = [o for o in outcomes if not o["replayed"] and "still poison" in o["why"]]
    superseded = [o for o in outcomes if "superseded" in o["why"]]
    assert len(refused) == 1 and len(superseded) == 2 and not any(o["replayed"] for o in outcomes)
    dry = cli.run(stack, "dlq", "replay", "--all", "--dry-run", "--max-replays", "2", bootstrap=kafka_bootstrap)
    assert dry.returncode == 3 and "skipped" in dry.stdout
    assert len(letters()) == 3  # nothing went back: no loop
    listing = cli.run(stack, "dlq", "list", bootstrap=kafka_bootstrap)
    assert "billing/schema_violation: 3" in listing.stdout
    # The counter travels in the message itself, so a consumer that dead-letters a replay keeps it.
    dlq = kafka.read_all(kafka_bootstrap, f"{stack.prefix}.billing.dlq", at_least=3)
    assert sorted(int(m.headers.get(deadletters.HEADER_REPLAYS, b"0")) for m in dlq) == [0, 1, 2]


def test_replay_needs_a_selection(stack: Stack, kafka_bootstrap: str) -> None:
    done = cli.run(stack, "dlq", "replay", bootstrap=kafka_bootstrap)
    assert done.returncode == 2 and "--all" in done.stderr
