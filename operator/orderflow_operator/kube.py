"""The few Kubernetes API calls the operator makes besides kopf's watch and Events.

Each call maps to one RBAC rule in the chart: read and patch ``deployments/scale`` (the operator never reads
or writes the Deployment object itself), patch ``orderflows/status``, read a referenced ``Secret``. The
client is the synchronous ``kubernetes`` package; the reconciler calls it from worker threads.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from orderflow_operator import errors
from orderflow_operator.spec import GROUP, PLURAL, VERSION

__all__ = [
    "Kube",
    "load_configuration",
]

_MERGE_PATCH = "application/merge-patch+json"
#: Where the handlers' login and API client find the kubeconfig; ``orderflow operator --kubeconfig`` sets it.
KUBECONFIG_ENV = "ORDERFLOW_OPERATOR_KUBECONFIG"


def load_configuration(kubeconfig: str | None = None) -> client.Configuration:
    """In a Pod, the ServiceAccount; elsewhere ``kubeconfig`` or ``$KUBECONFIG`` / ``~/.kube/config``."""
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        # $KUBECONFIG is read now, not when the kubernetes package was imported (it may have changed since).
        path = kubeconfig or os.environ.get("KUBECONFIG") or config.KUBE_CONFIG_DEFAULT_LOCATION
        config.load_kube_config(config_file=path, client_configuration=configuration)
    return configuration


def _wrap(e: ApiException, what: str) -> errors.KubernetesError:
    return errors.KubernetesError(f"{what}: HTTP {e.status} {e.reason}")


class Kube:
    """Thread-safe (urllib3 pools connections per thread) wrapper over one ``ApiClient``."""

    def __init__(self, configuration: client.Configuration) -> None:
        self.api_client = client.ApiClient(configuration=configuration)
        self._apps = client.AppsV1Api(self.api_client)
        self._core = client.CoreV1Api(self.api_client)
        self._custom = client.CustomObjectsApi(self.api_client)

    def close(self) -> None:
        self.api_client.close()
        self.api_client.rest_client.pool_manager.clear()

    def get_replicas(self, namespace: str, deployment: str) -> int:
        """``spec.replicas`` of the Deployment, read through its scale subresource."""
        try:
            scale = self._apps.read_namespaced_deployment_scale(deployment, namespace)
        except ApiException as e:
            if e.status == 404:
                raise errors.DeploymentMissing(f"Deployment {namespace}/{deployment} not found") from e
            raise _wrap(e, f"reading scale of Deployment {namespace}/{deployment}") from e
        spec = scale.spec
        return int(spec.replicas or 0) if spec is not None else 0

    def set_replicas(self, namespace: str, deployment: str, replicas: int) -> None:
        try:
            self._apps.patch_namespaced_deployment_scale(
                deployment, namespace, {"spec": {"replicas": replicas}}, _content_type=_MERGE_PATCH
            )
        except ApiException as e:
            if e.status == 404:
                raise errors.DeploymentMissing(f"Deployment {namespace}/{deployment} not found") from e
            raise _wrap(e, f"scaling Deployment {namespace}/{deployment}") from e

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's keys and decoded values (librdkafka settings such as ``sasl.password``)."""
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            what = "not found" if e.status == 404 else f"not readable (HTTP {e.status} {e.reason})"
            raise errors.SecretUnavailable(f"Secret {namespace}/{name} {what}") from e
        data: Mapping[str, str | bytes] = secret.data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """JSON merge patch of the status subresource (``None`` values delete fields)."""
        try:
            self._custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)}, _content_type=_MERGE_PATCH
            )
        except ApiException as e:
            if e.status == 404:
                return  # deleted meanwhile; the watch will tell the worker to stop
            raise _wrap(e, f"patching status of {PLURAL}/{name}") from e
