"""``orderflow flow``: stuck orders by the stage they wait on, per-stage backlog and rate, dead letters."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from orderflow.events import codec
from orderflow_dev import topics as kafka
from orderflow_dev.stack import Stack
from orderflow_dev.wait import until
from tests.observe import cli
from tests.support import events

pytestmark = pytest.mark.kafka

LINE = [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 500}]


def test_billing_down_shows_its_stage_its_backlog_and_the_dead_letters(
    make_stack: Callable[..., Stack], kafka_bootstrap: str
) -> None:
    stack = make_stack()
    stack.put_stock("SKU-1", 10)
    stack.put_account("alice", 10_000)
    stack["billing"].terminate()
    stuck = {stack.place_order("alice", LINE, deadline_seconds=600)["order_id"] for _ in range(2)}
    poison = codec.encode(events.order_created(), prefix=stack.prefix)
    value = json.loads(poison.value)
    value["currency"] = "euros"
    value["total"]["currency"] = "euros"
    kafka.publish(kafka_bootstrap, [(poison.topic, poison.key, json.dumps(value).encode(), list(poison.headers))])

    def report() -> dict:
        return cli.json_of(stack, "flow", "--stuck-after", "1", "--interval", "0.3", bootstrap=kafka_bootstrap,
                           expect=0)

    def settled() -> bool:
        r = report()
        stages = {s["service"]: s for s in r["stages"]}
        return r["stuck"] == 2 and stages["inventory"]["lag"] == 0 and len(r["dead_letters"]) == 2

    until(settled, timeout=60, what="both orders stuck, inventory caught up, the poison dead-lettered")
    r = report()
    assert r["in_flight"] == 2 and r["stuck"] == 2 and r["errors"] == []
    assert set(r["stuck_by_stage"]["billing: charge"]) == stuck
    assert set(r["stuck_by_stage"]["shipping: decide"]) == stuck
    assert set(r["stuck_by_stage"]) == {"billing: charge", "shipping: decide"}
    stages = {s["service"]: s for s in r["stages"]}
    assert stages["billing"]["lag"] >= 3  # two OrderCreated and the poison, never read
    assert stages["billing"]["group"] == f"{stack.prefix}-billing"
    assert all(s["consume_per_s"] is not None and s["arrival_per_s"] is not None for s in r["stages"])
    assert r["dead_letters"] == {"inventory": {"schema_violation": 1}, "shipping": {"schema_violation": 1}}

    table = cli.run(stack, "flow", "--stuck-after", "1", "--interval", "0.3", bootstrap=kafka_bootstrap)
    assert table.returncode == 0, table.stderr
    for fragment in ("in flight 2", "billing: charge", "shipping: decide", "inventory/schema_violation: 1"):
        assert fragment in table.stdout, (fragment, table.stdout)


def test_an_unreachable_order_service_is_said_and_exits_1(stack: Stack, kafka_bootstrap: str) -> None:
    stack["order"].terminate()
    done = cli.run(stack, "flow", "--interval", "0.1", bootstrap=kafka_bootstrap)
    assert done.returncode == 1 and "/flow" in done.stdout
