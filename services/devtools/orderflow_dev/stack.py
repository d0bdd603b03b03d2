"""The four services as real OS processes on one machine: what the demo runs and the integration tests drive.

Each service is ``orderflow run <name>`` in its own process with its own port and database, sharing one topic
prefix, so a test can SIGTERM, SIGKILL or restart one of them exactly as an orchestrator would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from orderflow.events import catalog
from orderflow.runtime import config
from orderflow_dev import client
from orderflow_dev.wait import until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    def __init__(self, name: str, *, env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.env = dict(env)
        self.log_path = log_path
        self.port = int(self.env["ORDERFLOW_HTTP_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, *, extra_env: Mapping[str, str] | None = None) -> None:
        if self._log is not None and not self.alive():
            self._reap()  # a run that ended by itself (a crash at a fault point): its log file is closed first
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orderflow.cli", "run", self.name],
            env={**os.environ, **self.env, **(extra_env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        """Running and answering ``/readyz`` with 200."""
        try:
            return self.alive() and client.call("GET", f"{self.url}/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.returncode}); log tail:\n{self.log_tail()}")
            return self.ready()

        until(ready, timeout=timeout, what=f"{self.name} to be ready")

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait for a graceful exit; return the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._reap()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(30)
        self._reap()

    def _reap(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def get(self, path: str) -> Any:
        return client.ok("GET", self.url + path)

    def find(self, path: str) -> Any:
        """Like ``get``, but ``None`` for a 404 (the service has not heard of it yet)."""
        status, body = client.call("GET", self.url + path)
        if status == 404:
            return None
        assert 200 <= status < 300, f"GET {self.url}{path} -> {status}: {body}"
        return body


class Stack:
    """The services of one flow (all four by default), on one broker and one topic prefix."""

    def __init__(
        self,
        *,
        bootstrap: str,
        prefix: str,
        workdir: Path,
        services: Iterable[str] = catalog.SERVICES,
        env: Mapping[str, str] | None = None,
        database_urls: Mapping[str, str] | None = None,
        transport: str = "kafka",
        transport_url: str = "",
    ) -> None:
        """``transport``/``transport_url``: the broker, when it is not the Kafka at ``bootstrap`` (``nats`` at
        ``nats://...``, ``rabbitmq`` at ``amqp://...``)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.transport = transport
        self.transport_url = transport_url if transport != "kafka" else bootstrap
        broker_env = {"ORDERFLOW_KAFKA_BOOTSTRAP": bootstrap}
        if transport != "kafka":
            broker_env = {"ORDERFLOW_TRANSPORT": transport, config.TRANSPORTS[transport]: transport_url}
        self.prefix = prefix
        self.workdir = workdir
        self.services: dict[str, ServiceProcess] = {}
        # Further processes of a service (``add_replica``): same environment, own port and log.
        self.replicas: list[ServiceProcess] = []
        for name in services:
            service_env = {
                **broker_env,
                "ORDERFLOW_TOPIC_PREFIX": prefix,
                "ORDERFLOW_DATA_DIR": str(workdir / "data"),
                "ORDERFLOW_HTTP_PORT": str(free_port()),
                "ORDERFLOW_LOG_LEVEL": "INFO",
                # A stable identity, as a Pod name is: a restarted process rejoins its group as the same member.
                "ORDERFLOW_REPLICA_ID": f"{name}-1",
                **(env or {}),
            }
            if database_urls and name in database_urls:
                service_env["ORDERFLOW_DATABASE_URL"] = database_urls[name]
            self.services[name] = ServiceProcess(name, env=service_env, log_path=workdir / f"{name}.log")

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    def url(self, name: str) -> str:
        return self.services[name].url

    def start(self, timeout: float = 90) -> None:
        for service in self.services.values():
            service.start()
        for service in self.services.values():
            service.wait_ready(timeout)

    def add_replica(self, name: str, *, timeout: float = 90) -> ServiceProcess:
        """Start one more process of ``name`` and wait until it is ready: a Deployment scaled up by one.

        It shares everything with the first (topics, consumer group, ``ORDERFLOW_DATABASE_URL``) but its HTTP
        port and log, so the replicas split the partitions and share the state -- which needs a shared database
        (PostgreSQL) to mean anything.
        """
        primary = self.services[name]
        number = 2 + sum(1 for r in self.replicas if r.name == name)
        replica = ServiceProcess(
            name,
            env={**primary.env, "ORDERFLOW_HTTP_PORT": str(free_port()), "ORDERFLOW_REPLICA_ID": f"{name}-{number}"},
            log_path=self.workdir / f"{name}-{number}.log",
        )
        self.replicas.append(replica)
        replica.start()
        replica.wait_ready(timeout)
        return replica

    def processes(self) -> list[ServiceProcess]:
        """Every process of the stack: one per service, then the replicas."""
        return [*self.services.values(), *self.replicas]

    def stop(self) -> None:
        for service in self.processes():
            if service.alive():
                try:
                    service.terminate(timeout=30)
                except subprocess.TimeoutExpired:
                    service.kill()

    def kill(self) -> None:
        for service in self.processes():
            service.kill()

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the API, for tests and the demo -------------------------------------------------------------------

    def put_stock(self, sku: str, available: int) -> Any:
        return client.ok("PUT", f"{self.url('inventory')}/stock/{sku}", {"available": available})

    def put_account(self, customer_id: str, balance_minor: int, currency: str = "EUR") -> Any:
        return client.ok(
            "PUT",
            f"{self.url('billing')}/accounts/{customer_id}",
            {"balance_minor": balance_minor, "currency": currency},
        )

    def place_order(
        self,
        customer_id: str,
        items: list[dict[str, Any]],
        *,
        currency: str = "EUR",
        deadline_seconds: float | None = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"customer_id": customer_id, "currency": currency, "items": items}
        if deadline_seconds is not None:
            body["deadline_seconds"] = deadline_seconds
        headers = {**(headers or {}), **({"Idempotency-Key": key} if key else {})}
        result: dict[str, Any] = client.ok("POST", f"{self.url('order')}/orders", body, headers=headers)
        return result

    def order(self, order_id: str) -> dict[str, Any]:
        result: dict[str, Any] = client.ok("GET", f"{self.url('order')}/orders/{order_id}")
        return result

    def wait_terminal(self, order_ids: Iterable[str], *, timeout: float = 60) -> dict[str, dict[str, Any]]:
        """Wait until the order service shows every order SHIPPED or CANCELLED; return them by id."""
        pending = set(order_ids)
        done: dict[str, dict[str, Any]] = {}

        def all_terminal() -> bool:
            try:
                for order_id in list(pending):
                    body = self.order(order_id)
                    if body["status"] != "PENDING":
                        done[order_id] = body
                        pending.discard(order_id)
            except OSError:
                return False  # the order service is restarting; ask again
            return not pending

        until(
            all_terminal,
            timeout=timeout,
            what=f"{len(pending)} order(s) to reach a terminal status",
            interval=0.1,
        )
        return done
