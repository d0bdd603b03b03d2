"""A small JSON-over-HTTP server on the standard library, shared by the four services.

Routes are ``(method, pattern, function)``; a function takes a ``Request`` and returns ``(status, body)``. A bad
request is a ``RequestError`` and is answered 4xx with ``{"error": message, "details": ...}`` — a client always
learns what was wrong. Anything unexpected is logged and answered 500 without internals.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from orderflow.errors import RequestError, Retryable
from orderflow.runtime import apidoc, tracing

log = logging.getLogger(__name__)

MAX_BODY: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]
    raw_body: bytes

    def json(self) -> Any:
        """The body as JSON; 415 unless it is declared JSON, 400 unless it parses."""
        content_type = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RequestError(415, "the request body must be JSON (Content-Type: application/json)")
        try:
            return json.loads(self.raw_body or b"")
        except ValueError as e:
            raise RequestError(400, f"the request body is not valid JSON: {e}") from None

    def json_object(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise RequestError(400, f"the request body must be a JSON object, not {type(body).__name__}")
        return body


Response = tuple[int, Any]
Endpoint = Callable[[Request], Response]
# What goes on the wire: status, payload, Content-Type.
Reply = tuple[int, bytes, str]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: str
    endpoint: Endpoint
    # What it promises its clients: the source of the service's OpenAPI document (runtime/openapi.py).
    doc: apidoc.Doc | None = None

    def compiled(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern) + "$")


class Router:
    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = [(r.method, r.compiled(), r.endpoint) for r in routes]
        self._templates = [(pattern, r.pattern) for (_, pattern, _), r in zip(self._routes, routes, strict=True)]

    def route(self, path: str) -> str | None:
        """The pattern (``/orders/{order_id}``) that ``path`` matches, for span names; None when none does."""
        return next((template for pattern, template in self._templates if pattern.match(path)), None)

    def dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        parts = urlsplit(target)
        allowed: list[str] = []
        for route_method, pattern, endpoint in self._routes:
            match = pattern.match(parts.path)
            if match is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            # Blank values are kept, so that ``?n=`` is refused as malformed rather than read as absent.
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            return endpoint(Request(method, parts.path, match.groupdict(), query, headers, body))
        if allowed:
            raise RequestError(405, f"{method} is not allowed on {parts.path}; use {', '.join(sorted(allowed))}")
        raise RequestError(404, f"no such resource: {parts.path}")

    def respond(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """The whole HTTP contract of the service, without a socket: what one request is answered.

        The server calls it for every request; tests call it in-process (starlette's TestClient idea), so request
        validation is checked without processes or a broker. ``headers`` are keyed in lower case.
        """
        span = tracing.server(method, target, headers, self.route)
        if span is None:
            return self._respond(method, target, headers, body)
        reply = self._respond(method, target, span.headers, body)
        span.finish(reply[0])
        return reply

    def _respond(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        try:
            return encode(*self.dispatch(method, target, headers, body))
        except RequestError as e:
            return encode(*e.response())
        except Retryable as e:
            return encode(503, {"error": f"temporarily unavailable, retry later: {e}"})
        except ValueError:
            return encode(400, {"error": "malformed request"})
        except Exception:
            log.exception("unhandled error serving %s %s", method, target)
            return encode(500, {"error": "internal error; see the service log"})


def encode(status: int, body: Any) -> Reply:
    """(status, payload, Content-Type): JSON, or bytes as they are (the Prometheus text format)."""
    if isinstance(body, bytes):
        return status, body, "text/plain; version=0.0.4; charset=utf-8"
    return status, json.dumps(body).encode(), "application/json"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one send (BaseHTTPRequestHandler flushes after each request), with Nagle off: as
    # two small sends on a kept-alive connection the second waited for the client's delayed ACK.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            status, payload, content_type = encode(400, {"error": "malformed request"})
        elif length > MAX_BODY:
            status, payload, content_type = encode(*RequestError(413, f"the request body exceeds {MAX_BODY} bytes")
                                                   .response())
        else:
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, content_type = self.server.router.respond(self.command, self.path, headers, raw)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def __getattr__(self, name: str) -> Any:
        # Every method reaches the router, which answers 405 (JSON, naming the allowed ones) where no route takes
        # it; the standard library would answer one without a do_<METHOD> 501 with an HTML page (found by fuzzing).
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: a burst of clients connecting while the accept loop was busy had
    # their handshakes dropped or reset. The kernel caps this at net.core.somaxconn.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], router: Router) -> None:
        self.router = router
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Through the JSON log, not socketserver's traceback on stderr; a client that hung up is no error."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            log.info("http: client %s went away before the answer: %s", client_address[0], error)
        else:
            log.exception("http: request from %s failed", client_address[0])


class HttpServer:
    def __init__(self, *, host: str, port: int, routes: Sequence[Route]) -> None:
        self._server = _Server((host, port), Router(routes))
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, forever if it never started
            self._server.shutdown()
        self._server.server_close()


def body_validator(schema: Mapping[str, Any]) -> Callable[[Any], dict[str, Any]]:
    """A checker for request bodies: returns the body, or raises 422 naming the first offending field."""
    import fastjsonschema

    check = fastjsonschema.compile(dict(schema))

    def validate(body: Any) -> dict[str, Any]:
        try:
            check(body)
        except fastjsonschema.JsonSchemaValueException as e:
            field = e.name.replace("data", "body", 1) if e.name else "body"
            raise RequestError(422, e.message.replace("data", "body", 1), details={"field": field}) from None
        if not isinstance(body, dict):
            raise RequestError(422, "the request body must be a JSON object")
        return body

    return validate


def path_param(request: Request, name: str, pattern: re.Pattern[str], what: str) -> str:
    value = request.params[name]
    if not pattern.fullmatch(value):
        raise RequestError(400, f"{value!r} is not a valid {what}")
    return value
