"""Tables for a terminal (rich); the commands' ``--json`` gives the same content to scripts."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orderflow.events import catalog
from orderflow.observe import deadletters, flow, trace


def console() -> Console:
    # On a pipe, a wide fixed width: a line of a table is one line of text, for grep and for tests.
    return Console(width=None if sys.stdout.isatty() else 220, highlight=False, soft_wrap=False)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def _delay(ms: int | None) -> str:
    if ms is None:
        return ""
    return f"+{ms} ms" if ms < 10_000 else f"+{ms / 1000:.1f} s"


def _view_line(service: str, view: dict[str, Any]) -> str:
    body = view.get("body")
    if view.get("error"):
        return f"unreachable ({view['error']})"
    if view.get("status") == 404 or not isinstance(body, dict):
        return "has not seen the order"
    if service == "order":
        extra = f", compensated={body.get('compensated')}" if body.get("status") == "CANCELLED" else ""
        reason = f" ({body['reason']})" if body.get("reason") else ""
        return f"{body.get('status')}{reason}; stock {body.get('stock')}, payment {body.get('payment')}{extra}"
    if service == "shipping":
        decided = body.get("outcome") or "undecided"
        reason = f" ({body['reason']})" if body.get("reason") else ""
        return f"{decided}{reason}; heard stock {body.get('stock') or '-'}, payment {body.get('payment') or '-'}"
    reason = f" ({body['reason']})" if body.get("reason") else ""
    what = "reservation" if service == "inventory" else "payment"
    return f"{what} {body.get('state')}{reason}"


def print_trace(story: trace.Trace) -> None:
    out = console()
    status = story.status or "unknown to the order service"
    out.print(f"[bold]{escape(story.order_id)}[/bold]  {escape(status)}   trace {', '.join(story.trace_ids) or '-'}")
    table = Table(title="events", title_justify="left")
    for column in ("time", "delay", "event", "producer", "position", "id", "dup"):
        table.add_column(column)
    for hop in story.events:
        name = escape(hop.name) + (f" [red](poison: {escape(hop.poison)})[/red]" if hop.poison else "")
        table.add_row(_when(hop.timestamp_ms), _delay(hop.delay_ms), name, escape(hop.producer),
                      escape(hop.position), escape(hop.id), str(hop.duplicates) if hop.duplicates else "")
    out.print(table)
    views = Table(title="each service's view", title_justify="left")
    views.add_column("service")
    views.add_column("says")
    for service, view in story.views.items():
        views.add_row(service, escape(_view_line(service, view)))
    out.print(views)
    if story.dead_letters:
        out.print(letters_table(story.dead_letters, title="dead letters"))
    if story.waits:
        out.print("[bold yellow]where it waits[/bold yellow]")
        for wait in story.waits:
            out.print(f"  {escape(wait.sentence())}")
    elif story.terminal:
        out.print("[green]settled: nothing is waiting[/green]")
    scanned = sum(story.scanned.values())
    out.print(f"[dim]{scanned:,} messages read in {story.seconds * 1000:.0f} ms[/dim]")


def letters_table(letters: list[deadletters.Letter], *, title: str = "dead letters") -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("position", "service", "reason", "order", "event", "from", "replays", "detail"):
        table.add_column(column)
    for x in letters:
        name = catalog_name(x.event_type)
        cells = (x.position, x.service, x.reason, x.key or "", name, x.origin, str(x.replays), x.detail[:120])
        table.add_row(*(escape(c) for c in cells))
    return table


def catalog_name(event_type: str | None) -> str:
    if event_type is None:
        return ""
    return catalog.CATALOG[event_type].name if event_type in catalog.CATALOG else event_type


def print_letters(letters: list[deadletters.Letter]) -> None:
    out = console()
    out.print(letters_table(letters))
    by: dict[tuple[str, str], int] = {}
    for x in letters:
        by[(x.service, x.reason)] = by.get((x.service, x.reason), 0) + 1
    out.print(escape("  ".join(f"{s}/{r}: {n}" for (s, r), n in sorted(by.items())) or "no dead letters"))


def print_letter(letter: deadletters.Letter) -> None:
    out = console()
    out.print(json.dumps(letter.full(), indent=2), markup=False)


def print_outcomes(outcomes: list[deadletters.Outcome], *, dry_run: bool) -> None:
    out = console()
    for o in outcomes:
        verb = ("would replay" if dry_run else "replayed") if o.replayed else "skipped"
        out.print(f"{verb} {o.letter.position} ({o.letter.service}, {o.letter.reason}): {o.why}", markup=False)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}/s"


def print_flow(report: flow.FlowReport) -> None:
    out = console()
    if report.in_flight is not None:
        oldest = report.oldest_in_flight_age_seconds
        out.print(f"in flight {report.in_flight}, oldest {oldest:.1f} s" if oldest is not None
                  else f"in flight {report.in_flight}", end="")
        out.print(f", stuck (older than {report.stuck_after_seconds} s) {report.stuck}")
    table = Table(title="stages", title_justify="left")
    for column in ("stage", "group", "backlog", "arriving", "consumed", "topics"):
        table.add_column(column)
    for s in report.stages:
        table.add_row(s.service, escape(s.group), "?" if s.lag is None else f"{s.lag:,}", _rate(s.arrival_per_s),
                      _rate(s.consume_per_s), escape(s.error or ", ".join(s.topics)))
    out.print(table)
    if report.stuck_by_stage:
        stuck = Table(title="stuck orders by the stage they wait on", title_justify="left")
        stuck.add_column("waiting on")
        stuck.add_column("orders")
        stuck.add_column("")
        for stage, ids in report.stuck_by_stage.items():
            stuck.add_row(escape(stage), str(len(ids)), " ".join(ids[:5]) + (" ..." if len(ids) > 5 else ""))
        out.print(stuck)
    dead = escape("  ".join(f"{s}/{r}: {n}" for s, reasons in report.dead_letters.items() for r, n in reasons.items()))
    out.print(f"dead letters: {dead or 'none'}")
    for problem in report.errors:
        out.print(f"[red]{escape(problem)}[/red]")
