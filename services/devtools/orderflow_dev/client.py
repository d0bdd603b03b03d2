"""A tiny JSON HTTP client on the standard library, for the demo and the tests (the services speak JSON)."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any


def call(
    method: str,
    url: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 10,
) -> tuple[int, Any]:
    """Send a request; return (status, parsed JSON body or text).

    Every transport failure — refused, reset, or a response cut short by a dying server — is an ``OSError``, so
    a caller that waits for a restarting service has one exception to treat as "not yet".
    """
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    if body is not None and raw is None:
        request.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload, ctype = (
                response.status,
                response.read(),
                response.headers.get("Content-Type", ""),
            )
    except urllib.error.HTTPError as e:
        status, payload, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
    except http.client.HTTPException as e:
        raise ConnectionError(f"{method} {url}: {type(e).__name__}: {e}") from e
    if "json" in ctype:
        return status, json.loads(payload)
    return status, payload.decode()


def get(url: str) -> tuple[int, Any]:
    return call("GET", url)


def ok(method: str, url: str, body: Any = None, **kw: Any) -> Any:
    status, payload = call(method, url, body, **kw)
    assert 200 <= status < 300, f"{method} {url} -> {status}: {payload}"
    return payload
