"""A real Kubernetes API server for tests: etcd + kube-apiserver, no kubelet ("envtest").

Usage::

    from orderflow_dev.envtest import EnvTest

    with EnvTest() as env:
        env.kubectl("get", "namespaces", check=True)
        kubernetes.config.load_kube_config(env.kubeconfig)

The binaries are built from the wrapper Go modules in ``tests/envtest/go`` by ``tests/envtest/build.sh``
(cached in ``$ORDERFLOW_CACHE/envtest/<key>/bin``); ``ORDERFLOW_ENVTEST_BIN_DIR`` points at prebuilt ones
instead.

Only etcd and kube-apiserver run: Deployments get no Pods, garbage collection and namespace deletion never
finish, namespaces get no ``default`` ServiceAccount. Creating, patching, scaling and writing status all work.

CLI (manual use)::

    python -m orderflow_dev.envtest build   # build (or find) the binaries, print the bin dir
    python -m orderflow_dev.envtest run     # start, print KUBECONFIG=..., run until Ctrl-C / SIGTERM
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

# The build script and its Go modules stay with the tests (tests/envtest); relative to the working directory, the
# checkout's root, where `make prereqs` and the tests run it.
BUILD_SCRIPT = Path("tests") / "envtest" / "build.sh"

#: Environment variable naming a directory with prebuilt etcd, kube-apiserver and kubectl (skips build.sh).
BIN_DIR_ENV = "ORDERFLOW_ENVTEST_BIN_DIR"
BINARIES = ("etcd", "kube-apiserver", "kubectl")

ADMIN_USER = "envtest-admin"
ADMIN_GROUP = "system:masters"


class EnvTestError(RuntimeError):
    """The envtest control plane could not be built or started."""


def build(*, quiet: bool = False) -> Path:
    """Run build.sh (a no-op when the binaries are cached) and return the bin directory.

    A directory in ``$ORDERFLOW_ENVTEST_BIN_DIR`` wins over building.
    """
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        bin_dir = Path(override)
        missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
        if missing:
            raise EnvTestError(f"${BIN_DIR_ENV}={override} lacks executable {', '.join(missing)}")
        return bin_dir
    if shutil.which("go") is None and not quiet:
        print("envtest: 'go' is not on PATH; build.sh fails unless the binaries are cached", file=sys.stderr)
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,  # progress goes straight to our stderr
        text=True,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise EnvTestError(f"{BUILD_SCRIPT} failed with exit code {proc.returncode}")
    bin_dir = Path(lines[-1])
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise EnvTestError(f"{BUILD_SCRIPT} printed {bin_dir}, which lacks {', '.join(missing)}")
    return bin_dir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL the child when the process that started it goes away (no orphaned servers)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _openssl(command: str, *extra: str, cwd: Path) -> None:
    """Run ``openssl`` with the words of ``command`` and then ``extra`` (arguments that may hold spaces)."""
    args = [*command.split(), *extra]
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EnvTestError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


_live: weakref.WeakSet[EnvTest] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for env in list(_live):
        env.stop()


class EnvTest:
    """etcd + kube-apiserver on free loopback ports, with an admin kubeconfig.

    Attributes after :meth:`start`: ``bin_dir``, ``kubeconfig`` (path), ``server`` (https URL), ``etcd_url``,
    ``ca_file``, ``client_cert``, ``client_key``, ``work_dir``, ``versions`` (from the build's VERSIONS file).
    """

    def __init__(
        self,
        *,
        bin_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 120.0,
        stop_timeout: float = 15.0,
        extra_apiserver_args: Sequence[str] = (),
        log_level: int = 0,
    ) -> None:
        self.bin_dir: Path | None = Path(bin_dir) if bin_dir is not None else None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.log_level = log_level
        self.work_dir: Path | None = None
        self.kubeconfig: Path | None = None
        self.server: str | None = None
        self.etcd_url: str | None = None
        self.ca_file: Path | None = None
        self.client_cert: Path | None = None
        self.client_key: Path | None = None
        self.versions: dict[str, str] = {}
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> EnvTest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> EnvTest:
        with self._lock:
            if self._apiserver is not None:
                return self
            if self.bin_dir is None:
                self.bin_dir = build()
            self.versions = self._read_versions()
            self.work_dir = Path(tempfile.mkdtemp(prefix="orderflow-envtest-"))
            _live.add(self)
            try:
                self._make_certs()
                self._start_etcd()
                self._start_apiserver()
                self._write_kubeconfig()
            except BaseException:
                self._stop_locked()
                raise
            return self

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd (SIGTERM, deadline, SIGKILL); remove the temp dir. Idempotent."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        for attr in ("_apiserver", "_etcd"):
            proc: subprocess.Popen[bytes] | None = getattr(self, attr)
            if proc is not None:
                self._terminate(proc)
                setattr(self, attr, None)
        for f in self._logs:
            f.close()
        self._logs.clear()
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None
        _live.discard(self)

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self.stop_timeout)

    @property
    def running(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self._etcd, self._apiserver))

    # ------------------------------------------------------------------ helpers for tests

    def kubectl(
        self,
        *args: str,
        check: bool = False,
        input: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this API server; stdout/stderr are captured as text."""
        if self.kubeconfig is None or self.bin_dir is None or self.work_dir is None:
            raise EnvTestError("EnvTest is not started")
        cmd = [
            str(self.bin_dir / "kubectl"),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.work_dir / 'kubectl-cache'}",
            *args,
        ]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=check, env=env)

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """GET a path on the API server as the admin user; returns (status, body)."""
        if self.server is None:
            raise EnvTestError("EnvTest is not started")
        return self._get(self.server + path, timeout)

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx

    def _get(self, url: str, timeout: float) -> tuple[int, bytes]:
        ctx = self._ssl_context() if url.startswith("https:") else None
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read()

    def _read_versions(self) -> dict[str, str]:
        assert self.bin_dir is not None
        path = self.bin_dir.parent / "VERSIONS"
        if not path.is_file():
            return {}
        pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        return {k.strip(): v.strip() for k, v in pairs}

    # ------------------------------------------------------------------ start-up steps

    def _make_certs(self) -> None:
        assert self.work_dir is not None
        d = self.work_dir / "pki"
        d.mkdir()
        # A CA that signs both the serving cert (so clients verify TLS) and the admin client cert.
        _openssl(
            "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650",
            "-subj",
            "/CN=orderflow-envtest-ca",
            cwd=d,
        )
        (d / "serving.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,IP:10.0.0.1\n"
        )
        (d / "client.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\n"
        )
        for name, subj, ext in (
            ("serving", "/CN=kube-apiserver", "serving.ext"),
            ("admin", f"/O={ADMIN_GROUP}/CN={ADMIN_USER}", "client.ext"),
        ):
            _openssl(
                f"req -new -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr",
                "-subj",
                subj,
                cwd=d,
            )
            _openssl(
                f"x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650"
                f" -extfile {ext} -out {name}.crt",
                cwd=d,
            )
        # The service-account token signing key pair.
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
        self.ca_file = d / "ca.crt"
        self.client_cert = d / "admin.crt"
        self.client_key = d / "admin.key"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        assert self.work_dir is not None and self.bin_dir is not None
        log = open(self.work_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        env = {**os.environ, "GOMAXPROCS": os.environ.get("ORDERFLOW_ENVTEST_GOMAXPROCS", "2")}
        return subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.work_dir,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    def _wait_until(self, what: str, proc: subprocess.Popen[bytes], log: Path, probe: Any) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = "no answer yet"
        delay = 0.05
        while True:
            if proc.poll() is not None:
                raise EnvTestError(f"{what} exited with code {proc.returncode} at start-up:\n{_tail(log)}")
            try:
                ok, last = probe()
                if ok:
                    return
            except (OSError, ValueError) as e:  # connection refused, TLS not up yet, bad JSON
                last = repr(e)
            if time.monotonic() > deadline:
                raise EnvTestError(f"{what} not ready within {self.start_timeout:.0f} s (last: {last}):\n{_tail(log)}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _start_etcd(self) -> None:
        assert self.work_dir is not None
        for attempt in range(3):  # a free port can be taken between probing and binding: retry
            client, peer = _free_port(), _free_port()
            self.etcd_url = f"http://127.0.0.1:{client}"
            peer_url = f"http://127.0.0.1:{peer}"
            data = self.work_dir / f"etcd-data-{attempt}"
            self._etcd = self._spawn(
                "etcd",
                [
                    "--name=envtest",
                    f"--data-dir={data}",
                    f"--listen-client-urls={self.etcd_url}",
                    f"--advertise-client-urls={self.etcd_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=envtest={peer_url}",
                    "--initial-cluster-state=new",
                    "--unsafe-no-fsync=true",
                    "--log-level=warn",
                    "--quota-backend-bytes=2147483648",
                ],
            )
            log = self.work_dir / "etcd.log"

            def probe() -> tuple[bool, str]:
                status, body = self._get(f"{self.etcd_url}/health", timeout=2)
                healthy = status == 200 and json.loads(body).get("health") == "true"
                return healthy, body.decode(errors="replace")

            try:
                self._wait_until("etcd", self._etcd, log, probe)
                return
            except EnvTestError as e:
                if attempt == 2 or "address already in use" not in str(e):
                    raise
                self._terminate(self._etcd)
                self._logs.pop().close()

    def _start_apiserver(self) -> None:
        assert self.work_dir is not None and self.ca_file is not None
        pki = self.work_dir / "pki"
        for attempt in range(3):
            port = _free_port()
            self.server = f"https://127.0.0.1:{port}"
            cert_dir = self.work_dir / "apiserver-certs"
            cert_dir.mkdir(exist_ok=True)
            args = [
                f"--etcd-servers={self.etcd_url}",
                "--etcd-prefix=/registry",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={cert_dir}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--client-ca-file={self.ca_file}",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer={self.server}/",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                # Keep it light: nothing here needs these.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--enable-priority-and-fairness=false",
                f"--v={self.log_level}",
                *self.extra_apiserver_args,
            ]
            self._apiserver = self._spawn("kube-apiserver", args)
            log = self.work_dir / "kube-apiserver.log"

            def probe() -> tuple[bool, str]:
                status, body = self._get(f"{self.server}/readyz", timeout=5)
                return status == 200 and body.strip() == b"ok", f"HTTP {status}: {body[-300:]!r}"

            try:
                self._wait_until("kube-apiserver", self._apiserver, log, probe)
                return
            except EnvTestError as e:
                if attempt == 2 or "address already in use" not in str(e):
                    raise
                self._terminate(self._apiserver)
                self._logs.pop().close()

    def _write_kubeconfig(self) -> None:
        assert self.work_dir is not None
        path = self.work_dir / "kubeconfig"
        # JSON is YAML: kubectl, client-go and the Python client all read it.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [
                {
                    "name": ADMIN_USER,
                    "user": {"client-certificate": str(self.client_cert), "client-key": str(self.client_key)},
                }
            ],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": ADMIN_USER}}],
            "current-context": "envtest",
            "preferences": {},
        }
        path.write_text(json.dumps(config, indent=2) + "\n")
        path.chmod(0o600)
        self.kubeconfig = path


# ---------------------------------------------------------------------- CLI


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orderflow_dev.envtest", description=(__doc__ or "").split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build (or find cached) etcd, kube-apiserver and kubectl; print the bin dir")
    run = sub.add_parser("run", help="start etcd + kube-apiserver, print KUBECONFIG=..., run until Ctrl-C")
    run.add_argument("-v", "--verbosity", type=int, default=0, help="kube-apiserver --v level")
    args = parser.parse_args(argv)

    if args.command == "build":
        print(build())
        return 0

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with EnvTest(log_level=args.verbosity) as env:
        print(f"KUBECONFIG={env.kubeconfig}")
        print(f"# server {env.server}, etcd {env.etcd_url}, logs in {env.work_dir}", file=sys.stderr)
        print(f"# kubectl: {env.bin_dir}/kubectl --kubeconfig={env.kubeconfig} get ns", file=sys.stderr)
        sys.stdout.flush()
        while not stop.wait(1.0):
            if not env.running:
                print("envtest: a control-plane process exited; stopping", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
