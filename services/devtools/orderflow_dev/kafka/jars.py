"""The broker's jars, fetched from Maven Central with the local ``mvn`` (no Docker, no Kafka tarball here).

``pom.xml`` beside this module pins the Kafka version and its runtime dependencies; ``ensure_jars`` copies them
once into ``${ORDERFLOW_CACHE:-~/.cache/orderflow}/kafka/<version>/libs``. Nothing is read at import: the POM is
parsed the first time the version is asked for.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Final

from orderflow_dev.kafka.errors import KafkaToolError, ToolMissingError
from orderflow_dev.kafka.files import cache_dir, file_lock

log = logging.getLogger(__name__)

# The POM and the Log4j configuration are this package's own data files (package data of orderflow-dev).
POM: Final = Path(__file__).resolve().parent / "pom.xml"
LOG4J_CONFIG: Final = Path(__file__).resolve().parent / "log4j2.properties"
_MARKER: Final = ".orderflow-complete"
_MVN_TIMEOUT_S: Final = 900.0
_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")


@functools.cache
def kafka_version() -> str:
    """The Kafka version the POM pins (its single source of truth)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(POM).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise KafkaToolError(f"{POM} has no <kafka.version> property")
    return (node.text or "").strip()


def ensure_jars() -> Path:
    """Return the directory holding the broker's runtime jars, fetching them with Maven the first time.

    The jars go to ``<cache>/kafka/<version>/libs``; they are built in a temp directory and renamed into
    place, and a marker file records the POM they came from (a changed POM fetches again).
    """
    root = cache_dir() / "kafka" / kafka_version()
    libs = root / "libs"
    pom_digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if _complete(libs, pom_digest):
        return libs
    with file_lock(root / ".lock"):
        if _complete(libs, pom_digest):  # another process fetched them while we waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ToolMissingError(
                "Maven ('mvn') is needed to fetch the Kafka broker jars from Maven Central but is not on "
                "PATH: install Maven 3.6+ (Debian/Ubuntu: apt-get install maven) and retry."
            )
        log.info("Fetching Kafka %s jars with Maven into %s (first run only)...", kafka_version(), libs)
        tmp = Path(tempfile.mkdtemp(prefix="libs.tmp-", dir=root))
        try:
            _fetch(mvn, tmp)
            (tmp / _MARKER).write_text(pom_digest + "\n")
            _swap_in(tmp, libs)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return libs


def _complete(libs: Path, pom_digest: str) -> bool:
    marker = libs / _MARKER
    return marker.is_file() and marker.read_text().strip() == pom_digest


def _fetch(mvn: str, into: Path) -> None:
    """``mvn dependency:copy-dependencies`` of the POM into ``into``; a KafkaToolError saying why, if it fails."""
    cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={into}"]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_MVN_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise KafkaToolError(f"Maven did not finish fetching the Kafka jars within {_MVN_TIMEOUT_S:.0f}s") from exc
    except OSError as exc:
        raise ToolMissingError(f"could not run Maven ({mvn}): {exc}; (re)install Maven 3.6+") from exc
    if done.returncode != 0:
        output = _ANSI.sub("", (done.stdout or "") + (done.stderr or "")).strip().splitlines()
        detail = "\n".join(output[-30:])
        raise KafkaToolError(
            f"Maven failed (exit {done.returncode}) fetching the Kafka {kafka_version()} jars "
            f"(needs network access to Maven Central):\n  {' '.join(cmd)}\n{detail}"
        )
    if not (into / f"kafka_2.13-{kafka_version()}.jar").is_file():
        raise KafkaToolError(f"Maven ran but {into} has no kafka_2.13-{kafka_version()}.jar")


def _swap_in(fresh: Path, libs: Path) -> None:
    """Put ``fresh`` in place of ``libs``; a stale ``libs`` (an older POM) is moved aside first, then removed."""
    if libs.exists():
        old = Path(tempfile.mkdtemp(prefix="libs.old-", dir=libs.parent))
        libs.rename(old / "libs")
        shutil.rmtree(old, ignore_errors=True)
    fresh.rename(libs)
