"""The thread watchdog (``/healthz`` and the loop in ``run_forever``) never takes a thread being started for a dead one.

A thread that is listed before ``start`` has run is "not alive"; a watchdog that looked at that moment shut a
healthy service down at start-up ("a service thread died") — seen on a loaded machine, where the window is wide.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orderflow.inventory.service import definition
from orderflow.runtime import config
from orderflow.runtime.service import Service


def test_a_thread_being_started_is_not_reported_dead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = config.load(
        "inventory",
        {
            "ORDERFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1",  # never contacted: the transport connects lazily
            "ORDERFLOW_DATA_DIR": str(tmp_path),
            "ORDERFLOW_HTTP_PORT": "0",
        },
    )
    service = Service(definition, settings)
    service.http.start()  # serving, so that it stops cleanly
    seen: list[tuple[int, object]] = []
    real_start = threading.Thread.start

    def start_watched(thread: threading.Thread) -> None:
        seen.append(service._healthz(None))  # type: ignore[arg-type]  # the probe reads no request
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_watched)
    release = threading.Event()

    def parked() -> None:
        release.wait(30)

    try:
        service._spawn("probe", parked)
        assert seen == [(200, {"status": "ok"})]
        assert service._healthz(None) == (200, {"status": "ok"})  # type: ignore[arg-type]
    finally:
        release.set()
        monkeypatch.undo()
        service.http.stop()
        service.transport.close()
        service.runtime.store.dispose()
    for thread in service._threads:
        thread.join(10)
    status, body = service._healthz(None)  # type: ignore[arg-type]
    assert (status, body) == (503, {"status": "unhealthy", "dead_threads": ["probe"]})
