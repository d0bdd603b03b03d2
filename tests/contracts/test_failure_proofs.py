"""Proof that provider verification can fail: break a provider on purpose, the right consumers must object.

Each test changes what a provider's real code emits, as a developer's edit would (the provider "updated its
schema" too, so its own validation is switched off), then verifies every pact naming that provider. It asserts
that exactly the pairs whose consumer handles the broken event fail, and that both the structured mismatches
and the verifier's own report name the consumer, the interaction and the field. Compatible changes must pass.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from orderflow.events import Event, OrderId, catalog, codec
from orderflow.runtime import Tx
from orderflow_dev.contracts import expectations, verification

Change = Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]]


@pytest.fixture
def break_provider(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Change], None]:
    """Make every ``tx.emit`` of ``event_type`` go through ``change(type, data) -> (type, data)``."""

    def apply(event_type: str, change: Change) -> None:
        original = Tx.emit

        def emit(self: Tx, t: str, data: Mapping[str, Any], *, subject: OrderId) -> Event:
            if t == event_type:
                t, data = change(t, dict(data))
            return original(self, t, data, subject=subject)

        monkeypatch.setattr(Tx, "emit", emit)
        monkeypatch.setattr(codec, "validate", lambda _type, _data: None)

    return apply


def _consumers_of(event_type: str) -> set[str]:
    return {e.consumer for e in expectations.EXPECTATIONS if e.event_type == event_type}


def assert_breaks(event_type: str, field: str, *, also: str = "") -> list[verification.PairResult]:
    """Verify the provider of ``event_type``; only its consumers' pairs fail, each naming consumer/interaction/field."""
    provider = catalog.get(event_type).producer
    results = verification.verify_provider(provider)
    failed = {r.consumer for r in results if not r.verified}
    assert failed == _consumers_of(event_type), f"failed: {sorted(failed)}"
    for r in results:
        if r.verified:
            continue
        broken = [e.description for e in expectations.of_pair(r.consumer, provider) if e.event_type == event_type]
        named = {(m.consumer, m.interaction) for m in r.mismatches if field in f"{m.field} {m.detail}"}
        assert named == {(r.consumer, d) for d in broken}, "\n".join(map(str, r.mismatches))
        assert f"Verifying a pact between {r.consumer} and {provider}" in r.output
        assert all(d in r.output for d in broken)
        assert field in r.output.split("Failures:")[-1]
        assert also in r.output
    return results


def test_renaming_a_field_breaks_its_consumers(break_provider: Callable[[str, Change], None]) -> None:
    def rename(t: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        data["charge"] = data.pop("amount")
        return t, data

    break_provider(catalog.PAYMENT_CHARGED, rename)
    assert_breaks(catalog.PAYMENT_CHARGED, "amount", also="missing the following keys: amount")


def test_dropping_a_field_breaks_its_consumers(break_provider: Callable[[str, Change], None]) -> None:
    """The order service stops sending the deadline: shipping, inventory and billing all decode it (schema)."""

    def drop(t: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        del data["deadline"]
        return t, data

    break_provider(catalog.ORDER_CREATED, drop)
    assert_breaks(catalog.ORDER_CREATED, "deadline")


def test_changing_a_type_breaks_its_consumers(break_provider: Callable[[str, Change], None]) -> None:
    """Money as a float of major units instead of integer minor units."""

    def to_float(t: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        data["amount"] = {**data["amount"], "amount_minor": data["amount"]["amount_minor"] / 100}
        return t, data

    break_provider(catalog.PAYMENT_REFUNDED, to_float)
    assert_breaks(catalog.PAYMENT_REFUNDED, "$.amount.amount_minor", also="to be an integer")


def test_changing_the_cloudevent_type_breaks_its_consumers(
    break_provider: Callable[[str, Change], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    v2 = "dev.orderflow.shipment.cancelled.v2"
    monkeypatch.setitem(catalog.CATALOG, v2, dataclasses.replace(catalog.get(catalog.SHIPMENT_CANCELLED), type=v2))  # type: ignore[index]
    break_provider(catalog.SHIPMENT_CANCELLED, lambda _t, data: (v2, data))
    assert_breaks(catalog.SHIPMENT_CANCELLED, "ce_type", also=v2)


def test_changing_the_topic_breaks_its_consumers(monkeypatch: pytest.MonkeyPatch) -> None:
    """inventory moves its events from orderflow.inventory to orderflow.stock: every consumer of any of them breaks."""
    monkeypatch.setitem(catalog.STREAM_OF_PRODUCER, "inventory", "stock")
    results = verification.verify_provider("inventory")
    assert not any(r.verified for r in results)
    for r in results:
        assert {m.field for m in r.mismatches} == {"topic"}, "\n".join(map(str, r.mismatches))
        descriptions = {e.description for e in expectations.of_pair(r.consumer, "inventory")}
        assert {m.interaction for m in r.mismatches} == descriptions
        assert "orderflow.stock" in r.output and f"between {r.consumer} and inventory" in r.output


def test_an_event_the_provider_no_longer_emits_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """billing stops refunding: the verifier's relay error says what the provider published instead."""
    original = Tx.emit

    def emit(self: Tx, t: str, data: Mapping[str, Any], *, subject: OrderId) -> Event | None:
        return None if t == catalog.PAYMENT_REFUNDED else original(self, t, data, subject=subject)

    monkeypatch.setattr(Tx, "emit", emit)
    [result] = [r for r in verification.verify_provider("billing") if r.consumer == "order"]
    assert not result.verified
    assert "PaymentRefunded for an order that was charged" in result.output
    assert "billing published 0 events" in result.output


def test_adding_an_optional_field_stays_compatible(break_provider: Callable[[str, Change], None]) -> None:
    """Consumers are tolerant readers: a new field breaks nobody."""
    break_provider(catalog.ORDER_CREATED, lambda t, data: (t, {**data, "gift_wrap": True}))
    results = verification.verify_provider("order")
    assert all(r.verified for r in results), "\n".join(str(m) for r in results for m in r.mismatches)
