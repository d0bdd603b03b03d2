"""A private, real Jaeger v2 for tests and for looking at traces: OTLP/HTTP in, query API out, traces in memory.

Jaeger v2 is an OpenTelemetry-collector build; its configuration is the collector's YAML (receivers, exporters,
extensions, pipelines), written here with every listener on a free 127.0.0.1 port. The binary is built from the Go
module proxy by ``tests/jaeger/build.sh`` (cached under ``~/.cache/orderflow/jaeger``). Its web UI is not in the Go
module, so the binary serves the query API (``/api/traces/{id}``, ``/api/traces?service=...``, ``/api/v3/...``) and a
placeholder page; ``orderflow_dev.waterfall`` draws a trace from that API instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from orderflow_dev.kafka.files import tail
from orderflow_dev.stack import free_port
from orderflow_dev.wait import until

# Relative to the checkout's root, where `make prereqs` and the tests run.
BUILD_SCRIPT = Path("tests") / "jaeger" / "build.sh"
#: A prebuilt jaeger binary to use instead of building one.
BINARY_ENV = "ORDERFLOW_JAEGER_BINARY"

CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


class JaegerError(RuntimeError):
    """Jaeger could not be built or started."""


def build() -> Path:
    """The jaeger binary: ``$ORDERFLOW_JAEGER_BINARY``, else what build.sh builds (a no-op when cached)."""
    override = os.environ.get(BINARY_ENV)
    if override:
        if not os.access(override, os.X_OK):
            raise JaegerError(f"${BINARY_ENV}={override} is not an executable")
        return Path(override)
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not os.access(lines[-1], os.X_OK):
        raise JaegerError(f"{BUILD_SCRIPT} failed (exit code {proc.returncode})")
    return Path(lines[-1])


class Jaeger:
    """``with Jaeger() as j:`` -- ``j.otlp_endpoint`` for ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``j.trace(id)`` to read."""

    def __init__(self, binary: Path | None = None, workdir: Path | None = None) -> None:
        self.binary = binary or build()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="orderflow-jaeger-"))
        self.ports = {"health": free_port(), "query": free_port(), "query_grpc": free_port(), "otlp": free_port()}
        self.otlp_endpoint = f"http://127.0.0.1:{self.ports['otlp']}"
        self.query_url = f"http://127.0.0.1:{self.ports['query']}"
        self.log_path = self.workdir / "jaeger.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> Jaeger:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> None:
        config = self.workdir / "config.yaml"
        config.write_text(CONFIG.format(**self.ports))
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [str(self.binary), "--config", str(config)], stdout=self._log, stderr=subprocess.STDOUT
        )

        def up() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise JaegerError(f"jaeger exited ({self._process.returncode}):\n{self.log_tail()}")
            try:
                return self.get("/api/services") is not None
            except OSError:
                return False

        until(up, timeout=timeout, what="jaeger's query API", interval=0.1)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)

    # -- the query API (the UI's own JSON API) ------------------------------------------------------------------

    def get(self, path: str) -> Any:
        """GET ``path`` on the query API: the JSON body, or None for a 404."""
        try:
            with urllib.request.urlopen(self.query_url + path, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def services(self) -> list[str]:
        return list(self.get("/api/services")["data"] or [])

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace (Jaeger's JSON: ``spans``, ``processes``), or None while Jaeger has none of its spans."""
        body = self.get(f"/api/traces/{trace_id}")
        if not body or not body.get("data"):
            return None
        trace: dict[str, Any] = body["data"][0]
        return trace

    def find_traces(self, service: str, tags: dict[str, str], *, lookback: str = "1h") -> list[dict[str, Any]]:
        """Traces with a span of ``service`` carrying every tag in ``tags``."""
        query = urllib.parse.urlencode(
            {"service": service, "tags": json.dumps(tags), "lookback": lookback, "limit": "20"}
        )
        return list(self.get(f"/api/traces?{query}")["data"] or [])
