"""Shipping: the single decision point of an order's outcome — it dispatches, or it cancels, exactly once."""

from orderflow.shipping.service import definition

__all__ = ["definition"]
