"""Inventory: reserves every line of an order or none, releases on compensation, counts what shipped."""

from services.inventory.service import definition

__all__ = ["definition"]
