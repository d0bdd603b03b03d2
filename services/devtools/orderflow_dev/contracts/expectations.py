"""What each consumer expects of its providers' events: the source of every pact in ``contracts/``.

One ``Expectation`` is one interaction: an event type the consumer really handles, the provider state it comes
from (named by the consumer, implemented by the provider in ``providers``), what the consumer knew before the
message (``given``) and what its real handler must have done after it (``then``). The body and metadata matchers
come from ``messages``; ``reads`` names the data fields the consumer's handler itself uses, and is written into
the pact as a comment for the provider's reviewers.

Provider states are shared vocabulary: several consumers name the same state (with the same parameters) when they
expect the same event from the same situation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from orderflow.billing import service as billing
from orderflow.events import catalog, schemas
from orderflow.inventory import service as inventory
from orderflow.order import service as order
from orderflow.shipping import service as shipping
from orderflow_dev.contracts import messages as m
from orderflow_dev.contracts.world import World

Check = Callable[[World], None]

# -- provider states (the provider implements each one in ``providers``) ---------------------------------------

ORDER_PLACED: Final = "a customer places an order"
ORDER_PLACED_PARAMS: Final = {
    "customer_id": m.CUSTOMER,
    "currency": m.CURRENCY,
    "sku": m.SKU,
    "quantity": m.QUANTITY,
    "unit_price_minor": m.UNIT_PRICE,
}
STOCK_COVERS: Final = "an order arrives for a SKU whose stock covers it"
STOCK_COVERS_PARAMS: Final = {"sku": m.SKU, "available": 10, "quantity": m.QUANTITY}
STOCK_SHORT: Final = "an order arrives for more units of a SKU than are available"
STOCK_SHORT_PARAMS: Final = {"sku": m.SKU, "available": 1, "quantity": m.QUANTITY}
RESERVED_PAYMENT_FAILS: Final = "the payment for an order whose stock is reserved fails"
RESERVED_PAYMENT_FAILS_PARAMS: Final = {"sku": m.SKU, "quantity": m.QUANTITY}
FUNDS_COVER: Final = "an order arrives whose total the customer's balance covers"
FUNDS_COVER_PARAMS: Final = {
    "customer_id": m.CUSTOMER,
    "balance_minor": 10_000,
    "amount_minor": m.TOTAL,
    "currency": m.CURRENCY,
}
FUNDS_SHORT: Final = "an order arrives whose total exceeds the customer's balance"
FUNDS_SHORT_PARAMS: Final = {
    "customer_id": m.CUSTOMER,
    "balance_minor": 1_000,
    "amount_minor": m.TOTAL,
    "currency": m.CURRENCY,
}
CHARGED_STOCK_REJECTED: Final = "the stock for a charged order is rejected"
CHARGED_STOCK_REJECTED_PARAMS: Final = {
    "customer_id": m.CUSTOMER,
    "balance_minor": 10_000,
    "amount_minor": m.TOTAL,
    "currency": m.CURRENCY,
}
ARRIVES_AFTER_CANCEL: Final = "an order arrives after it was cancelled"
READY_TO_SHIP: Final = "stock and payment for an order are both in before its deadline"
OPEN_ORDER_CANCELLED: Final = "an open order is cancelled"


@dataclass(frozen=True, slots=True)
class Expectation:
    """One interaction of one consumer's pact with the producer of ``event_type``."""

    consumer: str
    event_type: str
    description: str
    state: str
    params: Mapping[str, Any]
    then: Check
    given: Check = field(default=lambda _world: None)
    reads: tuple[str, ...] = ()
    data: Mapping[str, Any] | None = None
    pins: tuple[str, ...] = ()

    @property
    def provider(self) -> str:
        return catalog.get(self.event_type).producer

    @property
    def pair(self) -> str:
        return f"{self.consumer}-{self.provider}"

    @property
    def example(self) -> Mapping[str, Any]:
        return self.data if self.data is not None else m.EXAMPLES[self.event_type]

    @property
    def id(self) -> str:
        return f"{self.pair}:{self.description}"


# CloudEvent attributes a consumer keeps beyond type/id/source/subject, which every decoder requires.
KEEPS: Final[Mapping[str, frozenset[str]]] = {
    "order": frozenset({"source", "time"}),  # the order timeline shows which service said what, and when
}


def _soon() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def _expect(what: str, actual: Any, wanted: Any) -> None:
    if actual != wanted:
        raise AssertionError(f"{what}: expected {wanted!r}, got {actual!r}")


def _published(world: World, *types: str) -> None:
    _expect(
        f"events {world.definition.name} published in reply",
        [p.header_map["ce_type"] for p in world.published()],
        list(types),
    )


# -- inventory -------------------------------------------------------------------------------------------------


def _stock(world: World, *, available: int, reserved: int = 0, shipped: int = 0) -> None:
    world.insert(inventory.stock, {"sku": m.SKU, "available": available, "reserved": reserved, "shipped": shipped})


def _reserved(world: World) -> None:
    _stock(world, available=8, reserved=m.QUANTITY)
    world.insert(
        inventory.reservations,
        {
            "order_id": m.ORDER_ID,
            "state": inventory.RESERVED,
            "items": json.dumps({m.SKU: m.QUANTITY}),
            "reason": None,
            "updated_at": datetime.now(UTC),
        },
    )


def _inventory_is(world: World, *, state: str, reason: str | None, available: int, reserved: int, shipped: int) -> None:
    row = world.row(inventory.reservations)
    _expect("reservation state", (row.state, row.reason), (state, reason))
    s = world.row(inventory.stock)
    _expect(
        f"stock of {m.SKU} (available, reserved, shipped)",
        (s.available, s.reserved, s.shipped),
        (available, reserved, shipped),
    )


def _inventory_reserved(world: World) -> None:
    _inventory_is(world, state=inventory.RESERVED, reason=None, available=8, reserved=2, shipped=0)
    _expect("reserved lines", json.loads(world.row(inventory.reservations).items), {m.SKU: m.QUANTITY})
    _published(world, catalog.STOCK_RESERVED)


def _inventory_released(reason: str) -> Check:
    def check(world: World) -> None:
        _inventory_is(world, state=inventory.RELEASED, reason=reason, available=10, reserved=0, shipped=0)
        _published(world, catalog.STOCK_RELEASED)
        _expect("StockReleased reason", world.published()[0].data["reason"], reason)

    return check


def _inventory_shipped(world: World) -> None:
    _inventory_is(world, state=inventory.SHIPPED, reason=None, available=8, reserved=0, shipped=2)
    _published(world)


# -- billing ---------------------------------------------------------------------------------------------------


def _account(world: World, balance: int) -> None:
    world.insert(billing.accounts, {"customer_id": m.CUSTOMER, "balance_minor": balance, "currency": m.CURRENCY})


def _charged(world: World) -> None:
    _account(world, 10_000 - m.TOTAL)
    world.insert(
        billing.payments,
        {
            "order_id": m.ORDER_ID,
            "customer_id": m.CUSTOMER,
            "amount_minor": m.TOTAL,
            "currency": m.CURRENCY,
            "state": billing.CHARGED,
            "reason": None,
            "updated_at": datetime.now(UTC),
        },
    )


def _billing_charged(world: World) -> None:
    p = world.row(billing.payments)
    _expect(
        "payment",
        (p.state, p.customer_id, p.amount_minor, p.currency),
        (billing.CHARGED, m.CUSTOMER, m.TOTAL, m.CURRENCY),
    )
    _expect("balance", world.row(billing.accounts).balance_minor, 10_000 - m.TOTAL)
    _published(world, catalog.PAYMENT_CHARGED)


def _billing_refunded(reason: str) -> Check:
    def check(world: World) -> None:
        p = world.row(billing.payments)
        _expect("payment (state, reason)", (p.state, p.reason), (billing.REFUNDED, reason))
        _expect("balance after the refund", world.row(billing.accounts).balance_minor, 10_000)
        _published(world, catalog.PAYMENT_REFUNDED)

    return check


# -- shipping --------------------------------------------------------------------------------------------------


def _open_shipment(**known: Any) -> Check:
    def given(world: World) -> None:
        world.insert(shipping.shipments, {"order_id": m.ORDER_ID, "deadline": _soon(), **known})

    return given


def _shipping_remembers_deadline(world: World) -> None:
    row = world.row(shipping.shipments)
    deadline = row.deadline if row.deadline.tzinfo else row.deadline.replace(tzinfo=UTC)
    _expect("deadline", deadline, datetime.fromisoformat(m.DEADLINE))
    _expect("outcome", row.outcome, None)
    _published(world)


def _shipping_dispatched(world: World) -> None:
    _expect("outcome", world.row(shipping.shipments).outcome, shipping.DISPATCHED)
    _published(world, catalog.SHIPMENT_DISPATCHED)


def _shipping_ignores_late_answer(world: World) -> None:
    row = world.row(shipping.shipments)
    _expect(
        "decision and facts",
        (row.outcome, row.reason, row.stock, row.payment),
        (shipping.CANCELLED, "deadline_exceeded", None, None),
    )
    _published(world)


def _shipping_cancelled(reason: str) -> Check:
    def check(world: World) -> None:
        row = world.row(shipping.shipments)
        _expect("outcome", (row.outcome, row.reason), (shipping.CANCELLED, reason))
        _published(world, catalog.SHIPMENT_CANCELLED)

    return check


# -- order -----------------------------------------------------------------------------------------------------


def _pending_order(**columns: Any) -> Check:
    def given(world: World) -> None:
        world.insert(
            order.orders,
            {
                "order_id": m.ORDER_ID,
                "customer_id": m.CUSTOMER,
                "items": json.dumps(m.EXAMPLES[catalog.ORDER_CREATED]["items"]),
                "total_minor": m.TOTAL,
                "currency": m.CURRENCY,
                "status": order.PENDING,
                "created_at": datetime.fromisoformat(m.CREATED_AT),
                "deadline": _soon(),
                **columns,
            },
        )

    return given


def _order_is(event_type: str, **columns: Any) -> Check:
    def check(world: World) -> None:
        row = world.row(order.orders)
        _expect("order", {c: getattr(row, c) for c in columns}, columns)
        entry = world.row(order.timeline)
        _expect(
            "timeline entry (type, source)",
            (entry.event_type, entry.source),
            (event_type, catalog.get(event_type).source),
        )
        _published(world)

    return check


def _for_order(
    event_type: str,
    description: str,
    state: str,
    params: Mapping[str, Any],
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any],
    data: Mapping[str, Any] | None = None,
) -> Expectation:
    return Expectation(
        "order",
        event_type,
        description,
        state,
        params,
        given=_pending_order(**(before or {})),
        then=_order_is(event_type, **after),
        data=data,
    )


# The answer of a service that hears of an order only after its cancellation: nothing taken, reason order_cancelled.
_LATE_STOCK: Final = m.example(catalog.STOCK_REJECTED, reason=schemas.ORDER_CANCELLED)
_LATE_PAYMENT: Final = m.example(catalog.PAYMENT_FAILED, reason=schemas.ORDER_CANCELLED)

EXPECTATIONS: Final[tuple[Expectation, ...]] = (
    # inventory reserves on OrderCreated and releases or ships on the outcome.
    Expectation(
        "inventory",
        catalog.ORDER_CREATED,
        "OrderCreated for 2 units of SKU-1",
        ORDER_PLACED,
        ORDER_PLACED_PARAMS,
        given=lambda w: _stock(w, available=10),
        then=_inventory_reserved,
        reads=("items[].sku", "items[].quantity"),
    ),
    Expectation(
        "inventory",
        catalog.PAYMENT_FAILED,
        "PaymentFailed for an order whose stock is reserved",
        FUNDS_SHORT,
        FUNDS_SHORT_PARAMS,
        given=_reserved,
        then=_inventory_released("payment_declined"),
    ),
    Expectation(
        "inventory",
        catalog.SHIPMENT_DISPATCHED,
        "ShipmentDispatched for an order whose stock is reserved",
        READY_TO_SHIP,
        {},
        given=_reserved,
        then=_inventory_shipped,
    ),
    Expectation(
        "inventory",
        catalog.SHIPMENT_CANCELLED,
        "ShipmentCancelled at the deadline of a reserved order",
        OPEN_ORDER_CANCELLED,
        {"reason": "deadline_exceeded"},
        given=_reserved,
        then=_inventory_released("deadline_exceeded"),
        reads=("reason",),
    ),
    # billing charges on OrderCreated and refunds when the order fails after all.
    Expectation(
        "billing",
        catalog.ORDER_CREATED,
        "OrderCreated for a total of 25.00 EUR",
        ORDER_PLACED,
        ORDER_PLACED_PARAMS,
        given=lambda w: _account(w, 10_000),
        then=_billing_charged,
        reads=("customer_id", "total.amount_minor", "total.currency"),
    ),
    Expectation(
        "billing",
        catalog.STOCK_REJECTED,
        "StockRejected for an order that was charged",
        STOCK_SHORT,
        STOCK_SHORT_PARAMS,
        given=_charged,
        then=_billing_refunded("out_of_stock"),
    ),
    Expectation(
        "billing",
        catalog.SHIPMENT_CANCELLED,
        "ShipmentCancelled at the deadline of a charged order",
        OPEN_ORDER_CANCELLED,
        {"reason": "deadline_exceeded"},
        given=_charged,
        then=_billing_refunded("deadline_exceeded"),
        reads=("reason",),
    ),
    # shipping decides: it needs the deadline, then one fact from each of inventory and billing.
    Expectation(
        "shipping",
        catalog.ORDER_CREATED,
        "OrderCreated with its deadline",
        ORDER_PLACED,
        ORDER_PLACED_PARAMS,
        then=_shipping_remembers_deadline,
        reads=("deadline",),
    ),
    Expectation(
        "shipping",
        catalog.STOCK_RESERVED,
        "StockReserved for an order already charged",
        STOCK_COVERS,
        STOCK_COVERS_PARAMS,
        given=_open_shipment(payment="CHARGED"),
        then=_shipping_dispatched,
    ),
    Expectation(
        "shipping",
        catalog.STOCK_REJECTED,
        "StockRejected for an open order",
        STOCK_SHORT,
        STOCK_SHORT_PARAMS,
        given=_open_shipment(),
        then=_shipping_cancelled("out_of_stock"),
    ),
    Expectation(
        "shipping",
        catalog.PAYMENT_CHARGED,
        "PaymentCharged for an order whose stock is reserved",
        FUNDS_COVER,
        FUNDS_COVER_PARAMS,
        given=_open_shipment(stock="RESERVED"),
        then=_shipping_dispatched,
    ),
    Expectation(
        "shipping",
        catalog.PAYMENT_FAILED,
        "PaymentFailed for an open order",
        FUNDS_SHORT,
        FUNDS_SHORT_PARAMS,
        given=_open_shipment(),
        then=_shipping_cancelled("payment_declined"),
    ),
    # ... and ignores the answers that come after its decision (reason order_cancelled): it branches on the reason.
    Expectation(
        "shipping",
        catalog.STOCK_REJECTED,
        "StockRejected for an order cancelled before inventory saw it",
        ARRIVES_AFTER_CANCEL,
        {},
        given=_open_shipment(outcome="CANCELLED", reason="deadline_exceeded"),
        then=_shipping_ignores_late_answer,
        data=_LATE_STOCK,
        pins=("reason",),
        reads=("reason",),
    ),
    Expectation(
        "shipping",
        catalog.PAYMENT_FAILED,
        "PaymentFailed for an order cancelled before billing saw it",
        ARRIVES_AFTER_CANCEL,
        {},
        given=_open_shipment(outcome="CANCELLED", reason="deadline_exceeded"),
        then=_shipping_ignores_late_answer,
        data=_LATE_PAYMENT,
        pins=("reason",),
        reads=("reason",),
    ),
    # order keeps status and timeline: every outcome and every compensation step.
    _for_order(
        catalog.STOCK_RESERVED,
        "StockReserved for a pending order",
        STOCK_COVERS,
        STOCK_COVERS_PARAMS,
        after={"stock": "RESERVED", "status": order.PENDING},
    ),
    _for_order(
        catalog.STOCK_REJECTED,
        "StockRejected for a pending order",
        STOCK_SHORT,
        STOCK_SHORT_PARAMS,
        after={"stock": "REJECTED", "status": order.PENDING},
    ),
    _for_order(
        catalog.STOCK_REJECTED,
        "StockRejected for an order cancelled before inventory saw it",
        ARRIVES_AFTER_CANCEL,
        {},
        before={"status": order.CANCELLED, "reason": "deadline_exceeded"},
        after={"stock": "REJECTED", "status": order.CANCELLED},
        data=_LATE_STOCK,
    ),
    _for_order(
        catalog.STOCK_RELEASED,
        "StockReleased for an order whose stock was reserved",
        RESERVED_PAYMENT_FAILS,
        RESERVED_PAYMENT_FAILS_PARAMS,
        before={"stock": "RESERVED"},
        after={"stock": "RELEASED"},
    ),
    _for_order(
        catalog.PAYMENT_CHARGED,
        "PaymentCharged for a pending order",
        FUNDS_COVER,
        FUNDS_COVER_PARAMS,
        after={"payment": "CHARGED", "status": order.PENDING},
    ),
    _for_order(
        catalog.PAYMENT_FAILED,
        "PaymentFailed for a pending order",
        FUNDS_SHORT,
        FUNDS_SHORT_PARAMS,
        after={"payment": "FAILED", "status": order.PENDING},
    ),
    _for_order(
        catalog.PAYMENT_FAILED,
        "PaymentFailed for an order cancelled before billing saw it",
        ARRIVES_AFTER_CANCEL,
        {},
        before={"status": order.CANCELLED, "reason": "deadline_exceeded"},
        after={"payment": "FAILED", "status": order.CANCELLED},
        data=_LATE_PAYMENT,
    ),
    _for_order(
        catalog.PAYMENT_REFUNDED,
        "PaymentRefunded for an order that was charged",
        CHARGED_STOCK_REJECTED,
        CHARGED_STOCK_REJECTED_PARAMS,
        before={"payment": "CHARGED"},
        after={"payment": "REFUNDED"},
    ),
    _for_order(
        catalog.SHIPMENT_DISPATCHED,
        "ShipmentDispatched for a pending order",
        READY_TO_SHIP,
        {},
        after={"status": order.SHIPPED, "reason": None},
    ),
    _for_order(
        catalog.SHIPMENT_CANCELLED,
        "ShipmentCancelled when the deadline passed",
        OPEN_ORDER_CANCELLED,
        {"reason": "deadline_exceeded"},
        after={"status": order.CANCELLED, "reason": "deadline_exceeded"},
    ),
    _for_order(
        catalog.SHIPMENT_CANCELLED,
        "ShipmentCancelled when the stock was rejected",
        OPEN_ORDER_CANCELLED,
        {"reason": "out_of_stock"},
        after={"status": order.CANCELLED, "reason": "out_of_stock"},
        data=m.example(catalog.SHIPMENT_CANCELLED, reason="out_of_stock"),
    ),
)


def pairs() -> list[tuple[str, str]]:
    """Every (consumer, provider) pair with at least one expectation, in a stable order."""
    return sorted({(e.consumer, e.provider) for e in EXPECTATIONS})


def of_pair(consumer: str, provider: str) -> list[Expectation]:
    return [e for e in EXPECTATIONS if (e.consumer, e.provider) == (consumer, provider)]
