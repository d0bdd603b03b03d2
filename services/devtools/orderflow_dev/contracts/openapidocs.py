"""The services' OpenAPI documents, committed under ``contracts/openapi/<service>.json``.

Built exactly as a running service builds its ``GET /openapi.json`` (``orderflow.runtime.openapi.document`` over
the runtime's routes and the service's own), on an offline runtime (``World``: a private SQLite file, no Kafka),
so they are regenerated with the other contracts and checked for drift with them.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Final

from orderflow.events import catalog
from orderflow.runtime import Definition, openapi
from orderflow_dev.contracts.world import World

OPENAPI_DIR: Final = "openapi"


def definition(service: str) -> Definition:
    found: Definition = importlib.import_module(f"orderflow.{service}").definition
    return found


def document(service: str) -> dict[str, Any]:
    """``service``'s OpenAPI document, as it serves it at ``/openapi.json``."""
    with World(definition(service)) as world:
        routes = [*openapi.runtime_routes(), *definition(service).routes(world.runtime)]
        return openapi.document(service, routes)


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def path(directory: Path, service: str) -> Path:
    return directory / OPENAPI_DIR / f"{service}.json"


def write(directory: Path) -> list[Path]:
    """Write every service's document under ``directory/openapi/``; return the files written."""
    (directory / OPENAPI_DIR).mkdir(parents=True, exist_ok=True)
    written = []
    for service in catalog.SERVICES:
        target = path(directory, service)
        target.write_text(dumps(document(service)))
        written.append(target)
    return written
