"""How long a consumer replica's partitions stay unconsumed after it is SIGKILLed and restarted at once.

A crash-restart (a container restarted in its Pod) is the common fault. The group cannot tell a crash from a slow
member, so with dynamic membership it waits out the dead member's session before it gives the partitions to the
restarted process. Measured, in one run on one broker, for:

* ``baseline`` -- classic protocol, dynamic membership (no replica identity): the session-timeout wait;
* ``static`` -- classic protocol with ``group.instance.id`` from ``ORDERFLOW_REPLICA_ID`` (what OrderFlow does);
* ``kip848`` -- the KIP-848 consumer protocol (``group.protocol=consumer``), dynamic;
* ``kip848-static`` -- KIP-848 with ``group.instance.id``.

Each repetition: order + inventory on fresh topics; SIGKILL inventory, start it again at once, place an order, and
time from the kill until inventory has reserved (or rejected) it -- its partitions are consumed again. Figures are
medians, and ratios to the baseline of the same run. A mode that does not consume again within two minutes is
reported as such (librdkafka 2.16 with KIP-848 refuses a restarted static member, "instance ID is still used",
until the old one's broker-side session ends).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from orderflow_dev.kafka import ensure_broker
from orderflow_dev.stack import Stack
from orderflow_dev.wait import Timeout, until

MODES: dict[str, dict[str, str]] = {
    "baseline": {"ORDERFLOW_REPLICA_ID": ""},
    "static": {},  # the Stack gives every process a replica id
    "kip848": {"ORDERFLOW_REPLICA_ID": "", "ORDERFLOW_KAFKA_GROUP_PROTOCOL": "consumer"},
    "kip848-static": {"ORDERFLOW_KAFKA_GROUP_PROTOCOL": "consumer"},
}
GIVE_UP_S = 120.0
LINE = [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 100}]


def rejoin_seconds(bootstrap: str, env: dict[str, str], *, workdir: Path, repetitions: int) -> list[float]:
    """Kill-to-consumed-again times of inventory, ``repetitions`` times on one stack."""
    times: list[float] = []
    with Stack(
        bootstrap=bootstrap,
        prefix=f"rejoin{uuid.uuid4().hex[:8]}",
        workdir=workdir,
        services=["order", "inventory"],
        env=env,
    ) as stack:
        stack.put_stock("SKU-1", 1_000)
        inventory = stack["inventory"]
        warm = stack.place_order("alice", LINE)["order_id"]
        until(lambda: inventory.find(f"/reservations/{warm}"), timeout=60, what="the warm-up reservation")
        for _ in range(repetitions):
            killed = time.monotonic()
            inventory.kill()
            inventory.start()
            order_id = stack.place_order("alice", LINE)["order_id"]

            def reserved(oid: str = order_id) -> bool:
                try:
                    return inventory.find(f"/reservations/{oid}") is not None
                except OSError:
                    return False  # not listening yet

            try:
                until(reserved, timeout=GIVE_UP_S, what="the restarted inventory to consume again", interval=0.05)
            except Timeout:
                times.append(math.inf)  # never, as far as this benchmark waits; the log says why
                print(f"    (gave up after {GIVE_UP_S:.0f}s; log: {inventory.log_path})", flush=True)
                break
            times.append(time.monotonic() - killed)
            inventory.wait_ready(timeout=60)
    return times


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench rejoin", description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3, help="kills per mode (default 3)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-rejoin-"))
    results: dict[str, list[float]] = {}
    with ensure_broker() as bootstrap:
        for mode in args.modes.split(","):
            results[mode] = rejoin_seconds(
                bootstrap, MODES[mode], workdir=workdir / mode, repetitions=args.repetitions
            )
            shown = ", ".join(f"{t:.1f}s" if math.isfinite(t) else "never" for t in results[mode])
            print(f"{mode:>14}: {shown}", flush=True)
    base = statistics.median(results["baseline"]) if "baseline" in results else None
    print(f"\nSIGKILL + immediate restart -> partitions consumed again (median of {args.repetitions})")
    for mode, times in results.items():
        median = statistics.median(times)
        ratio = f"  {median / base:.2f}x baseline" if base and math.isfinite(median) else ""
        print(f"  {mode:>14}: {median:5.1f}s{ratio}" if math.isfinite(median) else f"  {mode:>14}: did not rejoin")
    return 0
