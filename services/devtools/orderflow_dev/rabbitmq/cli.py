"""``orderflow rabbitmq start|stop|status`` (and ``python -m orderflow_dev.rabbitmq ...``): the daemon from a shell."""

from __future__ import annotations

import argparse
import sys

from orderflow_dev.rabbitmq.daemon import daemon_dir, daemon_status, start_daemon, stop_daemon
from orderflow_dev.rabbitmq.server import RabbitMQUnavailable

URL_ENV = "ORDERFLOW_RABBITMQ_URL"
MANAGEMENT_ENV = "ORDERFLOW_RABBITMQ_MANAGEMENT_URL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderflow rabbitmq",
        description=f"Run a private RabbitMQ node (Debian's rabbitmq-server) on 127.0.0.1 in the background. "
        f"State and logs: {daemon_dir()}.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the node (no-op if it already runs) and print its URL")
    start.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it to answer")
    sub.add_parser("stop", help="stop the node")
    sub.add_parser("status", help="exit 0 if the node runs, 3 if not")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of `orderflow rabbitmq`; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "start":
            status = start_daemon(startup_timeout=args.timeout)
            print(status["url"])
            print(f"RabbitMQ running (pid {status['pid']}); state and logs in {status['state_dir']}")
            print(f"To use it from services and tests: export {URL_ENV}={status['url']}")
            print(f"  and, for the backlog reader: export {MANAGEMENT_ENV}={status['management_url']}")
            return 0
        if args.command == "stop":
            pid = stop_daemon()
            print(f"stopped RabbitMQ (pid {pid})" if pid is not None else "RabbitMQ was not running")
            return 0
        found = daemon_status()
        if found is None:
            print("RabbitMQ is not running")
            return 3
        answering = "answering" if found["answering"] else "NOT answering"
        print(f"running: pid {found['pid']}, {found['url']}, {answering}; state dir {found['state_dir']}")
        return 0
    except (RabbitMQUnavailable, OSError, AssertionError) as exc:
        print(f"orderflow rabbitmq: error: {exc}", file=sys.stderr)
        return 1
