"""The kopf wiring: settings, the watch of OrderFlows, liveness, shutdown.

Run with ``kopf run -m orderflow_operator.handlers --all-namespaces`` (or ``--namespace=NS``), or through
:func:`orderflow_operator.cli.main`. Only kopf's low-level ``on.event`` handler is used: it needs no
finalizer, no progress annotations and no ``status.kopf``, so kopf writes nothing into an OrderFlow and the
operator's RBAC stays at list/watch on ``orderflows`` plus what :mod:`orderflow_operator.kube` calls. The
per-object loops live in :mod:`orderflow_operator.workers`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import kopf

from orderflow_operator import kube, spec, workers

logger = logging.getLogger(__name__)

#: Environment variable naming a kubeconfig that wins over in-cluster / ``$KUBECONFIG`` discovery.
KUBECONFIG_ENV = kube.KUBECONFIG_ENV


class _QuietEventHandlerSuccess(logging.Filter):
    """kopf logs "Handler ... succeeded." at INFO for every watch event, including the ones our own status
    patches cause (one per tick per flow); the reconcile loop logs what matters instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Handler 'orderflow_event' succeeded."


logging.getLogger("kopf.objects").addFilter(_QuietEventHandlerSuccess())


def _post(body: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
    # kopf types ``objs`` as its own Body view (which the handlers pass on); any mapping with apiVersion, kind and
    # metadata serves, since kopf only reads the object reference from it.
    kopf.event(body, type=event_type, reason=reason, message=message)  # type: ignore[arg-type]


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # A watch the server closes every few minutes can never go silently idle behind a proxy or load balancer.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    # The CRD is installed with the chart (crds/), before the operator starts: no runtime CRD or namespace
    # observation, hence no RBAC for listing CRDs or namespaces.
    settings.scanning.disabled = True
    # One replica (the chart's Deployment uses the Recreate strategy): no peering objects needed.
    settings.peering.standalone = True
    settings.posting.reporting_component = "orderflow-operator"
    settings.posting.reporting_instance = os.environ.get("POD_NAME") or socket.gethostname()
    settings.posting.event_name_prefix = "orderflow-operator-"
    client = kube.Kube(kube.load_configuration(os.environ.get(KUBECONFIG_ENV)))
    memo.kube = client
    memo.workers = workers.Workers(kube=client, poster=_post)


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """Authenticate kopf exactly as our own API client: one identity, one place that finds the credentials
    (``--kubeconfig``, else in-cluster, else ``$KUBECONFIG`` / ``~/.kube/config``)."""
    configuration = kube.load_configuration(os.environ.get(KUBECONFIG_ENV))
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0] if parts else None)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        trust_env=settings.networking.trust_env,
    )


@kopf.on.event(spec.GROUP, spec.VERSION, spec.PLURAL)
async def orderflow_event(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    registry: workers.Workers = memo.workers
    obj = event.get("object")
    if not isinstance(obj, Mapping):
        return
    if event.get("type") == "DELETED":
        await registry.gone(obj)
    else:
        await registry.seen(obj)


@kopf.on.probe(id="orderflows")
def watched_flows(memo: kopf.Memo, **_: Any) -> int:
    registry: workers.Workers = memo.workers
    return len(registry)


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    registry: workers.Workers | None = getattr(memo, "workers", None)
    if registry is not None:
        await registry.stop_all()
    client: kube.Kube | None = getattr(memo, "kube", None)
    if client is not None:
        client.close()
