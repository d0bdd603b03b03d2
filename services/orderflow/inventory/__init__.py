"""Inventory: reserves every line of an order or none, releases on compensation, counts what shipped."""

from orderflow.inventory.service import definition

__all__ = ["definition"]
