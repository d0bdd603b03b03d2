"""Consumer side: each consumer's real consumer loop handles the messages its own pacts describe.

One test per interaction (``expectations.EXPECTATIONS``). Pact reifies the example message from the matchers;
``consumer.check`` turns it into a Kafka message, runs the consumer service's ``ConsumerLoop`` on it over a fresh
SQLite database and asserts the state its handler must leave (billing refunded, shipping dispatched, ...).
The tests below the parametrized one prove the harness can fail: a message the consumer's decoder would reject,
an event the consumer does not handle and a wrong expectation of the consumer's state are all reported.
"""

import dataclasses

import pytest

from orderflow.events import catalog
from orderflow_dev.contracts import consumer, expectations, messages
from orderflow_dev.contracts.expectations import Expectation
from orderflow_dev.contracts.world import ConsumerRejected, World


@pytest.mark.parametrize(
    "expectation",
    [pytest.param(e, id=e.id, marks=pytest.mark.pair(name=e.pair)) for e in expectations.EXPECTATIONS],
)
def test_consumer_handles_the_message_of_its_contract(expectation: Expectation) -> None:
    consumer.check(expectation)


def test_every_event_a_service_handles_has_an_expectation() -> None:
    for service in catalog.SERVICES:
        handled = set(consumer.definition_of(service).handlers)
        expected = {e.event_type for e in expectations.EXPECTATIONS if e.consumer == service}
        assert expected == handled, f"{service}: handlers {sorted(handled)} vs expectations {sorted(expected)}"


def test_example_data_is_valid_for_the_catalog() -> None:
    from orderflow.events import codec

    for event_type, data in messages.EXAMPLES.items():
        codec.validate(event_type, data)
    for e in expectations.EXPECTATIONS:
        codec.validate(e.event_type, e.example)


def _first(consumer_name: str, event_type: str) -> Expectation:
    return next(e for e in expectations.EXPECTATIONS if (e.consumer, e.event_type) == (consumer_name, event_type))


def test_a_message_the_decoder_rejects_fails_the_consumer_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ce_subject the real decoder dead-letters the message: the consumer test must say so."""
    real = messages.metadata

    def without_subject(event_type: str, **kwargs: object) -> dict[str, object]:
        meta = real(event_type, **kwargs)  # type: ignore[arg-type]
        del meta["ce_subject"]
        return meta

    monkeypatch.setattr(messages, "metadata", without_subject)
    with pytest.raises(consumer.ConsumerContractError, match="dead-lettered the message: missing_attribute"):
        consumer.check(_first("billing", catalog.ORDER_CREATED))


def test_an_event_the_consumer_does_not_handle_fails_the_consumer_test() -> None:
    """inventory has no handler for PaymentCharged: its loop ignores it, which must not pass as 'handled'."""
    stray = dataclasses.replace(
        _first("shipping", catalog.PAYMENT_CHARGED), consumer="inventory", given=lambda _w: None, then=lambda _w: None
    )
    with pytest.raises(consumer.ConsumerContractError, match=r"no handler for dev\.orderflow\.payment\.charged\.v1"):
        consumer.check(stray)


def test_a_wrong_expectation_of_the_consumer_state_fails() -> None:
    def expects_a_charge(world: World) -> None:
        raise AssertionError("payment: expected 'CHARGED'")

    wrong = dataclasses.replace(_first("billing", catalog.STOCK_REJECTED), then=expects_a_charge)
    with pytest.raises(consumer.ConsumerContractError, match=r"billing-inventory.*expected 'CHARGED'"):
        consumer.check(wrong)


def test_the_world_rejects_a_message_its_service_ignores() -> None:
    from orderflow.events import Event, codec
    from orderflow.shipping import definition

    event = Event(type=catalog.STOCK_RELEASED, source="/orderflow/inventory", subject=messages.ORDER_ID,
                  data=messages.EXAMPLES[catalog.STOCK_RELEASED])
    with World(definition) as world, pytest.raises(ConsumerRejected, match="ignored"):
        world.consume(codec.encode(event, prefix=messages.PREFIX))
