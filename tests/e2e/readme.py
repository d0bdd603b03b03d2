"""The README's "Run it on Kubernetes" commands, read from the README itself, so the suite runs what users read."""

from __future__ import annotations

import re

from tests.e2e import kube

README = kube.ROOT / "README.md"


def section(title: str = "Run it on Kubernetes") -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def bash_blocks(title: str = "Run it on Kubernetes") -> list[list[str]]:
    """Each ```bash block of the section as commands: comments dropped, backslash continuations joined."""
    blocks = []
    for body in re.findall(r"```bash\n(.*?)```", section(title), flags=re.S):
        commands: list[str] = []
        pending = ""
        for line in body.splitlines():
            line = re.sub(r"\s+#.*$", "", line) if not line.lstrip().startswith("#") else ""
            if not line.strip() and not pending:
                continue
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            commands.append((pending + line.strip()).strip())
            pending = ""
        blocks.append([c for c in commands if c])
    return blocks
