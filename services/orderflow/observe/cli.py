"""``orderflow trace``, ``orderflow flow`` and ``orderflow dlq``: the commands that read the flow.

Each reads Kafka and the services' APIs from the same ``ORDERFLOW_*`` variables the services use (see
``target``); ``--json`` prints the same content for scripts. Exit codes: 0 done, 1 the flow could not be read
(broker or API unreachable), 2 bad usage; ``dlq replay`` exits 3 when it refused a selected dead letter.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from types import ModuleType

from orderflow.errors import OrderFlowError
from orderflow.events import catalog
from orderflow.events.event import ORDER_ID_PATTERN
from orderflow.observe import deadletters, target
from orderflow.observe.reader import Reader


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default $ORDERFLOW_KAFKA_BOOTSTRAP)")
    parser.add_argument("--prefix", help="topic prefix (default $ORDERFLOW_TOPIC_PREFIX or orderflow)")
    for service in catalog.SERVICES:
        parser.add_argument(f"--{service}-url", dest=f"url_{service}", metavar="URL",
                            help=f"{service} service API (default ${target.url_variable(service)} or 127.0.0.1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _target(args: argparse.Namespace) -> target.Target:
    urls = {s: getattr(args, f"url_{s}") for s in catalog.SERVICES if getattr(args, f"url_{s}", None)}
    return target.from_env(bootstrap=args.bootstrap, prefix=args.prefix, urls=urls)


def _dump(payload: object) -> None:
    print(json.dumps(payload, indent=2, default=str))


def _render() -> ModuleType:
    """The table renderer (rich), imported only when tables are printed: ``--json`` does without it."""
    from orderflow.observe import render

    return render


def _trace(args: argparse.Namespace) -> int:
    from orderflow.observe import trace

    if not ORDER_ID_PATTERN.fullmatch(args.order_id):
        print(f"orderflow trace: {args.order_id!r} is not an order id (ord_ followed by 32 hex digits)",
              file=sys.stderr)
        return 2
    flow = _target(args)
    with Reader(flow.kafka) as reader:
        story = trace.trace(flow, args.order_id, reader=reader, full_scan=args.full_scan, margin_s=args.margin)
    if args.json:
        _dump(story.to_json())
    else:
        _render().print_trace(story)
    return 0


def _flow(args: argparse.Namespace) -> int:
    from orderflow.observe import flow

    where = _target(args)
    with Reader(where.kafka) as reader:
        report = flow.report(where, reader, stuck_after_seconds=args.stuck_after, interval=args.interval)
    if args.json:
        _dump(report.to_json())
    else:
        _render().print_flow(report)
    return 1 if report.errors else 0


def _selection(args: argparse.Namespace) -> deadletters.Selection:
    return deadletters.Selection(
        services=args.service or (), reasons=args.reason or (), orders=args.order or (), positions=args.at or ()
    )


def _dlq(args: argparse.Namespace) -> int:
    where = _target(args)
    services = args.service or catalog.SERVICES
    with Reader(where.kafka) as reader:
        letters = deadletters.select(deadletters.read(reader, where.prefix, services), _selection(args))
    if args.action == "list":
        if args.json:
            _dump([x.summary() for x in letters])
        else:
            _render().print_letters(letters)
        return 0
    if args.action == "show":
        if not letters:
            print("orderflow dlq show: no dead letter matches", file=sys.stderr)
            return 1
        if args.json:
            _dump([x.full() for x in letters])
        else:
            for x in letters:
                _render().print_letter(x)
        return 0
    if not (args.all or args.service or args.reason or args.order or args.at):
        print("orderflow dlq replay: say which (--service, --reason, --order, --at) or --all", file=sys.stderr)
        return 2
    outcomes = deadletters.plan(letters, max_replays=args.max_replays)
    if not args.dry_run:
        deadletters.replay(outcomes, config=where.kafka)
    if args.json:
        _dump([o.to_json() for o in outcomes])
    else:
        _render().print_outcomes(outcomes, dry_run=args.dry_run)
    refused = [o for o in outcomes if not o.replayed and "superseded" not in o.why]
    return 3 if refused else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="orderflow", add_help=False)
    sub = top.add_subparsers(dest="command", required=True)
    t = sub.add_parser("trace", help="one order's whole story across the services, and where it waits")
    t.add_argument("order_id")
    t.add_argument("--full-scan", action="store_true",
                   help="read the order's partitions from their start to their end, not only its lifetime")
    t.add_argument("--margin", type=float, default=5.0, metavar="S",
                   help="clock margin around the order's lifetime when reading topics (default %(default)s)")
    _common(t)
    t.set_defaults(func=_trace)
    f = sub.add_parser("flow", help="stuck orders by stage, per-stage backlog and rate, dead letters")
    f.add_argument("--stuck-after", type=int, default=60, metavar="S",
                   help="an in-flight order older than this is stuck (default %(default)s)")
    f.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="between the two offset readings the rates come from (default %(default)s)")
    _common(f)
    f.set_defaults(func=_flow)
    d = sub.add_parser("dlq", help="list, show or replay dead letters")
    d.add_argument("action", choices=["list", "show", "replay"])
    d.add_argument("--service", action="append", choices=catalog.SERVICES, help="only this service's (repeatable)")
    d.add_argument("--reason", action="append", help="only this reason (repeatable)")
    d.add_argument("--order", action="append", metavar="ORDER_ID", help="only this order's (repeatable)")
    d.add_argument("--at", action="append", metavar="TOPIC:PARTITION:OFFSET",
                   help="only the dead letter at this DLQ position (repeatable)")
    d.add_argument("--all", action="store_true", help="replay: every dead letter selected (needed without a filter)")
    d.add_argument("--max-replays", type=int, default=deadletters.MAX_REPLAYS, metavar="N",
                   help="replay: refuse a message already replayed N times (default %(default)s)")
    d.add_argument("--dry-run", action="store_true", help="replay: say what would be replayed, replay nothing")
    _common(d)
    d.set_defaults(func=_dlq)
    return top


def main(argv: Sequence[str]) -> int:
    """``argv`` starts with the command: ``trace ...``, ``flow ...`` or ``dlq ...``."""
    args = parser().parse_args(list(argv))
    try:
        return int(args.func(args))
    except OrderFlowError as e:
        print(f"orderflow {args.command}: {e}", file=sys.stderr)
        return 1
