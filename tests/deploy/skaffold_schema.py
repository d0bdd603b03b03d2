"""skaffold's own JSON Schema for a ``skaffold.yaml`` apiVersion, from skaffold's Go module (cached).

The schemas ship in ``github.com/GoogleContainerTools/skaffold/v2`` under ``docs-v2/content/en/schemas/``; the Go
module proxy serves the module's zip (``go mod download``), from which the one schema file is read and cached under
``${ORDERFLOW_CACHE:-~/.cache/orderflow}/skaffold/<version>/``. ``python -m tests.deploy.skaffold_schema`` prefetches.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

MODULE = "github.com/GoogleContainerTools/skaffold/v2"
# v2.16.1's newest config version is skaffold/v4beta13 (pkg/skaffold/schema/latest), what skaffold.yaml uses.
VERSION = "v2.16.1"
SCHEMAS = "docs-v2/content/en/schemas"


def cache_dir() -> Path:
    root = os.environ.get("ORDERFLOW_CACHE") or str(Path.home() / ".cache" / "orderflow")
    return Path(root) / "skaffold" / VERSION


def schema(api_version: str) -> dict[str, Any]:
    """The JSON Schema of ``skaffold/<v>`` (e.g. ``skaffold/v4beta13``), downloading skaffold's module once."""
    name = api_version.removeprefix("skaffold/") + ".json"
    cached = cache_dir() / name
    if not cached.exists():
        go = shutil.which("go")
        if go is None:
            raise RuntimeError("`go` is not on PATH: it fetches skaffold's schemas from the Go module proxy")
        result = subprocess.run([go, "mod", "download", "-json", f"{MODULE}@{VERSION}"], capture_output=True,
                                text=True, timeout=600,
                                env={**os.environ, "GOFLAGS": "-mod=mod"})
        if result.returncode != 0:
            raise RuntimeError(f"go mod download {MODULE}@{VERSION} failed:\n{result.stdout}\n{result.stderr}")
        archive = json.loads(result.stdout)["Zip"]
        with zipfile.ZipFile(archive) as zipped:
            member = next((n for n in zipped.namelist() if n.endswith(f"/{SCHEMAS}/{name}")), None)
            if member is None:
                raise RuntimeError(f"{MODULE}@{VERSION} has no {SCHEMAS}/{name}: skaffold {VERSION} does not know "
                                   f"{api_version}")
            data = zipped.read(member)
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".tmp")
        partial.write_bytes(data)
        partial.replace(cached)
    loaded: dict[str, Any] = json.loads(cached.read_text())
    return loaded


if __name__ == "__main__":
    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "skaffold.yaml").read_text())
    schema(doc["apiVersion"])
    print(f"skaffold schema for {doc['apiVersion']}: {cache_dir()}", file=sys.stderr)
