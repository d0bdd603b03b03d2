"""``orderflow kafka start|stop|status`` (and ``python -m orderflow_dev.kafka ...``): the daemon from a shell."""

from __future__ import annotations

import argparse
import logging
import sys

from orderflow_dev.kafka.daemon import DEFAULT_DAEMON_PORT, daemon_status, start_daemon, stop_daemon
from orderflow_dev.kafka.ensure import BOOTSTRAP_ENV
from orderflow_dev.kafka.errors import KafkaToolError
from orderflow_dev.kafka.files import daemon_dir
from orderflow_dev.kafka.jars import kafka_version


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderflow kafka",
        description=f"Run a local Apache Kafka {kafka_version()} broker (single-node KRaft on 127.0.0.1) in "
        f"the background. State and logs: {daemon_dir()}.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the broker (no-op if it already runs) and print its bootstrap")
    start.add_argument(
        "--port",
        type=int,
        default=DEFAULT_DAEMON_PORT,
        help=f"client port on 127.0.0.1 (default {DEFAULT_DAEMON_PORT})",
    )
    start.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for it to answer")
    sub.add_parser("stop", help="stop the broker")
    sub.add_parser("status", help="exit 0 if the broker runs, 3 if not")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of `orderflow kafka`; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "start":
            bootstrap = start_daemon(args.port, startup_timeout=args.timeout)
            status = daemon_status()
            print(bootstrap)
            if status is not None:
                print(
                    f"Kafka {kafka_version()} broker running (pid {status['pid']}); "
                    f"state and logs in {status['state_dir']}"
                )
            if not bootstrap.endswith(f":{args.port}"):
                print(f"(it was already running on {bootstrap}; --port {args.port} ignored)")
            print(f"To use it from services and tests: export {BOOTSTRAP_ENV}={bootstrap}")
            return 0
        if args.command == "stop":
            pid = stop_daemon()
            print(f"stopped the Kafka broker (pid {pid})" if pid is not None else "the Kafka broker was not running")
            return 0
        status = daemon_status()
        if status is None:
            print("the Kafka broker is not running")
            return 3
        print(
            f"running: pid {status['pid']}, bootstrap {status['bootstrap']}, "
            f"{'answering' if status['answering'] else 'NOT answering'}; Kafka {status['kafka_version']}, "
            f"state dir {status['state_dir']}"
        )
        return 0
    except (KafkaToolError, OSError) as exc:
        print(f"orderflow kafka: error: {exc}", file=sys.stderr)
        return 1
