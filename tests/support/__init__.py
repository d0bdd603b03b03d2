"""Test-only helpers; the process harness and HTTP client the demo also uses live in ``orderflow_dev``."""
