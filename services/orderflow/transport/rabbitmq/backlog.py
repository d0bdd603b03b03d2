"""What a group has not settled yet, for the operator: messages ready + unacknowledged in the group's queues.

Why the management plugin's HTTP API and not AMQP: a passive ``queue.declare`` answers with the messages
*ready* only; those delivered and not yet acknowledged (a replica's prefetch, its batch in flight) are not in
it, and a backlog that drops when a consumer merely prefetches would make the operator scale in under load. The
HTTP API (``rabbitmq_management``, bundled with the server) has both per queue. Its figures are the broker's
statistics: a quorum queue reports its counts every ``quorum_tick_interval`` and the management database
collects them every ``collect_statistics_interval`` (5 s each by default, so up to ~10 s old; the dev harness
sets 1 s and 0.5 s).

Where: ``options["management_url"]`` (``ORDERFLOW_RABBITMQ_MANAGEMENT_URL``, e.g. ``http://user:pw@host:15672``),
else the AMQP URL's host on port 15672 (``https`` and 15671 for ``amqps``) with the AMQP URL's credentials;
``tls_ca`` verifies an ``https`` one.

Per channel: RabbitMQ keeps a group's events in the group's queues whatever channel they came from (that is
what keeps one order's events in one queue), so the split by channel is not known. The group's whole backlog is
reported under its first channel (sorted) and 0 under the others: the sum is exact, the split is not.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from orderflow.errors import BrokerUnavailable

TIMEOUT_S = 10.0


def management_url(url: str, options: Mapping[str, str]) -> str:
    explicit = options.get("management_url")
    if explicit:
        return explicit.rstrip("/")
    parsed = urllib.parse.urlsplit(url)
    secure = parsed.scheme == "amqps"
    userinfo = f"{parsed.username or 'guest'}:{parsed.password or 'guest'}@"
    port = options.get("management_port") or ("15671" if secure else "15672")
    return f"{'https' if secure else 'http'}://{userinfo}{parsed.hostname or 'localhost'}:{port}"


def _vhost(url: str) -> str:
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


def _get(base: str, path: str, options: Mapping[str, str]) -> Any:
    parsed = urllib.parse.urlsplit(base)
    netloc = parsed.hostname or ""
    if parsed.port:
        netloc += f":{parsed.port}"
    request = urllib.request.Request(urllib.parse.urlunsplit((parsed.scheme, netloc, path, "", "")))
    credentials = f"{urllib.parse.unquote(parsed.username or '')}:{urllib.parse.unquote(parsed.password or '')}"
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    context = ssl.create_default_context(cafile=options.get("tls_ca") or None) if parsed.scheme == "https" else None
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise BrokerUnavailable(f"RabbitMQ management API at {parsed.hostname}:{parsed.port}: {e}") from e


def read(url: str, options: Mapping[str, str], *, group: str, channels: Sequence[str]) -> dict[str, int]:
    """``{channel: not yet settled by group}``; the whole figure under the first channel (see above)."""
    base = management_url(url, options)
    vhost = urllib.parse.quote(_vhost(url), safe="")
    queues = _get(base, f"/api/queues/{vhost}", options)
    pattern = re.compile(re.escape(group) + r"\.\d+")
    total = sum(
        int(q.get("messages_ready", 0) or 0) + int(q.get("messages_unacknowledged", 0) or 0)
        for q in queues
        if isinstance(q, dict) and pattern.fullmatch(str(q.get("name", "")))
    )
    ordered = sorted(set(channels))
    return {channel: (total if i == 0 else 0) for i, channel in enumerate(ordered)}
