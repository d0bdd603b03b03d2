"""A service whose database does not answer yet waits for it instead of exiting.

Regression: on the first real cluster every consumer Pod crash-looped once -- its first connections to PostgreSQL
were refused for a few seconds (the NetworkPolicy agent had not yet admitted the new Pod's address), the store's
start-up raised ``StoreUnavailable``, the process exited 1, and `skaffold run`'s status check failed the deploy.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from orderflow.runtime.db import Store
from orderflow_dev.postgres import PostgresServer
from orderflow_dev.wait import until

pytestmark = pytest.mark.postgres


class LateForwarder:
    """A TCP port that refuses connections until ``open()``, then forwards them to ``target``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()  # nothing listens on the port until open(): connections are refused
        self._server: socket.socket | None = None

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
def late(postgres_server: PostgresServer) -> Iterator[tuple[LateForwarder, str]]:
    url = postgres_server.create_database("late_start")
    parts = urlsplit(url)
    forwarder = LateForwarder((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield forwarder, url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{forwarder.port}")
    forwarder.close()


def test_the_store_waits_for_a_database_that_answers_late(late: tuple[LateForwarder, str],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    forwarder, url = late
    metadata = sa.MetaData()
    sa.Table("things", metadata, sa.Column("id", sa.Integer, primary_key=True))
    result: list[Store] = []
    caplog.set_level(logging.WARNING, logger="orderflow.runtime.db")
    starting = threading.Thread(target=lambda: result.append(Store(url, metadata)), daemon=True)
    starting.start()
    until(lambda: any("retrying" in r.getMessage() for r in caplog.records), timeout=30,
          what="the store to report that the database refuses it")
    assert starting.is_alive() and not result, "the store gave up instead of waiting"
    forwarder.open()
    starting.join(60)
    (store,) = result
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM things")).scalar() == 0
    store.engine.dispose()
