"""Everything in ``contracts/`` that is generated, regenerated together, and checked for drift.

The pacts come from the consumers' expectations (run through their real code), the AsyncAPI document from the
catalog, the services' OpenAPI documents from their routes (``openapi/<service>.json``), and the flow graph in
``contracts/README.md`` from the pacts. Committed copies are what reviewers see and what provider verification
and Pact Broker publishing use; ``drift()`` regenerates everything into a scratch directory and reports each
committed file whose contract content differs, so a changed consumer expectation is always a reviewed change.
"""

from __future__ import annotations

import difflib
import json
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from orderflow.events import catalog
from orderflow_dev.contracts import asyncapi, consumer, expectations, graph, openapidocs, pactfiles

ASYNCAPI_FILE: Final = "asyncapi.yaml"
README_FILE: Final = "README.md"
BEGIN: Final = "<!-- BEGIN GENERATED: orderflow contracts generate -->"
END: Final = "<!-- END GENERATED -->"
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)


def summary(pacts: Iterable[pactfiles.PactFile]) -> str:
    """The pairs table: consumer, provider, interaction count and the event types they cover."""
    rows = ["| consumer | provider | interactions | events |", "|---|---|---:|---|"]
    total = 0
    for pact in sorted(pacts, key=lambda p: (p.consumer, p.provider)):
        types = sorted({str(i.get("metadata", {}).get("ce_type")) for i in pact.interactions}, key=_catalog_order)
        names = ", ".join(catalog.CATALOG[t].name if t in catalog.CATALOG else t for t in types)
        rows.append(f"| {pact.consumer} | {pact.provider} | {len(pact.interactions)} | {names} |")
        total += len(pact.interactions)
    rows.append(f"| **{len(rows) - 2} pairs** | | **{total}** | |")
    return "\n".join(rows) + "\n"


def _catalog_order(event_type: str) -> tuple[int, str]:
    types = list(catalog.CATALOG)
    return (types.index(event_type) if event_type in types else len(types)), event_type


def block(directory: Path) -> str:
    """The generated part of contracts/README.md for the pacts in ``directory``."""
    pacts = list(pactfiles.load_all(directory))
    return f"{BEGIN}\n```mermaid\n{graph.mermaid(graph.from_pacts(directory))}```\n\n{summary(pacts)}{END}"


def render_readme(text: str, directory: Path) -> str:
    if not _BLOCK.search(text):
        raise ValueError(f"the README has no generated block ({BEGIN} ... {END})")
    return _BLOCK.sub(lambda _m: block(directory), text, count=1)


def generate(directory: Path = pactfiles.CONTRACTS_DIR, *, readme_from: Path | None = None) -> list[Path]:
    """Regenerate the pacts, the AsyncAPI and OpenAPI documents and the README's graph in ``directory``.

    Pact files of pairs that no longer exist are removed. The README is rewritten from ``readme_from`` (default:
    the one in ``directory``), keeping everything outside the generated block.
    """
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {pactfiles.pact_path(directory, c, p) for c, p in expectations.pairs()}
    for stale in set(directory.glob("*-*.json")) - wanted:
        stale.unlink()
    written = consumer.generate(directory)
    written.append(asyncapi.write(directory / ASYNCAPI_FILE))
    written += openapidocs.write(directory)
    source = readme_from or directory / README_FILE
    readme = directory / README_FILE
    readme.write_text(render_readme(source.read_text(), directory))
    written.append(readme)
    return written


def _pact_text(path: Path) -> str:
    return pactfiles.dumps(pactfiles.normalise(json.loads(path.read_text())))


def _diff(committed: Path, fresh: Path, name: str, *, pact: bool) -> list[str]:
    if not committed.is_file():
        return [f"{name}: not committed (run `orderflow contracts generate`)"]
    old = _pact_text(committed) if pact else committed.read_text()
    new = _pact_text(fresh) if pact else fresh.read_text()
    if old == new:
        return []
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), f"committed/{name}", f"regenerated/{name}", lineterm="", n=2
    )
    return [f"{name} differs from what the code generates:\n" + "\n".join(list(lines)[:60])]


def drift(directory: Path = pactfiles.CONTRACTS_DIR) -> list[str]:
    """Regenerate into a scratch directory; one entry per committed file that is stale, missing or extra."""
    with tempfile.TemporaryDirectory(prefix="contracts-drift-") as scratch:
        fresh = Path(scratch)
        generate(fresh, readme_from=directory / README_FILE)
        problems: list[str] = []
        names = sorted({p.name for p in fresh.glob("*-*.json")} | {p.name for p in directory.glob("*-*.json")})
        for name in names:
            if not (fresh / name).is_file():
                problems.append(f"{name}: committed, but no consumer expects it any more (delete it)")
                continue
            problems += _diff(directory / name, fresh / name, name, pact=True)
        problems += _diff(directory / ASYNCAPI_FILE, fresh / ASYNCAPI_FILE, ASYNCAPI_FILE, pact=False)
        for service in catalog.SERVICES:
            name = f"{openapidocs.OPENAPI_DIR}/{service}.json"
            problems += _diff(directory / name, fresh / name, name, pact=False)
        problems += _diff(directory / README_FILE, fresh / README_FILE, README_FILE, pact=False)
        return problems
