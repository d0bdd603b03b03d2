#!/usr/bin/env bash
# node-base.sh ROOTFS_TAR TAG HASH: the kind node's base image, made like kind's images/base (kind v0.33.0) from a
# debootstrap tree, with Debian's containerd 1.6, runc 1.1 and CNI plugins in place of kind's own builds.
#
# It differs from kind's base where these hosts need it: containerd's unit and config must not lower oom_score_adj
# (no CAP_SYS_RESOURCE: restrict_oom_score_adj, OOMScoreAdjust=0), and kind's files come from the kind module in the
# Go module cache (not committed here).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_path
tar=$1 tag=$2 hash=$3

kind_src=$(GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
K="$kind_src/images/base/files"
[[ -d "$K" ]] || die "kind's images/base/files not found in $kind_src"

R=$(mktemp -d "$KIND_WORK/.node-rootfs.XXXXXX")
trap 'rm -rf "$R"' EXIT
tar -C "$R" -xf "$tar"

install -m 0755 "$K"/usr/local/bin/* "$R/usr/local/bin/"
mkdir -p "$R/kind/bin" "$R/etc/containerd" "$R/etc/default" "$R/etc/sysctl.d" \
         "$R/etc/systemd/system/kubelet.service.d" "$R/etc/systemd/system/containerd.service.d"
cp "$K/kind/README.txt" "$R/kind/"
install -m 0755 "$K"/kind/bin/* "$R/kind/bin/"
install -m 0644 "$K/etc/crictl.yaml" "$R/etc/"
install -m 0644 "$K/etc/default/kubelet" "$R/etc/default/"
install -m 0644 "$K"/etc/sysctl.d/* "$R/etc/sysctl.d/"
install -m 0644 "$K"/etc/systemd/system/*.service "$K"/etc/systemd/system/*.slice "$R/etc/systemd/system/"
install -m 0644 "$K"/etc/systemd/system/kubelet.service.d/* "$R/etc/systemd/system/kubelet.service.d/"

# containerd: kind's config without the fuse-overlayfs proxy plugin; kubeadm's pause as the sandbox image; pod OOM
# scores clamped (this host cannot lower them below 0, as for rootless kind).
python3 - "$K/etc/containerd/config.toml" "$R/etc/containerd/config.toml" "$PAUSE_TAG" <<'PY'
import re, sys
src, dst, pause = sys.argv[1:]
s = open(src).read()
s = re.sub(r'\[proxy_plugins\].*?address = "/run/containerd-fuse-overlayfs.sock"\n', '', s, flags=re.S)
s = re.sub(r'registry\.k8s\.io/pause:[0-9.]+"', f'registry.k8s.io/pause:{pause}"', s)
s = s.replace("restrict_oom_score_adj = false", "restrict_oom_score_adj = true")
s += '\n[plugins."io.containerd.grpc.v1.cri".cni]\n  bin_dir = "/opt/cni/bin"\n  conf_dir = "/etc/cni/net.d"\n'
open(dst, "w").write(s)
PY
grep -q 'restrict_oom_score_adj = true' "$R/etc/containerd/config.toml" || die "containerd config: restrict_oom_score_adj not set"
printf '[Service]\nOOMScoreAdjust=0\n' > "$R/etc/systemd/system/containerd.service.d/10-orderflow-no-oom-adjust.conf"
ln -sf /usr/bin/containerd "$R/usr/local/bin/containerd"   # kind's unit runs /usr/local/bin/containerd

# The CRI base spec: `ctr oci spec` plus kind's createContainer hook, without rlimits.
chroot "$R" ctr oci spec | python3 -c '
import json, sys
s = json.load(sys.stdin)
s.setdefault("hooks", {}).setdefault("createContainer", []).append({"path": "/kind/bin/mount-product-files.sh"})
s["process"].pop("rlimits", None)
json.dump(s, sys.stdout, indent=2)' > "$R/etc/containerd/cri-base.json"

# CNI plugins: Debian installs them in /usr/lib/cni.
mkdir -p "$R/opt/cni/bin" "$R/etc/cni/net.d" "$R/etc/kubernetes/manifests"
for f in "$R"/usr/lib/cni/*; do ln -sf "/usr/lib/cni/$(basename "$f")" "$R/opt/cni/bin/"; done

# systemd trimming, as kind's Dockerfile does.
find "$R/lib/systemd/system/sysinit.target.wants/" -name "systemd-tmpfiles-setup.service" -delete
rm -f "$R"/lib/systemd/system/multi-user.target.wants/* "$R"/etc/systemd/system/*.wants/* \
      "$R"/lib/systemd/system/local-fs.target.wants/* "$R"/lib/systemd/system/sockets.target.wants/*udev* \
      "$R"/lib/systemd/system/sockets.target.wants/*initctl* "$R"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >> "$R/etc/systemd/journald.conf"
chroot "$R" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
chroot "$R" systemctl mask systemd-binfmt.service >/dev/null 2>&1

tar -C "$R" --numeric-owner -c . | docker import - "$tag-rootfs" >/dev/null
# docker 20.10's `import --change` rejects STOPSIGNAL: set the metadata with a one-line build.
printf 'FROM %s\nENV container=docker\nSTOPSIGNAL SIGRTMIN+3\nENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]\n' "$tag-rootfs" \
    | docker build -q --label "dev.orderflow.inputs=$hash" -t "$tag" - >/dev/null
docker rmi "$tag-rootfs" >/dev/null
log "node base $tag built"
