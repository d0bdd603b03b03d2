"""``orderflow contracts``: a can-i-deploy view without a broker, and the generators of ``contracts/``.

``verify`` answers "can these versions of the four services run together?" from the repository alone: for every
(consumer, provider) pair it re-runs the consumer's expectations through its real code and checks the committed
pact still says the same (so the consumer has not silently changed what it needs), then verifies the committed
pact against the provider's real code. It prints the consumer x provider matrix and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orderflow.events import catalog
from orderflow_dev.contracts import (
    artifacts,
    asyncapi,
    consumer,
    expectations,
    graph,
    pactfiles,
    verification,
)


@dataclass
class Cell:
    consumer: str
    provider: str
    interactions: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.problems


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Keep the Pact core's own report (it writes to the process's stdout) and relay logs off the terminal."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _consumer_side(cell: Cell, pact_dir: Path) -> None:
    committed = pactfiles.pact_path(pact_dir, cell.consumer, cell.provider)
    with tempfile.TemporaryDirectory(prefix="contracts-verify-") as scratch:
        try:
            [fresh] = consumer.generate(Path(scratch), only=[(cell.consumer, cell.provider)])
        except consumer.ConsumerContractError as e:
            cell.problems.append(f"consumer side: {e}")
            return
        if not committed.is_file():
            cell.problems.append(f"no committed pact {committed.name} (run `orderflow contracts generate`)")
            return
        old = pactfiles.normalise(json.loads(committed.read_text()))
        if old != pactfiles.normalise(json.loads(fresh.read_text())):
            cell.problems.append(
                f"{cell.consumer}'s expectations changed since {committed.name} was generated "
                "(run `orderflow contracts generate` and review the diff)"
            )


def verify(args: argparse.Namespace) -> int:
    pact_dir: Path = args.pacts
    present = {(p.consumer, p.provider) for p in pactfiles.load_all(pact_dir)}
    wanted = sorted(set(expectations.pairs()) | present)
    wanted = [
        (c, p)
        for c, p in wanted
        if (not args.provider or p in args.provider) and (not args.consumer or c in args.consumer)
    ]
    cells = {(c, p): Cell(c, p) for c, p in wanted}
    with _quiet(not args.verbose):
        if not args.provider_only:
            for cell in cells.values():
                if (cell.consumer, cell.provider) in set(expectations.pairs()):
                    _consumer_side(cell, pact_dir)
                else:
                    cell.problems.append("a pact file no consumer expectation generates (stale: delete it)")
        for provider in sorted({p for _, p in wanted}):
            names = [c for c, p in wanted if p == provider]
            for result in verification.verify_provider(provider, consumers=names, pact_dir=pact_dir):
                cell = cells[(result.consumer, result.provider)]
                cell.interactions = result.interactions
                if not result.verified:
                    cell.problems += [f"provider side: {m}" for m in result.mismatches] or ["provider side: failed"]
    _print_matrix(cells, pact_dir)
    return 0 if all(c.verified for c in cells.values()) else 1


def _print_matrix(cells: dict[tuple[str, str], Cell], pact_dir: Path) -> None:
    services = list(catalog.SERVICES)
    width = 16
    total = sum(c.interactions for c in cells.values())
    print(f"Pact verification of {pact_dir}: {len(cells)} pair(s), {total} interaction(s)\n")
    print(("consumer \\ provider".ljust(22) + "".join(s.ljust(width) for s in services)).rstrip())
    for c in services:
        row = [c.ljust(22)]
        for p in services:
            cell = cells.get((c, p))
            text = "-" if cell is None else (f"verified ({cell.interactions})" if cell.verified else "FAILED")
            row.append(text.ljust(width))
        print("".join(row).rstrip())
    failed = [cell for cell in cells.values() if not cell.verified]
    for cell in failed:
        print(f"\nFAILED {cell.consumer} (consumer) x {cell.provider} (provider):")
        for problem in cell.problems:
            print("  " + problem.replace("\n", "\n  "))
    print(f"\n{'all pairs verified' if not failed else f'{len(failed)} pair(s) failed'}")


def generate(args: argparse.Namespace) -> int:
    with _quiet(not args.verbose):
        written = artifacts.generate(args.dir)
    for path in written:
        print(f"wrote {path}")
    return 0


def drift(args: argparse.Namespace) -> int:
    with _quiet(not args.verbose):
        problems = artifacts.drift(args.dir)
    for problem in problems:
        print(problem)
    print("contracts/ is up to date" if not problems else f"{len(problems)} stale file(s)")
    return 1 if problems else 0


def show_graph(args: argparse.Namespace) -> int:
    print(graph.mermaid(graph.from_pacts(args.pacts)), end="")
    if not args.check:
        return 0
    problems = graph.check(args.pacts)
    for problem in problems:
        print(f"graph: {problem}", file=sys.stderr)
    return 1 if problems else 0


def show_asyncapi(args: argparse.Namespace) -> int:
    if not args.validate:
        print(asyncapi.dumps(asyncapi.document()), end="")
        return 0
    try:
        result = asyncapi.validate(args.file)
    except asyncapi.ValidatorUnavailable as e:
        print(f"orderflow contracts asyncapi: {e}", file=sys.stderr)
        return 2
    print(result.output)
    return 0 if result.valid else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderflow contracts", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    default = pactfiles.CONTRACTS_DIR

    v = sub.add_parser("verify", help="verify every consumer x provider pair and print the matrix")
    v.add_argument("--pacts", type=Path, default=default, help="directory of pact files (default: %(default)s)")
    v.add_argument("--provider", action="append", choices=catalog.SERVICES, help="only this provider (repeatable)")
    v.add_argument("--consumer", action="append", choices=catalog.SERVICES, help="only this consumer (repeatable)")
    v.add_argument(
        "--provider-only",
        action="store_true",
        help="skip re-running the consumers' expectations (verify the pact files as they are)",
    )
    v.add_argument("-v", "--verbose", action="store_true", help="show the Pact verifier's own report")
    v.set_defaults(func=verify)

    g = sub.add_parser("generate", help="regenerate the pacts, asyncapi.yaml, openapi/*.json and the README graph")
    g.add_argument("--dir", type=Path, default=default, help="contracts directory (default: %(default)s)")
    g.add_argument("-v", "--verbose", action="store_true")
    g.set_defaults(func=generate)

    d = sub.add_parser("drift", help="fail when the committed contracts/ differ from what the code generates")
    d.add_argument("--dir", type=Path, default=default, help="contracts directory (default: %(default)s)")
    d.add_argument("-v", "--verbose", action="store_true")
    d.set_defaults(func=drift)

    gr = sub.add_parser("graph", help="print the flow graph (Mermaid) read from the pacts")
    gr.add_argument("--pacts", type=Path, default=default)
    gr.add_argument("--check", action="store_true", help="also compare it with the services' code; exit 1 if off")
    gr.set_defaults(func=show_graph)

    a = sub.add_parser("asyncapi", help="print the AsyncAPI 3.0 document of the catalog, or --validate a file")
    a.add_argument("--validate", action="store_true", help="validate --file with @asyncapi/parser")
    a.add_argument("--file", type=Path, default=default / artifacts.ASYNCAPI_FILE)
    a.set_defaults(func=show_asyncapi)
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``orderflow contracts``; returns the exit status."""
    os.environ["PACT_DO_NOT_TRACK"] = "true"
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, usage errors
        return e.code if isinstance(e.code, int) else 2
    status: int = args.func(args)
    return status
