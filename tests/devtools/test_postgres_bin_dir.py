"""Which PostgreSQL server binaries orderflow_dev.postgres picks when several Debian versions are installed."""

from pathlib import Path

import pytest

from orderflow_dev import postgres


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What ``/usr/lib/postgresql/*/bin/postgres`` matches; fill it in the test."""
    found: list[str] = []
    monkeypatch.delenv("ORDERFLOW_PG_BIN", raising=False)
    monkeypatch.setattr(postgres.glob, "glob", lambda _pattern: list(found))
    return found


def test_the_newest_major_version_wins_numerically(installed: list[str]) -> None:
    installed += [f"/usr/lib/postgresql/{v}/bin/postgres" for v in ("13", "16", "9")]
    assert postgres.find_bin_dir() == Path("/usr/lib/postgresql/16/bin")


def test_a_directory_not_named_by_a_major_version_does_not_crash_the_search(installed: list[str]) -> None:
    """Regression: the version was read with ``re.search(r"/(\\d+)/bin/", p).group(1)``, so a ``9.6`` directory
    (Debian's layout before PostgreSQL 10) or any other non-integer name raised AttributeError on ``None``."""
    installed += [f"/usr/lib/postgresql/{v}/bin/postgres" for v in ("9.6", "current", "15", "10")]
    assert postgres.find_bin_dir() == Path("/usr/lib/postgresql/15/bin")
