"""The Pod Security Standards' "restricted" profile, as a checker of Pod specs (a pure function, no cluster).

Written from the Kubernetes Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards,
the "latest" version as of Kubernetes 1.33): "restricted" is every "baseline" control plus the restricted ones.
The tests run it over every Pod the charts render, prove it fails on specs that break each control, and check that
the real kube-apiserver's PodSecurity admission agrees with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Baseline: capabilities a container may add (the container runtimes' defaults). Restricted narrows it further.
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUME_TYPES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
})
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            yield f"{field}[{c.get('name', '?')}]", c


def _apparmor_ok(profile: Mapping[str, Any] | None) -> bool:
    return profile is None or profile.get("type") in ("RuntimeDefault", "Localhost")


def restricted_violations(spec: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> list[str]:
    """Every way the Pod ``spec`` (with its ``metadata``) breaks the "restricted" profile; empty when it complies."""
    v: list[str] = []
    pod_sc: Mapping[str, Any] = spec.get("securityContext") or {}
    annotations: Mapping[str, str] = (metadata or {}).get("annotations") or {}
    containers = list(_containers(spec))

    # -- baseline -------------------------------------------------------------------------------------------
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        v.append("baseline/HostProcess: spec.securityContext.windowsOptions.hostProcess")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            v.append(f"baseline/host namespaces: spec.{field}=true")
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            v.append(f"baseline/hostPath volumes: volume {volume.get('name')}")
    for key, value in annotations.items():
        if key.startswith(_APPARMOR_ANNOTATION) and not (value == "runtime/default" or value.startswith("localhost/")):
            v.append(f"baseline/AppArmor: annotation {key}={value}")
    if not _apparmor_ok(pod_sc.get("appArmorProfile")):
        v.append("baseline/AppArmor: spec.securityContext.appArmorProfile")
    se = pod_sc.get("seLinuxOptions") or {}
    if se.get("type", "") not in SELINUX_TYPES or se.get("user") or se.get("role"):
        v.append("baseline/SELinux: spec.securityContext.seLinuxOptions")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            v.append(f"baseline/sysctls: {sysctl.get('name')}")
    if (pod_sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        v.append("baseline/seccomp: spec.securityContext.seccompProfile.type=Unconfined")
    for where, c in containers:
        sc: Mapping[str, Any] = c.get("securityContext") or {}
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            v.append(f"baseline/HostProcess: {where}")
        if sc.get("privileged"):
            v.append(f"baseline/privileged: {where}")
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            v.append(f"baseline/capabilities: {where} adds {sorted(added - BASELINE_CAPABILITIES)}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                v.append(f"baseline/host ports: {where} hostPort {port['hostPort']}")
        if not _apparmor_ok(sc.get("appArmorProfile")):
            v.append(f"baseline/AppArmor: {where}")
        cse = sc.get("seLinuxOptions") or {}
        if cse.get("type", "") not in SELINUX_TYPES or cse.get("user") or cse.get("role"):
            v.append(f"baseline/SELinux: {where}")
        if sc.get("procMount", "Default") != "Default":
            v.append(f"baseline/procMount: {where} procMount={sc['procMount']}")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            v.append(f"baseline/seccomp: {where} seccompProfile.type=Unconfined")

    # -- restricted -----------------------------------------------------------------------------------------
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            v.append(f"restricted/volume types: volume {volume.get('name')} is {sorted(kinds)}")
    pod_non_root = pod_sc.get("runAsNonRoot")
    if pod_non_root is False:
        v.append("restricted/runAsNonRoot: spec.securityContext.runAsNonRoot=false")
    if pod_sc.get("runAsUser") == 0:
        v.append("restricted/runAsUser: spec.securityContext.runAsUser=0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    for where, c in containers:
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            v.append(f"restricted/allowPrivilegeEscalation: {where} must set it to false")
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and pod_non_root is not True):
            v.append(f"restricted/runAsNonRoot: {where} (or the Pod) must set runAsNonRoot=true")
        if sc.get("runAsUser") == 0:
            v.append(f"restricted/runAsUser: {where} runAsUser=0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            v.append(f"restricted/seccomp: {where} (or the Pod) must set seccompProfile RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            v.append(f"restricted/capabilities: {where} must drop ALL")
        added = set(caps.get("add") or [])
        if added - RESTRICTED_CAPABILITIES:
            v.append(f"restricted/capabilities: {where} may add only NET_BIND_SERVICE, adds "
                     f"{sorted(added - RESTRICTED_CAPABILITIES)}")
    return v
