"""Fixtures and markers of the contract suite (Pact message contracts, the flow graph, the AsyncAPI document).

Every test about one (consumer, provider) pair carries ``@pytest.mark.pair(name="<consumer>-<provider>")`` and has
the pair's name in its id, so one pair runs alone with ``-k billing-order`` or
``-m "pair(name='billing-order')"``. Nothing here needs Kafka: the services' real code runs on private SQLite files.
"""

import os

import pytest

os.environ["PACT_DO_NOT_TRACK"] = "true"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pair(name): the test is about one <consumer>-<provider> contract")
