"""The ``orderflow`` command: run a service, the operator, and — from a checkout — the developer tooling.

The image carries the services and the operator only. ``demo``, ``kafka`` and ``contracts`` live in the
developer tooling (``orderflow_dev``, services/devtools in a checkout), so where it is not installed they say so,
and how to install it, instead of failing with an import error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from orderflow.events import catalog


@dataclass(frozen=True, slots=True)
class _Delegated:
    """A sub-command that owns its arguments: the module whose ``main(argv)`` runs it, and how to install it."""

    module: str
    install: str


DEV_INSTALL = "from an OrderFlow checkout: make venv (pip install -e '.[dev]' -e services/devtools)"
# Sub-commands that own their arguments are handed the rest of the command line untouched.
DELEGATED = {
    "contracts": _Delegated("orderflow_dev.contracts", DEV_INSTALL),
    "demo": _Delegated("orderflow_dev.demo", DEV_INSTALL),
    "kafka": _Delegated("orderflow_dev.kafka", DEV_INSTALL),
    "nats": _Delegated("orderflow_dev.nats", DEV_INSTALL),
    "operator": _Delegated("orderflow_operator", "pip install 'orderflow[operator]'"),
    "rabbitmq": _Delegated("orderflow_dev.rabbitmq", DEV_INSTALL),
}


def _run(args: argparse.Namespace) -> int:
    from orderflow.runtime import OrderFlowError, Service, config, logs

    try:
        settings = config.load(args.service)
    except OrderFlowError as e:
        print(f"orderflow run {args.service}: {e}", file=sys.stderr)
        return 2
    logs.configure(args.service, settings.log_level)
    definition = importlib.import_module(f"orderflow.{args.service}").definition
    try:
        Service(definition, settings).run_forever()
    except OrderFlowError as e:
        print(f"orderflow run {args.service}: {e}", file=sys.stderr)
        return 1
    return 0


def _delegate(command: str, argv: Sequence[str]) -> int:
    delegated = DELEGATED[command]
    try:
        module = importlib.import_module(delegated.module)
    except ModuleNotFoundError as e:
        # Only a missing tool is answered with the hint; a bug inside an installed one keeps its traceback.
        if e.name is None or not e.name.startswith(_TOOL_MODULES):
            raise
        print(f"orderflow {command}: not installed here (no module {e.name!r}); {delegated.install}", file=sys.stderr)
        return 2
    return int(module.main(list(argv)))


# Sub-commands that read the flow (orderflow.observe): part of the product, they own their arguments too.
OBSERVE = ("trace", "flow", "dlq")

# The top-level modules whose absence means "the tooling is not installed" rather than "the tooling is broken".
_TOOL_MODULES = ("orderflow_dev", "orderflow_operator", "pact", "kopf", "kubernetes", "yaml")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    if argv and argv[0] in OBSERVE:
        from orderflow.observe import cli as observe

        return observe.main(argv)
    parser = argparse.ArgumentParser(prog="orderflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    run = sub.add_parser("run", help="run one service until SIGTERM")
    run.add_argument("service", choices=catalog.SERVICES)
    run.set_defaults(func=_run)
    sub.add_parser("operator", help="run the OrderFlow Kubernetes operator (kopf)")
    sub.add_parser("trace", help="one order's whole story across the services, and where it waits")
    sub.add_parser("flow", help="stuck orders by stage, per-stage backlog and rate, dead letters")
    sub.add_parser("dlq", help="list|show|replay dead letters")
    sub.add_parser("demo", help="(dev tooling) run the four services on a local broker and place a batch of orders")
    sub.add_parser("kafka", help="(dev tooling) start|stop|status a local single-node Kafka broker")
    sub.add_parser("nats", help="(dev tooling) start|stop|status a local NATS server with JetStream")
    sub.add_parser("rabbitmq", help="(dev tooling) start|stop|status a local RabbitMQ node")
    sub.add_parser("contracts", help="(dev tooling) verify the Pact message contracts and print the matrix")
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
