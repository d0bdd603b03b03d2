"""Every Pod the charts render meets the Pod Security "restricted" profile, and the checker has teeth.

The checker (tests/deploy/podsecurity.py) is run over every chart's Pods under every value set; it must flag a spec
breaking each control; and the real kube-apiserver's PodSecurity admission (a namespace enforcing "restricted")
must accept the charts' Pods and reject the same bad specs, so the checker and Kubernetes agree.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.deploy import charts, podsecurity

GOOD: dict[str, Any] = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{
        "name": "app",
        "image": "orderflow:0.1.0",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }],
    "volumes": [{"name": "tmp", "emptyDir": {}}],
}


def _container(spec: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = spec["containers"][0]
    return c


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = _container(spec) if parents and parents[0] == "c" else spec
        for key in parents[1:] if parents and parents[0] == "c" else parents:
            node = node.setdefault(key, {})
        if value is _DELETE:
            node.pop(last, None)
        else:
            node[last] = value

    return mutate


_DELETE = object()

# Each breaks exactly one control: (id, mutation, control named in the violation).
BAD = [
    ("hostNetwork", _set("hostNetwork", True), "baseline/host namespaces"),
    ("hostPID", _set("hostPID", True), "baseline/host namespaces"),
    # (the API server refuses privileged with allowPrivilegeEscalation=false outright, so both change)
    ("privileged", lambda s: _container(s)["securityContext"].update(privileged=True, allowPrivilegeEscalation=True),
     "baseline/privileged"),
    ("add-SYS_ADMIN", _set("c.securityContext.capabilities.add", ["SYS_ADMIN"]), "baseline/capabilities"),
    ("add-CHOWN", _set("c.securityContext.capabilities.add", ["CHOWN"]), "restricted/capabilities"),
    ("no-drop-ALL", _set("c.securityContext.capabilities.drop", ["NET_RAW"]), "restricted/capabilities"),
    ("hostPath", lambda s: s["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
     "baseline/hostPath volumes"),
    ("hostPort", _set("c.ports", [{"containerPort": 8080, "hostPort": 8080}]), "baseline/host ports"),
    ("unsafe-sysctl", _set("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}]),
     "baseline/sysctls"),
    ("procMount-Unmasked", _set("c.securityContext.procMount", "Unmasked"), "baseline/procMount"),
    ("procMount-Unmasked-userns", lambda s: (s.update(hostUsers=False),
                                             _container(s)["securityContext"].update(procMount="Unmasked")),
     "baseline/procMount"),
    ("selinux-spc_t", _set("securityContext.seLinuxOptions", {"type": "spc_t"}), "baseline/SELinux"),
    ("apparmor-unconfined", _set("c.securityContext.appArmorProfile", {"type": "Unconfined"}), "baseline/AppArmor"),
    ("seccomp-Unconfined", _set("c.securityContext.seccompProfile", {"type": "Unconfined"}), "seccomp"),
    ("seccomp-missing", _set("securityContext.seccompProfile", _DELETE), "restricted/seccomp"),
    ("privilege-escalation", _set("c.securityContext.allowPrivilegeEscalation", _DELETE),
     "restricted/allowPrivilegeEscalation"),
    ("runAsNonRoot-missing", _set("securityContext.runAsNonRoot", _DELETE), "restricted/runAsNonRoot"),
    ("runAsUser-0", _set("c.securityContext.runAsUser", 0), "restricted/runAsUser"),
    ("gitRepo-volume", lambda s: s["volumes"].append({"name": "git", "gitRepo": {"repository": "x"}}),
     "restricted/volume types"),
]


def _bad(mutation: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    spec = copy.deepcopy(GOOD)
    mutation(spec)
    return spec


@pytest.mark.parametrize("case", charts.CASES, ids=lambda c: c.id)
def test_every_rendered_pod_is_restricted(case: charts.ChartCase) -> None:
    templates = list(charts.pod_templates(charts.render(case)))
    for name, template in templates:
        assert podsecurity.restricted_violations(template["spec"], template.get("metadata")) == [], name
    if case.chart != charts.OPERATOR_CHART:
        assert templates, f"{case.id} renders no Pods"


def test_the_checker_passes_a_compliant_spec() -> None:
    assert podsecurity.restricted_violations(GOOD) == []


@pytest.mark.parametrize(("mutation", "control"), [(m, c) for _, m, c in BAD], ids=[i for i, _, _ in BAD])
def test_the_checker_flags_each_control(mutation: Callable[[dict[str, Any]], None], control: str) -> None:
    violations = podsecurity.restricted_violations(_bad(mutation))
    assert violations, "a bad spec passed"
    assert any(control in v for v in violations), violations


def _pod(name: str, spec: dict[str, Any], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = {"name": name, **{k: v for k, v in (metadata or {}).items() if k in ("labels", "annotations")}}
    # A PriorityClass is another admission plugin's business, and the test cluster has none.
    spec = {k: v for k, v in spec.items() if k != "priorityClassName"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def test_the_api_server_agrees(envtest: Any, k8s_namespace: str) -> None:
    """The real PodSecurity admission, enforcing "restricted", admits the charts' Pods and rejects the bad ones."""
    envtest.kubectl("label", "namespace", k8s_namespace, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest", check=True)

    def dry_run(pod: dict[str, Any]) -> Any:
        return envtest.kubectl("create", "--dry-run=server", "-n", k8s_namespace, "-f", "-", input=json.dumps(pod))

    admitted = 0
    for case in charts.CASES:
        for name, template in charts.pod_templates(charts.render(case, namespace=k8s_namespace)):
            pod = _pod(name.split("/")[1][:50].lower() + "-pod", template["spec"], template.get("metadata"))
            result = dry_run(pod)
            assert result.returncode == 0, f"{case.id} {name}: {result.stderr}"
            admitted += 1
    assert admitted >= 10
    for ident, mutation, _control in BAD:
        if ident == "procMount-Unmasked":
            continue  # invalid without hostUsers=false: the API server's validation rejects it before admission
        result = dry_run(_pod(f"bad-{ident.lower().replace('_', '-')}", _bad(mutation)))
        assert result.returncode != 0 and "PodSecurity" in result.stderr, (ident, result.stdout, result.stderr)
