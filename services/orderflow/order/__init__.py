"""Order: accepts orders, publishes ``OrderCreated``, and keeps each order's status and timeline."""

from orderflow.order.service import definition

__all__ = ["definition"]
