"""The event catalog, the event value type and the CloudEvents codec: what the four services share."""

from orderflow.errors import Poison, SchemaViolation
from orderflow.events import catalog, codec
from orderflow.events.event import Delivery, Event, EventId, OrderId, isoformat, new_order_id, utcnow

__all__ = [
    "Delivery",
    "Event",
    "EventId",
    "OrderId",
    "Poison",
    "SchemaViolation",
    "catalog",
    "codec",
    "isoformat",
    "new_order_id",
    "utcnow",
]
