"""The flow graph — who emits and who consumes which event — read from the pacts, and checked against the code.

The pacts are the reviewed statement of who depends on whom; the code is what actually runs. ``problems()``
compares the two: every event a service handles (its ``HANDLERS`` keys, which are also its subscriptions) must
be covered by a contract with the service that emits it, and every contract must name an event its consumer
handles and its provider really emits (found in the provider's source: ``tx.emit(catalog.X, ...)`` calls). The
catalog must agree with both. The Mermaid rendering goes into ``contracts/README.md``.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from orderflow.events import catalog
from orderflow_dev.contracts import pactfiles


@dataclass(frozen=True, slots=True, order=True)
class Edge:
    """``producer`` emits ``event_type`` on ``topic`` and ``consumer`` handles it."""

    producer: str
    event_type: str
    consumer: str
    topic: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.producer, self.event_type, self.consumer


def from_pacts(directory: Path = pactfiles.CONTRACTS_DIR) -> set[Edge]:
    """One edge per (provider, CloudEvent type, consumer) that some interaction of some pact describes."""
    edges: set[Edge] = set()
    for pact in pactfiles.load_all(directory):
        for interaction in pact.interactions:
            meta = interaction.get("metadata", {})
            edges.add(Edge(pact.provider, str(meta.get("ce_type", "?")), pact.consumer, str(meta.get("topic", ""))))
    return edges


def subscriptions() -> dict[str, set[str]]:
    """Per service, the event types it handles: its ``definition.handlers`` (what it subscribes to)."""
    return {s: set(importlib.import_module(f"orderflow.{s}").definition.handlers) for s in catalog.SERVICES}


@dataclass(frozen=True, slots=True)
class Emit:
    service: str
    event_type: str | None
    where: str


def emits(service: str) -> list[Emit]:
    """Every ``<tx>.emit(catalog.NAME, ...)`` call in the service's package; ``event_type`` None if not literal."""
    package = Path(importlib.import_module(f"orderflow.{service}").__file__ or "").parent
    found: list[Emit] = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "emit"):
                continue
            where = f"{path.relative_to(package.parent.parent)}:{node.lineno}"
            arg = node.args[0] if node.args else None
            if (
                isinstance(arg, ast.Attribute)
                and isinstance(arg.value, ast.Name)
                and arg.value.id == "catalog"
                and isinstance(getattr(catalog, arg.attr, None), str)
            ):
                found.append(Emit(service, getattr(catalog, arg.attr), where))
            else:
                found.append(Emit(service, None, where))
    return found


def publications() -> dict[str, set[str]]:
    """Per service, the event types its code emits."""
    return {s: {e.event_type for e in emits(s) if e.event_type} for s in catalog.SERVICES}


def problems(
    contracts: Iterable[Edge],
    *,
    consumes: Mapping[str, set[str]],
    publishes: Mapping[str, set[str]],
    unresolved: Iterable[Emit] = (),
) -> list[str]:
    """Every disagreement between the contracts, the code and the catalog; empty when the graph holds."""
    found = [f"{e.where}: {e.service} emits an event type that is not a catalog constant" for e in unresolved]
    edges = list(contracts)
    producers: dict[str, set[str]] = {}
    for service, types in publishes.items():
        for t in types:
            producers.setdefault(t, set()).add(service)
    for t, services in sorted(producers.items()):
        if t not in catalog.CATALOG:
            found.append(f"{', '.join(sorted(services))} emit(s) {t}, which is not in the event catalog")
        elif services != {catalog.get(t).producer}:
            found.append(f"{t} is emitted by {', '.join(sorted(services))}; the catalog says {catalog.get(t).producer}")
    for t, entry in catalog.CATALOG.items():
        handled = {s for s, types in consumes.items() if t in types}
        if handled != set(entry.consumers):
            found.append(
                f"{entry.name}: the catalog lists consumers {sorted(entry.consumers)}, "
                f"the code handles it in {sorted(handled)}"
            )
    for service, types in sorted(consumes.items()):
        for t in sorted(types):
            if not any(e.consumer == service and e.event_type == t for e in edges):
                found.append(f"{service} consumes {_name(t)} ({t}) but has no contract for it")
    for e in sorted(edges):
        if e.event_type not in consumes.get(e.consumer, set()):
            found.append(f"contract {e.consumer}-{e.producer}: {e.consumer} does not consume {_name(e.event_type)}")
        if e.event_type not in publishes.get(e.producer, set()):
            found.append(f"contract {e.consumer}-{e.producer}: {e.producer} never emits {_name(e.event_type)}")
    return found


def check(directory: Path = pactfiles.CONTRACTS_DIR) -> list[str]:
    """``problems()`` for the pacts in ``directory`` against the services' code."""
    unresolved = [e for s in catalog.SERVICES for e in emits(s) if e.event_type is None]
    return problems(from_pacts(directory), consumes=subscriptions(), publishes=publications(), unresolved=unresolved)


def _name(event_type: str) -> str:
    return catalog.CATALOG[event_type].name if event_type in catalog.CATALOG else event_type


def mermaid(edges: Iterable[Edge]) -> str:
    """A Mermaid flowchart: services as boxes, events as rounded nodes grouped by topic, arrows emit → consume."""
    edges = sorted(edges, key=lambda e: (_rank(e.producer), e.topic, _rank(e.event_type), _rank(e.consumer)))
    lines = ["flowchart LR"]
    services = sorted({e.producer for e in edges} | {e.consumer for e in edges}, key=_rank)
    lines += [f'  svc_{s}["{s}"]' for s in services]
    by_topic: dict[str, list[str]] = {}
    for e in edges:
        names = by_topic.setdefault(e.topic, [])
        if e.event_type not in names:
            names.append(e.event_type)
    for topic, types in by_topic.items():
        lines.append(f'  subgraph topic_{_ident(topic)}["{topic}"]')
        lines += [f'    ev_{_ident(_name(t))}(["{_name(t)}"])' for t in types]
        lines.append("  end")
    emitted = []
    for e in edges:
        arrow = f"  svc_{e.producer} --> ev_{_ident(_name(e.event_type))}"
        if arrow not in emitted:
            emitted.append(arrow)
    lines += emitted
    lines += [f"  ev_{_ident(_name(e.event_type))} --> svc_{e.consumer}" for e in edges]
    return "\n".join(lines) + "\n"


def _rank(name: str) -> tuple[int, str]:
    """Services and event types in the catalog's order (the saga's), unknown names last."""
    order = [*catalog.SERVICES, *catalog.CATALOG]
    return (order.index(name) if name in order else len(order)), name


def _ident(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)
