"""A consumer replica that is SIGKILLed and restarted gets its own partitions back at once, without a rebalance.

Regression: every member was dynamic, so after a crash the group waited out the dead member's session (10 s), then
rebalanced everyone; under a SIGKILL every few seconds the flow spent most of its time waiting (p50 52.8 s in the
issue's chaos run). Each replica now has a stable identity (``ORDERFLOW_REPLICA_ID``, the Pod name on Kubernetes)
and is a static member: the restarted process takes its predecessor's place and assignment, and the other replica
is never revoked. How long it takes against the session-timeout baseline is measured by ``python -m bench rejoin``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable

import pytest

from orderflow_dev.stack import ServiceProcess, Stack
from orderflow_dev.wait import until

pytestmark = pytest.mark.kafka

LINE = [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 100}]


def _log(service: ServiceProcess) -> list[dict[str, object]]:
    lines = service.log_path.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _assignments(service: ServiceProcess, after: int = 0) -> list[set[tuple[str, int]]]:
    """Every assignment the replica logged (from log record ``after`` on), as sets of (topic, partition)."""
    found = []
    for record in _log(service)[after:]:
        msg = str(record.get("msg", ""))
        if msg.startswith("assigned "):
            found.append({tuple(tp) for tp in ast.literal_eval(msg.split(": ", 1)[1])})
    return found


def _revocations(service: ServiceProcess, after: int) -> list[str]:
    return [str(r["msg"]) for r in _log(service)[after:] if str(r.get("msg", "")).startswith("revoked ")]


def test_a_killed_static_member_gets_its_partitions_back_and_the_others_keep_theirs(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(services=["order", "inventory"])
    first = stack["inventory"]
    second = stack.add_replica("inventory")
    stack.put_stock("SKU-1", 1_000)

    # Both replicas settled on their shares of the partitions.
    def settled() -> bool:
        a, b = _assignments(first), _assignments(second)
        return bool(a and b and a[-1] and b[-1] and not (a[-1] & b[-1]))

    until(settled, timeout=60, what="the two replicas to split the partitions")
    before = _assignments(second)[-1]
    kept = _assignments(first)[-1]
    mark_first, mark_second = len(_log(first)), len(_log(second))

    second.kill()
    second.start()
    second.wait_ready(timeout=60)
    # The restarted process is the same member: its predecessor's partitions, and nobody else was revoked.
    assert _assignments(second, after=mark_second) == [before]
    assert _revocations(first, after=mark_first) == []
    assert _assignments(first, after=mark_first) == []
    # And it consumes them: orders on every partition are reserved (keys spread over all of them).
    ids = [stack.place_order("alice", LINE)["order_id"] for _ in range(12)]
    for order_id in ids:
        until(
            lambda oid=order_id: first.find(f"/reservations/{oid}"), timeout=60, what=f"{order_id} to be reserved"
        )
    assert kept == _assignments(first)[-1]
