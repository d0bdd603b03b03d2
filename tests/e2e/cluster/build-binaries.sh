#!/usr/bin/env bash
# The cluster's binaries, from the Go module proxy only, into $KIND_CACHE/bin (skipped when present):
#   kubelet, kubeadm, kube-proxy, kube-controller-manager, kube-scheduler  -- k8s.io/kubernetes $K8S_VERSION, built
#       through the envtest wrapper module (tests/envtest/go/kubernetes: its go.mod pins the staging modules and
#       lists these commands as `tool`s); kube-apiserver, etcd and kubectl come from the envtest build itself;
#   kind, helm, crictl, coredns, kube-router  -- `go install module@version`;
#   docker-buildx  -- `go install`, as the docker CLI's plugin and `docker build` builder (skaffold's BuildKit);
#   skaffold  -- built as the main module from its module zip (its go.mod has `replace` lines);
#   pause  -- gcc -static of build/pause/linux/pause.c from the k8s.io/kubernetes module.
# Builds run one after the other: the machines have 2 cores.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

k8s_mod="$REPO_ROOT/tests/envtest/go/kubernetes"
export CGO_ENABLED=0 GOWORK=off GOFLAGS="-buildvcs=false"

k8s_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION")"
    k8s_ldflags+=" -X $p.gitTreeState=clean"
done

# Stamp files record what built each binary, so a version bump rebuilds it.
have() { [[ -x "$KIND_BIN/$1" && "$(cat "$KIND_BIN/.$1.version" 2>/dev/null)" == "$2" ]]; }
done_() { echo "$2" > "$KIND_BIN/.$1.version"; }

k8s_binary() {
    local b=$1
    have "$b" "$K8S_VERSION" && return 0
    (cd "$k8s_mod" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath -ldflags="$k8s_ldflags" -o "$KIND_BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$KIND_BIN/$b.tmp" "$KIND_BIN/$b"; done_ "$b" "$K8S_VERSION"
}

go_install() { # go_install NAME PKG VERSION [LDFLAGS]
    local name=$1 pkg=$2 version=$3 ldflags=${4:-}
    have "$name" "$version" && return 0
    local tmp; tmp=$(mktemp -d "$KIND_WORK/.gobin.XXXXXX")
    GOBIN="$tmp" go install -trimpath -ldflags="-s -w $ldflags" "$pkg@$version"
    mv "$tmp/$(basename "$pkg")" "$KIND_BIN/$name"; rmdir "$tmp"; done_ "$name" "$version"
}

envtest_binaries() {
    local envtest_bin; envtest_bin=$(bash "$REPO_ROOT/tests/envtest/build.sh" | tail -1)
    local b; for b in kube-apiserver etcd kubectl; do install -m 0755 "$envtest_bin/$b" "$KIND_BIN/$b"; done
}

pause() {
    have pause "$PAUSE_TAG" && return 0
    local src; src=$(cd "$k8s_mod" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
    gcc -Os -static -Wall -DVERSION="v$PAUSE_TAG-orderflow" -o "$KIND_BIN/pause" "$src"; done_ pause "$PAUSE_TAG"
}

skaffold() {
    # skaffold's go.mod pins dependencies with `replace`, which `go install module@version` refuses: build it as
    # the main module, in its own directory of the module cache.
    have skaffold "$SKAFFOLD_VERSION" && return 0
    local dir; dir=$(go mod download -json "github.com/GoogleContainerTools/skaffold/v2@$SKAFFOLD_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    (cd "$dir" && GOFLAGS="$GOFLAGS -mod=readonly" go build -trimpath \
        -ldflags="-s -w -X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$SKAFFOLD_VERSION" \
        -o "$KIND_BIN/skaffold.tmp" ./cmd/skaffold)
    mv "$KIND_BIN/skaffold.tmp" "$KIND_BIN/skaffold"; done_ skaffold "$SKAFFOLD_VERSION"
}

buildx() {
    # skaffold's kind profile builds with BuildKit and passes `--load`, which only buildx knows: install it as a CLI
    # plugin and as the `docker build` builder, in a docker config of the suite's own (DOCKER_CONFIG, lib.sh).
    local config="$KIND_CACHE/docker-config"
    mkdir -p "$config/cli-plugins"
    [[ -f "$config/config.json" ]] || echo '{"aliases": {"builder": "buildx"}}' > "$config/config.json"
    go_install docker-buildx github.com/docker/buildx/cmd/buildx "$BUILDX_VERSION" \
        "-X=github.com/docker/buildx/version.Version=$BUILDX_VERSION"
    ln -sf "$KIND_BIN/docker-buildx" "$config/cli-plugins/docker-buildx"
}

steps=(
    "envtest_binaries"
    "k8s_binary kubeadm" "k8s_binary kubelet" "k8s_binary kube-controller-manager" "k8s_binary kube-scheduler"
    "k8s_binary kube-proxy" "pause"
    "go_install kind sigs.k8s.io/kind $KIND_VERSION"
    "go_install crictl sigs.k8s.io/cri-tools/cmd/crictl $CRICTL_VERSION -X=sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
    "go_install coredns github.com/coredns/coredns $COREDNS_VERSION"
    "go_install helm helm.sh/helm/v3/cmd/helm $HELM_VERSION -X=helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    "go_install kube-router github.com/cloudnativelabs/kube-router/v2/cmd/kube-router $KUBE_ROUTER_VERSION"
    "skaffold"
    "buildx"
)
for step in "${steps[@]}"; do
    # shellcheck disable=SC2086
    timed "$(cut -d" " -f1-2 <<<"$step")" $step
done
ls -la "$KIND_BIN" >&2
