"""The same proofs on every transport: the four services as real processes on Kafka, NATS JetStream and RabbitMQ.

Each test runs once per broker (the real server: the session's Kafka, ``nats-server``, ``rabbitmq-server``), with
the same assertions: outcomes and compensation, the deadline, duplicates and redelivery, SIGKILL mid-batch, poison
to the dead-letter channel, and the invariants over a batch of orders. What differs between brokers is only
``ORDERFLOW_TRANSPORT`` and its URL.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orderflow.events import catalog, codec
from orderflow.runtime import dlq
from orderflow.transport import Record, header
from orderflow_dev import channels, invariants
from orderflow_dev.stack import Stack
from orderflow_dev.wait import until
from tests.support import events

TRANSPORTS = [
    pytest.param("kafka", marks=pytest.mark.kafka),
    pytest.param("nats", marks=[pytest.mark.kafka, pytest.mark.nats]),
    pytest.param("rabbitmq", marks=[pytest.mark.kafka, pytest.mark.rabbitmq]),
]
LINE = {"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1250}


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_outcomes_and_compensation(make_stack: Callable[..., Stack], transport: str) -> None:
    stack = make_stack(transport=transport)
    stack.put_stock("SKU-1", 5)
    stack.put_account("alice", 100_000)
    stack.put_account("bob", 100)

    good = stack.place_order("alice", [LINE])["order_id"]
    declined = stack.place_order("bob", [LINE])["order_id"]
    short = stack.place_order("alice", [{**LINE, "quantity": 10}])["order_id"]
    done = stack.wait_terminal([good, declined, short])

    assert (done[good]["status"], done[good]["reason"]) == ("SHIPPED", None)
    assert (done[declined]["status"], done[declined]["reason"]) == ("CANCELLED", "payment_declined")
    assert (done[short]["status"], done[short]["reason"]) == ("CANCELLED", "out_of_stock")
    settled = invariants.settle(stack, [good, declined, short])
    invariants.check(stack, settled, initial_stock={"SKU-1": 5}, initial_balance={"alice": 100_000, "bob": 100})
    assert stack["inventory"].get("/stock/SKU-1") == {"sku": "SKU-1", "available": 3, "reserved": 0, "shipped": 2}
    assert stack["billing"].get("/accounts/alice")["balance_minor"] == 100_000 - 2500
    ready = stack["order"].get("/readyz")
    assert ready["transport"] == transport and ready["broker"]["state"] == "up"


def test_an_order_nobody_pays_for_is_cancelled_by_its_deadline(
    make_stack: Callable[..., Stack], transport: str
) -> None:
    stack = make_stack(
        transport=transport, services=["order", "inventory", "shipping"], env={"ORDERFLOW_ORDER_DEADLINE_S": "3"}
    )
    stack.put_stock("SKU-1", 5)
    order_id = stack.place_order("alice", [LINE])["order_id"]
    order = stack.wait_terminal([order_id], timeout=60)[order_id]

    assert (order["status"], order["reason"]) == ("CANCELLED", "deadline_exceeded")
    until(lambda: stack["inventory"].get("/stock/SKU-1")["available"] == 5, timeout=30, what="the stock released")


def test_duplicates_and_redelivered_events_change_nothing(make_stack: Callable[..., Stack], transport: str) -> None:
    stack = make_stack(transport=transport, services=["billing"])
    stack.put_account("alice", 5000)
    created = events.order_created(unit_price=1000)
    marker = events.order_created(unit_price=1)  # published after the duplicates: once it is applied, they were

    channels.publish_events(stack, [created, created, created])
    channels.publish_events(stack, [created, marker])
    until(
        lambda: stack["billing"].get("/accounts/alice")["balance_minor"] == 5000 - 1000 - 1,
        timeout=30,
        what="both orders charged",
    )
    assert stack["billing"].get(f"/payments/{created.subject}")["state"] == "CHARGED"
    # JetStream stores an event once per ``Nats-Msg-Id`` (the event id) within its duplicate window: the copies
    # never reach billing. On Kafka and RabbitMQ they do, and the inbox drops them.
    seen = 0 if transport == "nats" else 3
    assert f'orderflow_events_duplicate_total{{service="billing"}} {seen}.0' in stack["billing"].get("/metrics")


def test_a_sigkill_mid_batch_loses_nothing_and_applies_nothing_twice(
    make_stack: Callable[..., Stack], transport: str
) -> None:
    """Billing dies after its handlers ran and before the commit; restarted, it applies each order once."""
    stack = make_stack(transport=transport, services=["billing"], env={"ORDERFLOW_FAULTS": "consumer.mid_batch=1"})
    stack.put_account("alice", 100_000)
    orders = [events.order_created(unit_price=100 + i) for i in range(20)]

    channels.publish_events(stack, orders)
    billing = stack["billing"]
    until(lambda: not billing.alive(), timeout=30, what="the fault to kill billing")
    billing.kill()
    billing.start(extra_env={"ORDERFLOW_FAULTS": ""})
    billing.wait_ready(60)

    expected = 100_000 - sum(100 + i for i in range(20))
    until(lambda: billing.get("/accounts/alice")["balance_minor"] == expected, timeout=60, what="every order charged")
    assert all(billing.get(f"/payments/{o.subject}")["state"] == "CHARGED" for o in orders)


def test_poison_goes_to_the_dead_letter_channel_with_its_reason_and_the_flow_goes_on(
    make_stack: Callable[..., Stack], transport: str
) -> None:
    stack = make_stack(transport=transport, services=["billing"])
    stack.put_account("alice", 5000)
    orders = catalog.get(catalog.ORDER_CREATED).topic(stack.prefix)
    with channels.Reader(stack, catalog.dlq_topic(stack.prefix, "billing")) as dead:
        good = events.order_created(unit_price=700)
        bad = events.order_created(unit_price=1)  # its attributes, with a body that is not JSON
        record = Record(orders, bad.subject.encode(), b"{not json", codec.encode(bad, prefix=stack.prefix).headers)
        channels.publish(stack, [record])
        channels.publish_events(stack, [good])

        [letter] = dead.wait(1)
    assert header(letter.headers, dlq.HEADER_REASON) == b"undecodable"
    assert header(letter.headers, dlq.HEADER_TOPIC) == orders.encode()
    assert letter.value == b"{not json", "the dead letter keeps the message byte for byte"
    assert header(letter.headers, "ce_id") == bad.id.encode()
    until(lambda: stack["billing"].get("/accounts/alice")["balance_minor"] == 4300, timeout=30, what="the good one")


def test_invariants_hold_over_a_batch_with_a_service_restarted(
    make_stack: Callable[..., Stack], transport: str
) -> None:
    stack = make_stack(transport=transport)
    stock, balance = {"SKU-1": 40, "SKU-2": 500}, {"alice": 1_000_000, "bob": 3_000}
    for sku, n in stock.items():
        stack.put_stock(sku, n)
    for customer, n in balance.items():
        stack.put_account(customer, n)
    ids: list[str] = []
    for i in range(60):
        line = {"sku": "SKU-1" if i % 2 else "SKU-2", "quantity": 1 + i % 3, "unit_price_minor": 900}
        ids.append(stack.place_order("bob" if i % 5 == 0 else "alice", [line])["order_id"])
        if i == 30:
            stack["inventory"].kill()
            stack["inventory"].start()
    stack["inventory"].wait_ready(60)

    outcomes = invariants.check(
        stack, invariants.settle(stack, ids), initial_stock=stock, initial_balance=balance
    )
    assert sum(outcomes.values()) == 60 and outcomes["SHIPPED"] > 0, outcomes
