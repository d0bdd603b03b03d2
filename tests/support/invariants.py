"""The design brief's invariants, for the tests: they live in ``orderflow_dev.invariants`` (the chaos benchmark
checks them too)."""

from orderflow_dev.invariants import REASONS, check, settle

__all__ = ["REASONS", "check", "settle"]
