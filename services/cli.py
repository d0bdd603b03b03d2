"""The ``orderflow`` command: run a service, the demo, the local Kafka broker, the operator, the contracts."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from services.events import catalog


def _run(args: argparse.Namespace) -> int:
    from services.runtime import OrderFlowError, Service, config, logs

    try:
        settings = config.load(args.service)
    except OrderFlowError as e:
        print(f"orderflow run {args.service}: {e}", file=sys.stderr)
        return 2
    logs.configure(args.service, settings.log_level)
    definition = importlib.import_module(f"services.{args.service}").definition
    try:
        Service(definition, settings).run_forever()
    except OrderFlowError as e:
        print(f"orderflow run {args.service}: {e}", file=sys.stderr)
        return 1
    return 0


def _delegate(module: str, argv: Sequence[str]) -> int:
    main = importlib.import_module(module).main
    return int(main(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Sub-commands that own their arguments are handed the rest of the command line untouched.
    delegated = {
        "kafka": "services.devtools.kafka",
        "demo": "services.demo",
        "operator": "orderflow_operator",
        "contracts": "services.devtools.contracts",
    }
    if argv and argv[0] in delegated:
        return _delegate(delegated[argv[0]], argv[1:])
    parser = argparse.ArgumentParser(prog="orderflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    run = sub.add_parser("run", help="run one service until SIGTERM")
    run.add_argument("service", choices=catalog.SERVICES)
    run.set_defaults(func=_run)
    sub.add_parser("demo", help="run the four services on a local broker and place a batch of orders")
    sub.add_parser("kafka", help="start|stop|status a local single-node Kafka broker")
    sub.add_parser("operator", help="run the OrderFlow Kubernetes operator (kopf)")
    sub.add_parser("contracts", help="verify the Pact message contracts and print the matrix")
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
