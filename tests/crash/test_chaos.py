"""The chaos scenario, short: orders placed while random services are SIGKILLed and the broker dies once.

Every accepted order must reach a terminal status and every invariant hold. Speed under chaos (p50/p99, orders
cancelled by their deadline, the longest intake stall) is a benchmark's business: ``make chaos`` runs the full
scenario and prints those figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orderflow_dev import chaos

pytestmark = pytest.mark.kafka


def test_orders_survive_random_sigkills_and_a_broker_outage(tmp_path: Path) -> None:
    scenario = chaos.Scenario(
        orders=300, duration_s=20, kill_every_s=2.0, broker_kill_at_s=6.0, broker_down_s=6.0, deadline_s=90
    )
    result = chaos.run(scenario, workdir=tmp_path)
    print(result.report())
    assert result.violations == []
    assert len(result.orders) == scenario.orders  # every one accepted, and (settle) every one terminal
    assert {o["status"] for o in result.orders.values()} <= {"SHIPPED", "CANCELLED"}
    assert sum(result.kills.values()) >= 5 and result.broker_outage_s >= scenario.broker_down_s, result.kills
