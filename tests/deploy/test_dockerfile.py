"""The Dockerfile: hadolint-clean, multi-stage, pinned, non-root, and built from a context that holds what it needs.

No Docker engine runs here, so the image itself is not built; what can be checked without one is: hadolint, the
Dockerfile's structure, and that the build context left by .dockerignore contains every file the Dockerfile
copies and builds into a wheel whose ``orderflow`` command is the one the charts run.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.deploy import charts

ROOT = charts.ROOT
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_every_ignored_hadolint_rule_is_justified() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert re.search(r"hadolint ignore=\S+\s+\S", line) or lines[i - 1].startswith("#"), (
                f"line {i + 1}: an ignored rule needs a reason on the line or the line above")


def test_multi_stage_pinned_slim_base_non_root_and_one_entrypoint() -> None:
    instructions = _instructions()
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    froms = [a.replace("${PYTHON_IMAGE}", args.get("PYTHON_IMAGE", "")) for k, a in instructions if k == "FROM"]
    assert len(froms) >= 2, "a builder stage and a final stage"
    for image in froms:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+( AS \w+)?", image), f"unpinned or not slim: {image}"
    final = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM"):]
    user = [a for k, a in final if k == "USER"]
    assert user and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", user[-1]), "numeric non-root USER in the final image"
    assert not [a for k, a in final if k == "RUN"], "the final image installs nothing: it copies the virtualenv"
    assert [a for k, a in final if k == "COPY"] == ["--from=builder /opt/orderflow /opt/orderflow"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert [a for k, a in final if k == "ENTRYPOINT"] == ['["orderflow"]'] and "orderflow" in scripts


def _dockerignore_context() -> list[Path]:
    """The files Docker sends as the build context: .dockerignore's patterns in order, ``!`` re-includes."""
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    kept: list[Path] = []
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT).as_posix()
        if path.is_dir() or rel.startswith((".git/", ".venv/")):
            continue
        included = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            parts = rel.split("/")
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            matched = any(fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p, pat.replace("**/", "*/"))
                          for p in prefixes) or (pat.startswith("**/") and any(
                              fnmatch.fnmatchcase(part, pat[3:]) for part in parts))
            if matched:
                included = negate
        if included:
            kept.append(path)
    return kept


@pytest.fixture(scope="module")
def image_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the image installs: ``pip wheel`` (non-editable, no extras) of the build context .dockerignore
    leaves, after checking that context holds every file the Dockerfile copies."""
    tmp_path = tmp_path_factory.mktemp("image")
    context = tmp_path / "context"
    files = _dockerignore_context()
    for path in files:
        target = context / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    copied = [a.split()[0] for k, a in _instructions() if k == "COPY" and not a.startswith("--from")]
    for source in copied:
        assert (context / source).exists(), f"COPY {source}: not in the build context (.dockerignore)"
    assert not (context / "tests").exists() and not (context / "charts").exists()
    assert not (context / "services" / "devtools").exists(), "the developer tooling stays out of the build context"
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(context)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = wheels.glob("orderflow-*.whl")
    return wheel


def test_the_build_context_builds_the_package_the_image_runs(image_wheel: Path) -> None:
    with zipfile.ZipFile(image_wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "orderflow = orderflow.cli:main" in entry_points
    for module in ("orderflow/cli.py", "orderflow/runtime/service.py", "orderflow_operator/__init__.py",
                   "orderflow_operator/cli.py", "orderflow/inventory/service.py"):
        assert module in names, module


def test_the_image_carries_what_runs_and_no_developer_tooling(image_wheel: Path) -> None:
    """Issue 14: the image used to carry the Maven POM, the process harness, the demo and the Pact tooling (and
    ``orderflow contracts`` in it imported pact, which the image does not install)."""
    with zipfile.ZipFile(image_wheel) as archive:
        names = sorted(archive.namelist())
        top_level = next(archive.read(n).decode() for n in names if n.endswith("top_level.txt")).split()
        sources = {n: archive.read(n).decode() for n in names if n.endswith(".py")}
    assert sorted(top_level) == ["orderflow", "orderflow_operator"]
    packages = {n.split("/")[0] for n in names if not n.startswith("orderflow-0")}
    assert packages == {"orderflow", "orderflow_operator"}, packages
    assert [n for n in names if not n.endswith(".py") and ".dist-info/" not in n] == [], "only code, no data files"
    for forbidden in ("pom.xml", "stack.py", "demo.py", "devtools", "contracts/", "kafka/broker.py", "kafka/jars.py"):
        assert not [n for n in names if forbidden in n], forbidden
    for name, text in sources.items():
        assert not re.search(r"^\s*(from|import) (pact|orderflow_dev)\b", text, re.M), f"{name} imports dev tooling"


def test_in_a_venv_with_only_the_wheel_there_is_no_services_module_and_dev_commands_say_how_to_install(
    image_wheel: Path, tmp_path: Path
) -> None:
    """Issue 14: the distribution installed a top-level module called ``services``, and ``orderflow contracts``
    failed with an ImportError where its tooling was absent.

    The fresh venv gets the wheel alone; its dependencies are borrowed from this venv's site-packages through a
    plain path entry, which (unlike a site directory) runs no ``.pth`` file, so this checkout's editable installs
    -- ``orderflow``, ``orderflow_dev`` -- stay invisible to it.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(image_wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "borrowed-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*argv], cwd=outside, capture_output=True, text=True, timeout=60,
                              env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin"})

    located = run(str(python), "-c", "import orderflow.runtime, orderflow_operator; print(orderflow.__file__)")
    assert located.returncode == 0 and located.stdout.startswith(site), located.stdout + located.stderr
    services = run(str(python), "-c", "import services")
    assert services.returncode != 0 and "No module named 'services'" in services.stderr, services.stderr
    dev = run(str(python), "-c", "import orderflow_dev")
    assert dev.returncode != 0, "the developer tooling must not be importable from the wheel alone"
    for command in (["contracts", "verify"], ["demo"], ["kafka", "status"]):
        answer = run(str(venv / "bin" / "orderflow"), *command)
        lines = answer.stderr.strip().splitlines()
        assert answer.returncode == 2 and len(lines) == 1, (command, answer.stderr)
        assert f"orderflow {command[0]}: not installed here" in lines[0] and "make venv" in lines[0], lines[0]
    assert run(str(venv / "bin" / "orderflow"), "run", "--help").returncode == 0
