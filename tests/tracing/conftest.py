"""Fixtures for the tracing tests: ``jaeger`` (session), a private real Jaeger v2 (``orderflow_dev.jaeger``).

The binary is built (or found in the cache) once after collection, only when a selected test uses ``jaeger``, so a
first build does not count against a test's timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orderflow_dev.jaeger import Jaeger, build

_BINARY = pytest.StashKey[Path]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or not any("jaeger" in getattr(i, "fixturenames", ()) for i in session.items):
        return
    session.config.stash[_BINARY] = build()


@pytest.fixture(scope="session")
def jaeger(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    """A started Jaeger, traces in memory: ``.otlp_endpoint`` to export to, ``.trace(id)`` to read back."""
    with Jaeger(request.config.stash.get(_BINARY, None), tmp_path_factory.mktemp("jaeger")) as server:
        yield server
