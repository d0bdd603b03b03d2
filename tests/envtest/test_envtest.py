"""The envtest harness against the real kube-apiserver + etcd it builds.

Run: ``.venv/bin/python -m pytest -p tests.envtest.fixtures tests/envtest -q``
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from orderflow_dev.envtest import EnvTest

pytestmark = pytest.mark.envtest

T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2) -> T:
    """Poll ``fn`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = fn()
            if result:
                return result
            last = result
        except ApiException as e:
            last = f"{e.status} {e.reason}"
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def test_version_is_the_built_release(envtest: EnvTest, k8s_api_client: client.ApiClient) -> None:
    expected = envtest.versions["kubernetes"]
    assert expected.startswith("v1.")
    status, body = envtest.get("/version")
    assert status == 200
    info = json.loads(body)
    assert info["gitVersion"] == expected
    assert info["major"] == "1"
    assert info["minor"] == expected.split(".")[1]
    assert client.VersionApi(k8s_api_client).get_code().git_version == expected


def test_rbac_denies_anonymous_but_serves_health(envtest: EnvTest) -> None:
    ctx = ssl.create_default_context(cafile=str(envtest.ca_file))  # TLS verified, no client cert
    with urllib.request.urlopen(f"{envtest.server}/readyz", context=ctx, timeout=10) as resp:
        assert resp.read() == b"ok"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{envtest.server}/api/v1/namespaces", context=ctx, timeout=10)
    err.value.close()
    assert err.value.code == 403


def test_deployment_scale_subresource(k8s_api_client: client.ApiClient, k8s_namespace: str) -> None:
    apps = client.AppsV1Api(k8s_api_client)
    labels = {"app": "demo"}
    apps.create_namespaced_deployment(
        k8s_namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="demo"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="demo", image="demo:1")]),
                ),
            ),
        ),
    )
    scale = apps.patch_namespaced_deployment_scale("demo", k8s_namespace, {"spec": {"replicas": 3}})
    assert scale.spec.replicas == 3
    assert apps.read_namespaced_deployment("demo", k8s_namespace).spec.replicas == 3
    assert apps.read_namespaced_deployment_scale("demo", k8s_namespace).spec.replicas == 3
    # No controller-manager: the Deployment gets no ReplicaSet and no Pods.
    assert client.CoreV1Api(k8s_api_client).list_namespaced_pod(k8s_namespace).items == []


def _widget_crd(group: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A Widget made by the envtest suite.",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {
                                        "size": {
                                            "type": "integer",
                                            "minimum": 1,
                                            "description": "How many sprockets the widget holds.",
                                        },
                                        "colour": {"type": "string", "enum": ["red", "blue"]},
                                    },
                                },
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def widget_crd(k8s_api_client: client.ApiClient) -> Iterator[str]:
    """Install a Widget CRD in a unique group, wait for Established; yields the group."""
    ext = client.ApiextensionsV1Api(k8s_api_client)
    group = f"t{uuid.uuid4().hex[:10]}.envtest.orderflow.io"
    ext.create_custom_resource_definition(_widget_crd(group))

    def established() -> bool:
        crd = ext.read_custom_resource_definition(f"widgets.{group}")
        conds = {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}
        return conds.get("Established") == "True" and conds.get("NamesAccepted") == "True"

    wait_for("the Widget CRD to be Established", established)
    yield group
    ext.delete_custom_resource_definition(f"widgets.{group}")  # finalized by the API server itself


def test_crd_custom_object_and_kubectl_explain(
    envtest: EnvTest, k8s_api_client: client.ApiClient, k8s_namespace: str, widget_crd: str
) -> None:
    group = widget_crd
    custom = client.CustomObjectsApi(k8s_api_client)
    body = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 2, "colour": "red", "unknownField": "pruned"},
    }
    created = custom.create_namespaced_custom_object(group, "v1", k8s_namespace, "widgets", body)
    assert created["spec"] == {"size": 2, "colour": "red"}  # structural schema prunes unknown fields

    bad = {**body, "metadata": {"name": "w2"}, "spec": {"size": 0, "colour": "green"}}
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(group, "v1", k8s_namespace, "widgets", bad)
    assert err.value.status == 422
    assert "spec.size" in err.value.body and "spec.colour" in err.value.body

    status = custom.patch_namespaced_custom_object_status(
        group, "v1", k8s_namespace, "widgets", "w1", {"status": {"phase": "Ready", "extra": {"a": 1}}}
    )
    assert status["status"] == {"phase": "Ready", "extra": {"a": 1}}

    # The CRD's OpenAPI is published asynchronously after Established: poll kubectl explain.
    def explained() -> str | None:
        out = envtest.kubectl("explain", f"widgets.{group}.spec.size")
        return out.stdout if out.returncode == 0 else None

    text = wait_for("kubectl explain to know the Widget", explained)
    assert "How many sprockets the widget holds." in text
    assert "integer" in text
    top = envtest.kubectl("explain", "widgets", f"--api-version={group}/v1", check=True).stdout
    assert "A Widget made by the envtest suite." in top

    got = envtest.kubectl("get", f"widgets.{group}", "-n", k8s_namespace, "-o", "json", check=True)
    items = json.loads(got.stdout)["items"]
    assert [i["metadata"]["name"] for i in items] == ["w1"]
    assert items[0]["status"]["phase"] == "Ready"


def test_kubectl_get_apply_and_errors(envtest: EnvTest, k8s_namespace: str) -> None:
    ns = envtest.kubectl("get", "namespace", k8s_namespace, "-o", "json", check=True)
    assert json.loads(ns.stdout)["metadata"]["name"] == k8s_namespace

    manifest = json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"k": "v"}}
    )
    applied = envtest.kubectl("apply", "-n", k8s_namespace, "-f", "-", input=manifest, check=True)
    assert "configmap/cfg created" in applied.stdout
    got = envtest.kubectl("get", "configmaps", "-n", k8s_namespace, "-o", "name", check=True)
    assert "configmap/cfg" in got.stdout.split()
    jsonpath = envtest.kubectl(
        "get", "configmap", "cfg", "-n", k8s_namespace, "-o", "jsonpath={.data.k}", check=True
    )
    assert jsonpath.stdout == "v"

    missing = envtest.kubectl("get", "configmap", "nope", "-n", k8s_namespace)
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr or "not found" in missing.stderr

    version = envtest.kubectl("version", "-o", "json", check=True)
    versions = json.loads(version.stdout)
    assert versions["serverVersion"]["gitVersion"] == envtest.versions["kubernetes"]
    assert versions["clientVersion"]["gitVersion"] == envtest.versions["kubernetes"]


def test_second_instance_starts_and_stops_cleanly(envtest: EnvTest) -> None:
    """Two control planes can run side by side; stop() ends both processes and removes the temp dir."""
    assert envtest.bin_dir is not None
    other = EnvTest(bin_dir=envtest.bin_dir)
    with other:
        assert other.server != envtest.server
        assert other.etcd_url != envtest.etcd_url
        work_dir = other.work_dir
        assert work_dir is not None and work_dir.is_dir()
        procs = [other._etcd, other._apiserver]
        assert other.kubectl("get", "--raw", "/readyz", check=True).stdout == "ok"
    assert all(p is not None and p.poll() is not None for p in procs)
    assert not Path(work_dir).exists()
    assert not other.running
    other.stop()  # idempotent
    # The session's instance is unaffected.
    assert envtest.kubectl("get", "--raw", "/readyz", check=True).stdout == "ok"
