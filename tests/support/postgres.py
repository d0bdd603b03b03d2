"""pytest plugin: a private, real PostgreSQL server for the test session (``orderflow_dev.postgres``).

Fixture ``postgres_server`` (session): a started :class:`PostgresServer`; ``create_database(name)`` returns a
``postgresql://`` URL for a new, empty database. ``tests/support/install-postgres.sh`` installs Debian's server
binaries when they are missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orderflow_dev.postgres import PostgresServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs a real PostgreSQL server")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the whole session; ``.create_database(name)`` gives a URL."""
    with PostgresServer() as server:
        yield server
