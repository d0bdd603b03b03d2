"""The provider side: every provider state the consumers name, reached and acted out with the provider's real code.

A state has two halves. ``seed`` writes what the provider knew before (rows in its own tables, on a fresh SQLite
database); ``act`` makes the provider do the thing the state describes the way it does in production — the order
service answers a real ``POST /orders`` through its router, inventory, billing and shipping receive the triggering
event through their real consumer loop, and shipping's deadline scan runs as its ticker runs it. The message the
verifier gets is then the single event the provider committed to its outbox: value, key, topic and headers
exactly as its relay would hand them to Kafka.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from orderflow.billing import service as billing
from orderflow.events import Event, OrderId, catalog, codec, new_order_id
from orderflow.inventory import service as inventory
from orderflow.order import service as order
from orderflow.runtime.http import Router
from orderflow.shipping import service as shipping
from orderflow_dev.contracts import expectations as x
from orderflow_dev.contracts import messages
from orderflow_dev.contracts.world import World

Params = Mapping[str, Any]


class ProviderStateError(RuntimeError):
    """A provider state could not be reached, or did not make the provider publish exactly one event."""


@dataclass
class Scene:
    """One interaction's provider world: a fresh database, the order it is about, the state's parameters."""

    world: World
    params: Params
    order_id: OrderId = field(default_factory=new_order_id)


@dataclass(frozen=True, slots=True)
class State:
    act: Callable[[Scene], None]
    seed: Callable[[Scene], None] = lambda _scene: None


def _deliver(scene: Scene, event_type: str, **data: Any) -> None:
    """Hand ``event_type`` to the provider's real consumer loop, as its producer would have published it."""
    entry = catalog.get(event_type)
    event = Event(
        type=event_type,
        source=entry.source,
        subject=scene.order_id,
        data=messages.example(event_type, order_id=scene.order_id, **data),
    )
    scene.world.consume(codec.encode(event, prefix=messages.PREFIX))


def _order_created(
    scene: Scene,
    *,
    sku: str,
    quantity: int,
    customer_id: str = messages.CUSTOMER,
    amount_minor: int = messages.TOTAL,
    currency: str = messages.CURRENCY,
) -> None:
    _deliver(
        scene,
        catalog.ORDER_CREATED,
        customer_id=customer_id,
        total={"amount_minor": amount_minor, "currency": currency},
        items=[{"sku": sku, "quantity": quantity, "unit_price_minor": amount_minor // quantity}],
    )


# -- order -----------------------------------------------------------------------------------------------------


def _place_order(scene: Scene) -> None:
    p = scene.params
    body = {
        "customer_id": p["customer_id"],
        "currency": p["currency"],
        "items": [{"sku": p["sku"], "quantity": p["quantity"], "unit_price_minor": p["unit_price_minor"]}],
    }
    router = Router(order.routes(scene.world.runtime))
    status, reply = router.dispatch("POST", "/orders", {"content-type": "application/json"}, json.dumps(body).encode())
    if status != 201:
        raise ProviderStateError(f"POST /orders answered {status}: {reply}")


# -- inventory -------------------------------------------------------------------------------------------------


def _stock(scene: Scene, *, available: int, reserved: int = 0) -> None:
    scene.world.insert(
        inventory.stock, {"sku": scene.params["sku"], "available": available, "reserved": reserved, "shipped": 0}
    )


def _reservation(scene: Scene) -> None:
    p = scene.params
    _stock(scene, available=0, reserved=int(p["quantity"]))
    scene.world.insert(
        inventory.reservations,
        {
            "order_id": scene.order_id,
            "state": inventory.RESERVED,
            "items": json.dumps({p["sku"]: p["quantity"]}),
            "reason": None,
            "updated_at": datetime.now(UTC),
        },
    )


def _void_reservation(scene: Scene) -> None:
    """What inventory remembers of an order it saw cancelled (a ShipmentCancelled) before the order itself."""
    scene.world.insert(
        inventory.reservations,
        {
            "order_id": scene.order_id,
            "state": inventory.VOID,
            "items": "{}",
            "reason": "deadline_exceeded",
            "updated_at": datetime.now(UTC),
        },
    )


# -- billing ---------------------------------------------------------------------------------------------------


def _account(scene: Scene) -> None:
    p = scene.params
    scene.world.insert(
        billing.accounts,
        {
            "customer_id": p["customer_id"],
            "balance_minor": p["balance_minor"],
            "currency": p["currency"],
        },
    )


def _charge(scene: Scene) -> None:
    _order_created(
        scene,
        sku=messages.SKU,
        quantity=1,
        customer_id=scene.params["customer_id"],
        amount_minor=scene.params["amount_minor"],
        currency=scene.params["currency"],
    )


def _charged(scene: Scene) -> None:
    p = scene.params
    scene.world.insert(
        billing.accounts,
        {
            "customer_id": p["customer_id"],
            "balance_minor": p["balance_minor"] - p["amount_minor"],
            "currency": p["currency"],
        },
    )
    scene.world.insert(
        billing.payments,
        {
            "order_id": scene.order_id,
            "customer_id": p["customer_id"],
            "amount_minor": p["amount_minor"],
            "currency": p["currency"],
            "state": billing.CHARGED,
            "reason": None,
            "updated_at": datetime.now(UTC),
        },
    )


def _void_payment(scene: Scene) -> None:
    """What billing remembers of an order it saw cancelled before the order itself."""
    scene.world.insert(
        billing.payments,
        {
            "order_id": scene.order_id,
            "customer_id": "",
            "amount_minor": 0,
            "currency": "XXX",
            "state": billing.VOID,
            "reason": "deadline_exceeded",
            "updated_at": datetime.now(UTC),
        },
    )


# -- shipping --------------------------------------------------------------------------------------------------


def _open_shipment(scene: Scene, *, deadline: datetime, **known: Any) -> None:
    scene.world.insert(shipping.shipments, {"order_id": scene.order_id, "deadline": deadline, **known})


def _cancel_seed(scene: Scene) -> None:
    passed = scene.params["reason"] == "deadline_exceeded"
    _open_shipment(scene, deadline=datetime.now(UTC) + timedelta(seconds=-1 if passed else 3600))


def _cancel(scene: Scene) -> None:
    reason = scene.params["reason"]
    if reason == "deadline_exceeded":
        shipping.expire(scene.world.runtime)  # the deadline-scan ticker
    elif reason == "out_of_stock":
        _deliver(scene, catalog.STOCK_REJECTED)
    elif reason == "payment_declined":
        _deliver(scene, catalog.PAYMENT_FAILED)
    else:
        raise ProviderStateError(f"shipping never cancels for {reason!r}")


STATES: Final[Mapping[str, Mapping[str, State]]] = {
    "order": {
        x.ORDER_PLACED: State(act=_place_order),
    },
    "inventory": {
        x.STOCK_COVERS: State(
            seed=lambda s: _stock(s, available=int(s.params["available"])),
            act=lambda s: _order_created(s, sku=s.params["sku"], quantity=int(s.params["quantity"])),
        ),
        x.STOCK_SHORT: State(
            seed=lambda s: _stock(s, available=int(s.params["available"])),
            act=lambda s: _order_created(s, sku=s.params["sku"], quantity=int(s.params["quantity"])),
        ),
        x.RESERVED_PAYMENT_FAILS: State(seed=_reservation, act=lambda s: _deliver(s, catalog.PAYMENT_FAILED)),
        x.ARRIVES_AFTER_CANCEL: State(
            seed=_void_reservation, act=lambda s: _order_created(s, sku=messages.SKU, quantity=messages.QUANTITY)
        ),
    },
    "billing": {
        x.FUNDS_COVER: State(seed=_account, act=_charge),
        x.FUNDS_SHORT: State(seed=_account, act=_charge),
        x.CHARGED_STOCK_REJECTED: State(seed=_charged, act=lambda s: _deliver(s, catalog.STOCK_REJECTED)),
        x.ARRIVES_AFTER_CANCEL: State(
            seed=_void_payment, act=lambda s: _order_created(s, sku=messages.SKU, quantity=messages.QUANTITY)
        ),
    },
    "shipping": {
        x.READY_TO_SHIP: State(
            seed=lambda s: _open_shipment(s, deadline=datetime.now(UTC) + timedelta(hours=1), stock="RESERVED"),
            act=lambda s: _deliver(s, catalog.PAYMENT_CHARGED),
        ),
        x.OPEN_ORDER_CANCELLED: State(seed=_cancel_seed, act=_cancel),
    },
}
