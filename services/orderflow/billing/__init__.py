"""Billing: charges the order total once, refunds on compensation, never charges a cancelled order."""

from orderflow.billing.service import definition

__all__ = ["definition"]
