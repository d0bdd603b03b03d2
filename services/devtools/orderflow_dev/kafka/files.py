"""Where the local broker keeps things, and the small file primitives its jobs share (a lock, an atomic write)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def _env_dir(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else default


def cache_dir() -> Path:
    """``${ORDERFLOW_CACHE:-~/.cache/orderflow}``: downloaded, rebuildable things."""
    return _env_dir("ORDERFLOW_CACHE", Path.home() / ".cache" / "orderflow")


def daemon_dir() -> Path:
    """``${ORDERFLOW_STATE:-~/.local/state/orderflow}/kafka``: the daemon's pid, bootstrap, data and logs."""
    return _env_dir("ORDERFLOW_STATE", Path.home() / ".local" / "state" / "orderflow") / "kafka"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise processes (two test runs, two CLI calls) on an advisory lock file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of ``path`` ("" when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
