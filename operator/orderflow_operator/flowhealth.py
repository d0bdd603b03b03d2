"""Flow health as the order service reports it.

Only the order service knows which orders are in flight (accepted, not yet shipped or cancelled), so the
operator asks it: ``GET <orderServiceUrl>/flow?stuck_after_seconds=N`` answers
``{"in_flight", "oldest_in_flight_age_seconds", "stuck", "stuck_order_ids"}``. Anything else (no answer, an
error status, a body of another shape) is :class:`errors.FlowHealthUnavailable`, and the status says why.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from orderflow_operator import errors

__all__ = [
    "FlowHealth",
    "fetch",
]

MAX_STUCK_IDS = 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlowHealth:
    in_flight: int
    oldest_in_flight_age_seconds: float | None
    stuck: int
    stuck_order_ids: tuple[str, ...]

    def to_status(self) -> dict[str, Any]:
        return {
            "inFlight": self.in_flight,
            "oldestInFlightAgeSeconds": (
                round(self.oldest_in_flight_age_seconds, 1) if self.oldest_in_flight_age_seconds is not None else None
            ),
            "stuck": self.stuck,
            "stuckOrderIds": list(self.stuck_order_ids),
        }


def flow_url(base: str, stuck_after_seconds: int) -> str:
    query = urllib.parse.urlencode({"stuck_after_seconds": stuck_after_seconds})
    return f"{base.rstrip('/')}/flow?{query}"


def parse(payload: Any) -> FlowHealth:
    if not isinstance(payload, dict):
        raise errors.FlowHealthUnavailable("order service /flow did not answer a JSON object")
    try:
        in_flight = payload["in_flight"]
        stuck = payload["stuck"]
        oldest = payload.get("oldest_in_flight_age_seconds")
        ids = payload.get("stuck_order_ids") or []
        if isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 0:
            raise TypeError("in_flight must be a non-negative integer")
        if isinstance(stuck, bool) or not isinstance(stuck, int) or stuck < 0:
            raise TypeError("stuck must be a non-negative integer")
        if oldest is not None and (isinstance(oldest, bool) or not isinstance(oldest, int | float)):
            raise TypeError("oldest_in_flight_age_seconds must be a number or null")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise TypeError("stuck_order_ids must be a list of strings")
    except (KeyError, TypeError) as e:
        raise errors.FlowHealthUnavailable(f"order service /flow answered an unexpected body: {e}") from e
    return FlowHealth(
        in_flight=in_flight,
        oldest_in_flight_age_seconds=float(oldest) if oldest is not None else None,
        stuck=stuck,
        stuck_order_ids=tuple(ids[:MAX_STUCK_IDS]),
    )


def fetch(base_url: str, *, stuck_after_seconds: int, timeout: float) -> FlowHealth:
    url = flow_url(base_url, stuck_after_seconds)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise errors.FlowHealthUnavailable(f"orderServiceUrl must be http(s): {base_url}")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(1 << 20)
    except urllib.error.HTTPError as e:
        e.close()
        raise errors.FlowHealthUnavailable(f"GET {url}: HTTP {e.code}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise errors.FlowHealthUnavailable(f"GET {url}: {reason}") from e
    try:
        payload = json.loads(body)
    except ValueError as e:
        raise errors.FlowHealthUnavailable(f"GET {url}: body is not JSON") from e
    return parse(payload)
