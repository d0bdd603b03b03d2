#!/usr/bin/env bash
# The stand-in base images (python, apache/kafka, postgres) and the kind node's base, from Debian packages only.
#
# debootstrap trees are cached as tarballs under $KIND_CACHE/rootfs, so a machine whose docker images are gone
# (a fresh dockerd) imports them again in seconds instead of bootstrapping for minutes. Each image is labelled with
# the hash of its inputs and rebuilt only when they change.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_path

ROOTFS="$KIND_CACHE/rootfs"
mkdir -p "$ROOTFS"

# unmount_under DIR: debootstrap mounts /proc (and more) inside the tree; never delete through a mount.
unmount_under() {
    local m
    for m in $(awk -v d="$1" '$2 ~ "^"d"/" {print $2}' /proc/mounts | sort -r); do umount -l "$m" 2>/dev/null || true; done
}

# rootfs_tar NAME PACKAGES -> path of a tarball of `debootstrap --variant=minbase --include=PACKAGES`.
rootfs_tar() {
    local name=$1 packages=$2
    local key; key=$(echo "rootfs-v2 $DEBIAN_SUITE $packages" | sha256sum | cut -c1-12)
    local tar="$ROOTFS/$name-$key.tar"
    if [[ ! -s "$tar" ]]; then
        local dir; dir=$(mktemp -d "$ROOTFS/.$name.XXXXXX")
        log "debootstrap $name ($DEBIAN_SUITE: $packages)"
        debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$dir" "$DEBIAN_MIRROR" \
            > "$ROOTFS/$name.debootstrap.log" 2>&1 || { unmount_under "$dir"; tail -20 "$ROOTFS/$name.debootstrap.log" >&2; die "debootstrap $name failed"; }
        unmount_under "$dir"
        # Keep the directories: package scripts run later (apt-get in a Dockerfile) expect them.
        rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
        find "$dir/usr/share/doc" "$dir/usr/share/man" -type f -delete
        tar -C "$dir" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
        rm -rf "$dir"
    fi
    echo "$tar"
}

# import_rootfs TAR TAG: `docker import` unless the image holds that tarball already.
import_rootfs() {
    local tar=$1 tag=$2 key; key=$(basename "$tar" .tar)
    if [[ "$(docker image inspect -f '{{ .Comment }}' "$tag" 2>/dev/null)" != "$key" ]]; then
        docker import -m "$key" "$tar" "$tag" >/dev/null
    fi
}

# build_image TAG DOCKERFILE CONTEXT [--build-arg ...]: docker build unless the label says the inputs are the same.
build_image() {
    local tag=$1 dockerfile=$2 context=$3; shift 3
    # The hash covers the context, the Dockerfile, the arguments and the image id of the BASE argument.
    local base_id="" a; for a in "$@"; do [[ "$a" == BASE=* ]] && base_id=$(docker image inspect -f '{{.Id}}' "${a#BASE=}"); done
    local hash; hash=$( { find "$context" -type f -print0 | LC_ALL=C sort -z | xargs -0 cat; cat "$dockerfile"; echo "$* $base_id"; } \
                        | sha256sum | cut -c1-12)
    image_current "$tag" "$hash" && { log "$tag is current"; return 0; }
    log "docker build $tag"
    docker build -q --network host --label "dev.orderflow.inputs=$hash" -t "$tag" -f "$dockerfile" "$@" "$context" >/dev/null
}

python_base() {
    local tar; tar=$(rootfs_tar python "python3,python3-venv,ca-certificates")
    import_rootfs "$tar" "$STANDIN/debian-python:rootfs"
    local ctx="$KIND_WORK/python-standin"; rm -rf "$ctx"; mkdir -p "$ctx"
    cp /etc/ssl/certs/ca-certificates.crt "$E2E_HERE/standin/pip.conf" "$ctx/"
    build_image "$PYTHON_STANDIN" "$E2E_HERE/standin/python.Dockerfile" "$ctx" \
        --build-arg "BASE=$STANDIN/debian-python:rootfs"
}

kafka_standin() {
    local libs; libs=$("$REPO_ROOT/.venv/bin/python" -c 'from orderflow_dev.kafka import ensure_jars; print(ensure_jars())')
    local version; version=$(yq_app_version "$REPO_ROOT/charts/dev/kafka/Chart.yaml")
    local ctx="$KIND_WORK/kafka-standin"; rm -rf "$ctx"; mkdir -p "$ctx"
    cp -r "$libs" "$ctx/libs"; rm -f "$ctx/libs/.orderflow-"*
    cp -r "$E2E_HERE/standin/kafka-scripts" "$E2E_HERE/standin/log4j2.properties" "$ctx/"
    build_image "$STANDIN/kafka:$version" "$E2E_HERE/standin/kafka.Dockerfile" "$ctx" --build-arg "BASE=$PYTHON_STANDIN"
}

postgres_standin() {
    local ctx="$KIND_WORK/postgres-standin"; rm -rf "$ctx"; mkdir -p "$ctx"
    cp "$E2E_HERE/standin/postgres-entrypoint.sh" "$ctx/"
    build_image "$STANDIN/postgres:15-bookworm" "$E2E_HERE/standin/postgres.Dockerfile" "$ctx" --build-arg "BASE=$PYTHON_STANDIN"
}

yq_app_version() { awk -F'"' '/^appVersion:/ {print $2}' "$1"; }

node_base() {
    local tar; tar=$(rootfs_tar kind-node "systemd,systemd-sysv,dbus,containerd,runc,containernetworking-plugins,iptables,nftables,conntrack,iproute2,ethtool,kmod,libseccomp2,pigz,ca-certificates,procps,socat,mount,util-linux,jq,bash,gzip,tar,findutils,iputils-ping,curl,less,python3,ipset")
    local hash; hash=$( { basename "$tar"; cat "$E2E_HERE/node-base.sh"; } | sha256sum | cut -c1-12)
    image_current "$NODE_BASE_IMAGE" "$hash" && { log "$NODE_BASE_IMAGE is current"; return 0; }
    bash "$E2E_HERE/node-base.sh" "$tar" "$NODE_BASE_IMAGE" "$hash"
}

for step in "${@:-python_base kafka_standin postgres_standin node_base}"; do
    for s in $step; do timed "$s" "$s"; done
done
