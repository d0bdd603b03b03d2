"""What a route promises its clients, declared next to the route: the source of each service's OpenAPI document.

A ``Route`` carries a ``Doc``: its parameters, its request body's JSON Schema (the same mapping the endpoint
validates with), and every response it can give, success and error alike. ``orderflow.runtime.openapi`` turns
the routes a service really serves into OpenAPI 3.1, so the document cannot describe a route that does not exist
or miss one that does; the fuzz tests hold the endpoints to what their ``Doc`` says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Schema = Mapping[str, Any]

# The body of every 4xx and 5xx answer (runtime/http.py, RequestError.response).
ERROR: Final[Schema] = {
    "type": "object",
    "description": "What was wrong, for a person to read; `details` names the offending field when there is one.",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What was wrong and, where it helps, how to fix it."},
        "details": {"type": "object", "description": "Machine-readable specifics, e.g. `{\"field\": \"body.items\"}`."},
    },
}

# What each error status means wherever it is documented; a route lists the ones it can give.
ERROR_MEANING: Final[Mapping[int, str]] = {
    400: "Malformed request: a path or query parameter of the wrong form, a body that is not valid JSON.",
    404: "No such resource.",
    413: "The request body exceeds 1 MiB.",
    415: "The request body is not declared JSON (`Content-Type: application/json`).",
    422: "The body is JSON but breaks the schema, or conflicts with an earlier request.",
    503: "Temporarily unavailable (the database is busy or unreachable): retry later.",
}


def nullable(schema: Schema) -> Schema:
    """``schema`` or JSON ``null`` (OpenAPI 3.1 is JSON Schema 2020-12: a type list, or ``oneOf`` for an enum)."""
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None]}
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"oneOf": [dict(schema), {"type": "null"}]}


def obj(properties: Mapping[str, Schema], *, description: str = "", optional: Sequence[str] = ()) -> Schema:
    """A JSON object with exactly these properties, all required but ``optional``."""
    schema: dict[str, Any] = {
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "properties": dict(properties),
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def described(schema: Schema, description: str) -> Schema:
    return {**schema, "description": description}


@dataclass(frozen=True, slots=True)
class Param:
    """A path, query or header parameter; ``schema`` is what the endpoint checks it against."""

    name: str
    where: Literal["path", "query", "header"]
    schema: Schema
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """One response: its status, what it means, and its body's schema (``None``: a body that is not JSON)."""

    status: int
    description: str
    schema: Schema | None = None
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Doc:
    """A route's contract. ``errors`` are the 4xx/5xx statuses it can answer, each with the ``ERROR`` body."""

    operation_id: str
    summary: str
    replies: Sequence[Reply]
    errors: Sequence[int] = ()
    description: str = ""
    params: Sequence[Param] = ()
    body: Schema | None = None
    tags: Sequence[str] = field(default_factory=tuple)


def path_param(name: str, schema: Schema, description: str) -> Param:
    return Param(name, "path", schema, description, required=True)
