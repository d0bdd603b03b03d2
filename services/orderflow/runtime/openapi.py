"""A service's OpenAPI 3.1 document, built from the routes it serves.

Each ``Route`` declares its contract (``apidoc.Doc``) beside its endpoint, and the service serves
``GET /openapi.json`` built from its own route list, so the document is the router's, not a description kept
beside it. The copy committed under ``contracts/openapi/`` is generated the same way (``orderflow contracts
generate``) and a test compares both with what the running services serve. The runtime's own routes (probes,
metrics, this document) are documented here, once, for every service.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any, Final

from orderflow.runtime import apidoc
from orderflow.runtime.http import Request, Response, Route

OPENAPI_PATH: Final = "/openapi.json"

_PROBE_BODY: Final = apidoc.obj(
    {
        "status": apidoc.described(
            {"enum": ["ok", "unhealthy", "ready", "not ready"]},
            "`ok`/`unhealthy` (healthz), `ready`/`not ready` (readyz)",
        ),
        "dead_threads": apidoc.described(
            {"type": "array", "items": {"type": "string"}}, "healthz, when unhealthy: the service loops that died"
        ),
        "problems": apidoc.described(
            {"type": "array", "items": {"type": "string"}}, "readyz, when not ready: what is missing, one line each"
        ),
        "degraded": apidoc.described(
            {"type": "array", "items": {"type": "string"}},
            "readyz, when ready without its broker (order service: orders wait in its outbox): what the broker's "
            "state stops",
        ),
        "broker": apidoc.described(
            apidoc.obj(
                {
                    "state": apidoc.described({"enum": ["up", "down"]}, "the broker's state, from a metadata probe"),
                    "for_seconds": apidoc.described({"type": "number"}, "how long it has been in that state"),
                    "reason": apidoc.described({"type": "string"}, "when down: the last error"),
                },
                optional=("reason",),
            ),
            "readyz: the broker (whichever the transport) as this replica sees it",
        ),
        "kafka": apidoc.described(
            apidoc.obj(
                {
                    "state": apidoc.described({"enum": ["up", "down"]}, "the broker's state, from a metadata probe"),
                    "for_seconds": apidoc.described({"type": "number"}, "how long it has been in that state"),
                    "reason": apidoc.described({"type": "string"}, "when down: the last error"),
                },
                optional=("reason",),
            ),
            "readyz: the same object as `broker` (its name before there were other transports)",
        ),
        "transport": apidoc.described(
            {"enum": ["kafka", "nats", "rabbitmq", "memory"]}, "readyz: the broker this service runs on"
        ),
        "database": apidoc.described({"enum": ["up", "down"]}, "readyz: whether the database answers"),
    },
    optional=("dead_threads", "problems", "degraded", "broker", "kafka", "transport", "database"),
)

# The routes every service gets from the runtime (runtime/service.py), by (method, path).
RUNTIME_DOCS: Final[Mapping[tuple[str, str], apidoc.Doc]] = {
    ("GET", "/healthz"): apidoc.Doc(
        "healthz",
        "Liveness: the service's loops (consumer, outbox relay, periodic jobs) are alive",
        [
            apidoc.Reply(200, "Alive.", _PROBE_BODY),
            apidoc.Reply(503, "A loop died; the process should be restarted.", _PROBE_BODY),
        ],
        tags=("probes",),
    ),
    ("GET", "/readyz"): apidoc.Doc(
        "readyz",
        "Readiness: the database answers, the broker is set up and the consumer group has taken this replica in, "
        "the loops run (the order service stays ready while the broker is down: `degraded` says so)",
        [
            apidoc.Reply(200, "Ready to serve.", _PROBE_BODY),
            apidoc.Reply(503, "Not ready; `problems` says why.", _PROBE_BODY),
        ],
        tags=("probes",),
    ),
    ("GET", "/metrics"): apidoc.Doc(
        "metrics",
        "Prometheus metrics (text exposition format)",
        [apidoc.Reply(200, "Events consumed, duplicates, dead-lettered, batches, retries, outbox backlog, ...",
                      {"type": "string"}, content_type="text/plain")],
        tags=("probes",),
    ),
    ("GET", OPENAPI_PATH): apidoc.Doc(
        "openapi",
        "This document: the service's HTTP API as OpenAPI 3.1",
        [apidoc.Reply(200, "The OpenAPI 3.1 document.", {"type": "object"})],
        tags=("probes",),
    ),
}


class Undocumented(Exception):
    """A route without a ``Doc``: every route a service serves must say what it answers."""


def _version() -> str:
    try:
        return metadata.version("orderflow")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _content(schema: apidoc.Schema | None, content_type: str) -> dict[str, Any]:
    return {content_type: {"schema": dict(schema) if schema is not None else {}}}


def _operation(route: Route, doc: apidoc.Doc) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": doc.operation_id, "summary": doc.summary}
    if doc.description:
        op["description"] = doc.description
    if doc.tags:
        op["tags"] = list(doc.tags)
    if doc.params:
        op["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required, "description": p.description,
             "schema": dict(p.schema)}
            for p in doc.params
        ]
    if doc.body is not None:
        op["requestBody"] = {"required": True, "content": _content(doc.body, "application/json")}
    responses: dict[str, Any] = {}
    for reply in doc.replies:
        responses[str(reply.status)] = {
            "description": reply.description,
            "content": _content(reply.schema, reply.content_type),
        }
    for status in doc.errors:
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    op["responses"] = responses
    return op


def document(service: str, routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``service`` serving ``routes``; ``Undocumented`` names a route without a Doc."""
    paths: dict[str, dict[str, Any]] = {}
    used_errors: set[int] = set()
    for route in routes:
        doc = route.doc or RUNTIME_DOCS.get((route.method, route.pattern))
        if doc is None:
            raise Undocumented(f"{service}: {route.method} {route.pattern} has no apidoc.Doc")
        used_errors.update(doc.errors)
        paths.setdefault(route.pattern, {})[route.method.lower()] = _operation(route, doc)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"OrderFlow {service} service",
            "version": _version(),
            "description": (
                f"The HTTP API of OrderFlow's {service} service. Bodies are JSON; every 4xx/5xx answer has the "
                "`Error` body. Generated from the routes the service serves (services/orderflow/runtime/openapi.py)."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": dict(apidoc.ERROR)},
            "responses": {
                f"E{status}": {
                    "description": apidoc.ERROR_MEANING[status],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
                for status in sorted(used_errors)
            },
        },
    }


def route(service: str, routes: Sequence[Route]) -> Route:
    """``GET /openapi.json`` for a service whose other routes are ``routes`` (the document includes itself)."""
    served: list[Route] = []

    def endpoint(_request: Request) -> Response:
        return 200, _cached()

    @functools.cache
    def _cached() -> dict[str, Any]:
        return document(service, served)

    own = Route("GET", OPENAPI_PATH, endpoint)
    served.extend([*routes, own])
    return own


def runtime_routes() -> list[Route]:
    """Stand-ins for the runtime's own routes, for building a document without a running service."""

    def unused(_request: Request) -> Response:
        raise NotImplementedError("a stand-in route is only documented, never served")

    return [Route(m, p, unused) for (m, p) in RUNTIME_DOCS]
