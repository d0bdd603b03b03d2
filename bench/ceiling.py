"""The raw-Kafka ceiling of the saga: four plain confluent-kafka processes, no database, no guarantees.

Each process plays one service over the same four topics with the same subscriptions and hops as the real ones:
inventory and billing answer every ``OrderCreated`` (StockReserved, PaymentCharged), shipping joins reserved +
charged per order and publishes ShipmentDispatched, order listens to all three answer topics. Per order that is 4
events produced and 12 consumed, exactly what the real services do for a good order. Bodies are parsed as JSON
(the real services must read them too); nothing is stored, offsets are auto-committed. This is what the broker and
the Python client cost on this machine: the upper bound the saga's throughput is reported against.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import multiprocessing.synchronize
import uuid
from typing import Final

from confluent_kafka import Consumer, Producer

from orderflow.events import catalog

ROLES: Final = ("order", "inventory", "billing", "shipping")


def subscriptions(role: str, prefix: str) -> list[str]:
    """The topics the real service ``role`` subscribes to (from the event catalog)."""
    handlers = importlib.import_module(f"orderflow.{role}").definition.handlers
    return sorted({catalog.get(t).topic(prefix) for t in handlers})


def _play(
    role: str,
    bootstrap: str,
    prefix: str,
    topics: list[str],
    ready: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{prefix}-ceiling-{role}",
            "auto.offset.reset": "earliest",
            "client.id": f"ceiling-{role}",
            # A well-tuned raw consumer: the broker answers a fetch as soon as data is there.
            "fetch.wait.max.ms": 10,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    consumer.subscribe(topics, on_assign=lambda _c, _p: ready.set())
    answers = {"inventory": catalog.STOCK_RESERVED, "billing": catalog.PAYMENT_CHARGED}
    seen: dict[bytes, int] = {}
    try:
        while not stop.is_set():
            for m in consumer.consume(500, timeout=0.1):
                if m.error():
                    continue
                headers = dict(m.headers() or [])
                raw_type = headers.get("ce_type") or b""
                event_type = raw_type.decode() if isinstance(raw_type, bytes) else raw_type
                body = json.loads(m.value() or b"{}")
                key = m.key() or b""
                if role in answers and event_type == catalog.ORDER_CREATED:
                    out = answers[role]
                    topic = catalog.get(out).topic(prefix)
                    data = json.dumps({"order_id": body.get("order_id"), "customer_id": body.get("customer_id")})
                    producer.produce(topic, value=data.encode(), key=key, headers={"ce_type": out, "ce_id": _id()})
                elif role == "shipping" and event_type in (catalog.STOCK_RESERVED, catalog.PAYMENT_CHARGED):
                    seen[key] = seen.get(key, 0) + 1
                    if seen[key] == 2:
                        del seen[key]
                        out = catalog.SHIPMENT_DISPATCHED
                        data = json.dumps({"order_id": body.get("order_id"), "shipment_id": _id()})
                        producer.produce(
                            catalog.get(out).topic(prefix),
                            value=data.encode(),
                            key=key,
                            headers={"ce_type": out, "ce_id": _id()},
                        )
            producer.poll(0)
    finally:
        producer.flush(10)
        consumer.close()


def _id() -> str:
    return str(uuid.uuid4())


class Ceiling:
    """The four players as processes; ``start()`` returns once every one of them has its partitions."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stop_event = ctx.Event()
        self.ready = {role: ctx.Event() for role in ROLES}
        self.processes = [
            ctx.Process(
                target=_play,
                args=(role, bootstrap, prefix, subscriptions(role, prefix), self.ready[role], self.stop_event),
                name=f"ceiling-{role}",
                daemon=True,
            )
            for role in ROLES
        ]

    def start(self, timeout: float = 60) -> None:
        for p in self.processes:
            p.start()
        for role, ready in self.ready.items():
            if not ready.wait(timeout):
                raise RuntimeError(f"ceiling player {role} got no partitions within {timeout:.0f}s")

    def stop(self) -> None:
        self.stop_event.set()
        for p in self.processes:
            p.join(15)
            if p.is_alive():
                p.kill()
                p.join(5)

    def __enter__(self) -> Ceiling:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
