"""Pact files on disk: where they live, how they are read, and the normal form that makes regeneration stable.

The FFI writes interactions in the order they were added and stamps its own version into the file; neither says
anything about the contract. The normal form sorts interactions (by description, then provider states) and drops
the writer's version stamp, so "regenerated == committed" compares contracts and nothing else.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

# The checkout's contracts/ directory, relative to the working directory (the commands and the tests run at the
# checkout's root; every command takes the directory as an option too). Never derived from where a package is
# installed: an installed copy would otherwise read the pacts next to itself, not the user's.
CONTRACTS_DIR: Final = Path("contracts")


def pact_path(directory: Path, consumer: str, provider: str) -> Path:
    return directory / f"{consumer}-{provider}.json"


def _interaction_key(interaction: dict[str, Any]) -> tuple[str, str]:
    return interaction.get("description", ""), json.dumps(interaction.get("providerStates", []), sort_keys=True)


def normalise(document: dict[str, Any]) -> dict[str, Any]:
    """The contract content of a pact document: interactions sorted, the writer's version stamp removed."""
    doc = copy.deepcopy(document)
    doc.get("metadata", {}).pop("pactRust", None)
    doc["interactions"] = sorted(doc.get("interactions", []), key=_interaction_key)
    return doc


def dumps(document: dict[str, Any]) -> str:
    """The committed text form: sorted keys, two-space indent, one trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def merge(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """One pact from several single-interaction pacts of the same pair, interactions in their normal order."""
    merged = copy.deepcopy(documents[0])
    merged["interactions"] = sorted((i for d in documents for i in d["interactions"]), key=_interaction_key)
    return merged


@dataclass(frozen=True, slots=True)
class PactFile:
    path: Path
    consumer: str
    provider: str
    document: dict[str, Any]

    @property
    def interactions(self) -> list[dict[str, Any]]:
        return list(self.document.get("interactions", []))


def load(path: Path) -> PactFile:
    document = json.loads(path.read_text())
    return PactFile(path, document["consumer"]["name"], document["provider"]["name"], document)


def load_all(directory: Path) -> Iterator[PactFile]:
    """Every pact file in ``directory`` (files whose name has the ``<consumer>-<provider>.json`` form)."""
    for path in sorted(directory.glob("*-*.json")):
        yield load(path)
