"""A service's HTTP API in-process: its real routes on its real store, without a socket, a process or a broker.

starlette's ``TestClient`` idea: request validation is a property of the router and the endpoints, so it is tested
by handing requests to ``Router.respond`` -- the same call the HTTP server makes for every request -- on a private
SQLite file. Nothing is published: the runtime has no Kafka producer, and what the endpoints emit stays in the
outbox (see ``orderflow_dev.contracts.world``, whose offline runtime this reuses).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orderflow.runtime import Definition
from orderflow.runtime.http import Router
from orderflow_dev.contracts.world import World


class App:
    """One service's routes, answered in-process; ``call`` speaks like ``orderflow_dev.client.call``."""

    def __init__(self, definition: Definition, *, directory: Path) -> None:
        self.world = World(definition, directory=directory)
        self.router = Router(definition.routes(self.world.runtime))

    def call(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON body or text), as a client over HTTP would see it."""
        sent = {k.lower(): v for k, v in (headers or {}).items()}
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
            sent.setdefault("content-type", "application/json")
        status, payload, content_type = self.router.respond(method, path, sent, raw or b"")
        return status, json.loads(payload) if "json" in content_type else payload.decode()

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path} -> {status}: {answer}"
        return answer

    def close(self) -> None:
        self.world.close()
