"""Importing the local-broker tooling does no I/O (issue 14: it parsed pom.xml at import time)."""

from __future__ import annotations

import subprocess
import sys

from orderflow_dev.kafka import jars


def test_importing_the_kafka_tooling_reads_no_file() -> None:
    probe = (
        "import builtins, io, pathlib, xml.etree.ElementTree as ET\n"
        "def refuse(*a, **k): raise AssertionError(f'I/O at import: {a!r}')\n"
        "ET.parse = refuse\n"
        "pathlib.Path.read_text = pathlib.Path.read_bytes = refuse\n"
        "import orderflow_dev.kafka, orderflow_dev.kafka.cli, orderflow_dev.kafka.daemon\n"
        "print('imported')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "imported", done.stderr


def test_the_kafka_version_comes_from_the_pom_when_asked() -> None:
    version = jars.kafka_version()
    assert version and version[0].isdigit()
    assert f"<kafka.version>{version}</kafka.version>" in jars.POM.read_text()
