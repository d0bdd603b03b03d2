"""Which package may import which (README.md, Architecture), checked on the source rather than trusted.

Every import statement counts, including those under ``if TYPE_CHECKING:``: a type-only cycle is still a
cycle a reader has to untangle (issue 14: consumer -> definition -> service -> consumer).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOTS = {"orderflow": Path("services/orderflow"), "orderflow_dev": Path("services/devtools/orderflow_dev"),
         "orderflow_operator": Path("operator/orderflow_operator")}
SERVICES = ("order", "inventory", "billing", "shipping")


def _modules() -> dict[str, Path]:
    found = {}
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """The project modules ``name`` imports: ``from pkg import sub`` names the submodule when there is one."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    yield f"{base}.{alias.name}"
                elif base in MODULES:
                    yield base


GRAPH = {name: set(_imports(name, path)) - {name} for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read() -> None:
    assert "orderflow.runtime.consumer" in GRAPH["orderflow.runtime.service"]
    assert "orderflow.runtime.context" in GRAPH["orderflow.runtime.definition"]


def test_no_import_cycle_not_even_a_type_only_one() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_the_product_never_imports_the_developer_tooling() -> None:
    offenders = {m: sorted(i for i in GRAPH[m] if i.startswith("orderflow_dev"))
                 for m in GRAPH if not m.startswith("orderflow_dev")}
    assert not {m: i for m, i in offenders.items() if i}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_never_imports_another_and_the_shared_code_never_imports_a_service(service: str) -> None:
    own = f"orderflow.{service}"
    others = tuple(f"orderflow.{s}" for s in SERVICES if s != service)
    for module in (m for m in GRAPH if m == own or m.startswith(own + ".")):
        assert not [i for i in GRAPH[module] if i.startswith(others)], module
    shared = [m for m in GRAPH if m.startswith(("orderflow.runtime", "orderflow.events", "orderflow.errors"))]
    for module in shared:
        assert not [i for i in GRAPH[module] if i == own or i.startswith(own + ".")], module


# What each part may import of the project besides itself (README.md, Architecture).
ALLOWED = {
    "orderflow.errors": (),
    "orderflow.events": ("orderflow.errors", "orderflow.transport"),
    "orderflow.runtime": ("orderflow.errors", "orderflow.events", "orderflow.transport"),
    # The transports: the seam's types, the errors, the settings they are configured by, the log's rate limit (a
    # leaf module: the standard library only), and the event catalog (channel names, who consumes what).
    "orderflow.transport": (
        "orderflow.errors",
        "orderflow.runtime.config",
        "orderflow.runtime.logs",
        "orderflow.events",
    ),
    **{f"orderflow.{s}": ("orderflow.errors", "orderflow.events", "orderflow.runtime") for s in SERVICES},
    "orderflow_operator": ("orderflow.errors",),
    # The commands that read the flow: the event catalog, the runtime's config and DLQ format, and the operator's
    # Kafka and flow-health readers (reused, not copied); never a service.
    "orderflow.observe": ("orderflow.errors", "orderflow.events", "orderflow.runtime", "orderflow_operator"),
}


def _within(module: str, part: str) -> bool:
    return module == part or module.startswith(part + ".")


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_what_the_architecture_allows(part: str) -> None:
    allowed = (part, *ALLOWED[part])
    offenders = {m: sorted(i for i in GRAPH[m] if not any(_within(i, a) for a in allowed))
                 for m in GRAPH if _within(m, part)}
    assert not {m: i for m, i in offenders.items() if i}


BROKER_CLIENTS = ("confluent_kafka", "nats", "pika", "aio_pika", "aiormq")


def _third_party_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_the_runtime_core_imports_no_broker_client_and_no_transport_package() -> None:
    """The seam (issue 12): the runtime and the events talk to ``orderflow.transport``'s interface only."""
    for name, path in MODULES.items():
        if _within(name, "orderflow.runtime") or _within(name, "orderflow.events"):
            assert not _third_party_imports(path) & set(BROKER_CLIENTS), name
            assert not [i for i in GRAPH[name] if i.startswith("orderflow.transport.")], name


@pytest.mark.parametrize("transport", ["kafka", "nats", "rabbitmq", "memory"])
def test_each_broker_client_is_imported_by_its_own_transport_package_only(transport: str) -> None:
    client = {"kafka": "confluent_kafka", "nats": "nats", "rabbitmq": "pika"}.get(transport)
    package = f"orderflow.transport.{transport}"
    assert package in MODULES
    for name, path in MODULES.items():
        if name.startswith("orderflow.transport.") and not _within(name, package) and client:
            assert client not in _third_party_imports(path), f"{name} imports {client}"
