# Shared by the e2e cluster scripts: versions, cache paths, logging, PATH. Sourced, never run.
#
# Everything built here comes from registries only (Debian, the Go module proxy, PyPI, Maven Central) and is
# cached under ${ORDERFLOW_CACHE:-~/.cache/orderflow}/kind; docker images carry a label with the hash of the
# inputs that made them, so a stale image is rebuilt and a current one is reused.
set -euo pipefail

E2E_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$E2E_HERE/../../.." && pwd)"
ORDERFLOW_CACHE="${ORDERFLOW_CACHE:-$HOME/.cache/orderflow}"
KIND_CACHE="$ORDERFLOW_CACHE/kind"
KIND_BIN="$KIND_CACHE/bin"
KIND_WORK="$KIND_CACHE/work"
mkdir -p "$KIND_BIN" "$KIND_WORK"

# -- versions (Kubernetes must match tests/envtest/go/kubernetes/go.mod) -----------------------------------------
K8S_VERSION=v1.36.3
KIND_VERSION=v0.33.0
HELM_VERSION=v3.22.0
BUILDX_VERSION=v0.19.3      # the docker CLI plugin skaffold's BuildKit builds need (`docker build --load`)
SKAFFOLD_VERSION=v2.16.1    # the same as tests/deploy/skaffold_schema.py (its schemas validate skaffold.yaml)
CRICTL_VERSION=v1.36.0
COREDNS_VERSION=v1.14.2     # what kubeadm v1.36 deploys (constants.CoreDNSVersion)
# The NetworkPolicy agent: kube-router in firewall-only mode (iptables + ipset). kube-network-policies, kind's own
# agent, needs nftables' queue statement (CONFIG_NFT_QUEUE), which these hosts' kernels lack.
KUBE_ROUTER_VERSION=v2.1.0
ETCD_IMAGE_TAG=3.6.8-0      # what kubeadm v1.36 asks for; the binary inside is the envtest build (etcd v3.6.16)
PAUSE_TAG=3.10.2            # constants.PauseVersion; also the sandbox image in the node's containerd config
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${ORDERFLOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# -- names -------------------------------------------------------------------------------------------------------
# Local stand-ins for the upstream images the Dockerfile and the dev charts name (python:3.11.x-slim-bookworm,
# apache/kafka, postgres). Same roles, built from Debian packages here; users pull the official ones.
STANDIN=orderflow.local/standin
PYTHON_STANDIN="$STANDIN/python:3.11-bookworm"
NODE_BASE_IMAGE=orderflow.local/kind-node-base:$DEBIAN_SUITE
NODE_IMAGE=orderflow.local/kind-node:$K8S_VERSION
CLUSTER_NAME="${ORDERFLOW_E2E_CLUSTER:-kind}"   # context kind-kind, as skaffold.yaml's kind profile expects
RUNTIME_NAME=runc-nosysresource

log() { printf '[e2e %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The docker CLI the scripts and kind use. A `docker` shim goes first on PATH when the host lacks
# CAP_SYS_RESOURCE (see host/runc-nosysresource): it adds --runtime to every `docker run`, kind's included.
# Debian's CLI first: it matches Debian's engine, and its built-in BuildKit needs no buildx plugin (skaffold's kind
# profile builds with BuildKit).
# An inherited ORDERFLOW_REAL_DOCKER wins: a nested script's PATH already starts with the shim.
REAL_DOCKER="${ORDERFLOW_REAL_DOCKER:-${ORDERFLOW_DOCKER:-$( [[ -x /usr/bin/docker ]] && echo /usr/bin/docker || command -v docker || true)}}"
[[ -n "$REAL_DOCKER" ]] || die "no docker CLI on PATH (apt-get install docker.io)"
[[ "$REAL_DOCKER" != "$KIND_CACHE/path/docker" ]] || die "ORDERFLOW_DOCKER points at the PATH shim, not a docker CLI"
export ORDERFLOW_REAL_DOCKER="$REAL_DOCKER"

needs_runtime_wrapper() {
    # Bit 24 of the capability bounding set is CAP_SYS_RESOURCE. Without it, every privileged container fails with
    # "unable to apply caps: operation not permitted" (docker 20.10 grants privileged containers all it knows).
    local bnd
    bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
    (( (0x$bnd >> 24) & 1 )) && return 1 || return 0
}

E2E_PATH_DIR="$KIND_CACHE/path"
setup_path() {
    mkdir -p "$E2E_PATH_DIR"
    rm -f "$E2E_PATH_DIR/docker"
    if needs_runtime_wrapper; then
        install -m 0755 "$E2E_HERE/host/docker" "$E2E_PATH_DIR/docker"
    else
        ln -sf "$REAL_DOCKER" "$E2E_PATH_DIR/docker"
    fi
    export PATH="$E2E_PATH_DIR:$KIND_BIN:$PATH"
    # The CLI's plugin dir and config: buildx as the `docker build` builder (see build-binaries.sh).
    export DOCKER_CONFIG="$KIND_CACHE/docker-config"
    skaffold_config
}

# skaffold's global config for the suite: no metrics (skaffold turns them on after its first-run prompt and then
# reports to Google), no update check, no survey -- nothing leaves the machine. SKAFFOLD_CONFIG points at it.
SKAFFOLD_CONFIG_FILE="$KIND_CACHE/skaffold-config.yaml"
skaffold_config() {
    cat > "$SKAFFOLD_CONFIG_FILE" <<'YAML'
global:
  collect-metrics: false
  update-check: false
  survey:
    disable-prompt: true
YAML
    export SKAFFOLD_CONFIG="$SKAFFOLD_CONFIG_FILE" SKAFFOLD_UPDATE_CHECK=false
}

# input_hash FILE... -> 12 hex chars naming the content of the files (and the versions above).
input_hash() {
    { cat "$@"; echo "$K8S_VERSION $KIND_VERSION $DEBIAN_SUITE $COREDNS_VERSION $PAUSE_TAG $ETCD_IMAGE_TAG"; } \
        | sha256sum | cut -c1-12
}

# image_current IMAGE HASH: the image exists and was built from inputs with that hash.
image_current() {
    [[ "$(docker image inspect -f '{{ index .Config.Labels "dev.orderflow.inputs" }}' "$1" 2>/dev/null)" == "$2" ]]
}

timed() { # timed NAME CMD...: run, then log how long it took (the note's cold/warm figures come from these lines)
    local name=$1 start=$SECONDS; shift
    "$@"
    log "step $name took $((SECONDS - start)) s"
}
