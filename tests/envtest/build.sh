#!/usr/bin/env bash
# Build the envtest binaries (etcd, kube-apiserver, kubectl) from the wrapper Go modules in ./go.
#
# Idempotent: the binaries go to ${ORDERFLOW_CACHE:-$HOME/.cache/orderflow}/envtest/<key>/bin, where <key> names
# the versions and hashes every file of the wrapper modules and this script; when that directory is complete the
# build is skipped. Progress goes to stderr; the last line of stdout is the bin directory.
#
# Needs only `go` (1.26+) and the Go module proxy. The default Go module and build caches speed up repeat builds
# but nothing depends on them. Builds run one after the other (the machines have 2 cores).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gosrc="$here/go"

log() { printf '[envtest build] %s\n' "$*" >&2; }

command -v go >/dev/null 2>&1 || { log "error: 'go' is not on PATH (Go 1.26+ is needed)"; exit 1; }

modver() { # modver <go.mod> <module path> -> version of the require line
    awk -v m="$2" '($1 == m) { print $2; exit } ($1 == "require" && $2 == m) { print $3; exit }' "$1"
}

k8s_version="$(modver "$gosrc/kubernetes/go.mod" k8s.io/kubernetes)"
etcd_version="$(modver "$gosrc/etcd/go.mod" go.etcd.io/etcd/server/v3)"
kubectl_mod_version="$(modver "$gosrc/kubectl/go.mod" k8s.io/kubectl)"
[[ -n "$k8s_version" && -n "$etcd_version" && -n "$kubectl_mod_version" ]] || {
    log "error: could not read the versions from the wrapper go.mod files"; exit 1; }
# k8s.io/kubernetes v1.X.Y goes with the staging modules v0.X.Y.
if [[ "v0.${k8s_version#v1.}" != "$kubectl_mod_version" ]]; then
    log "error: kubectl module $kubectl_mod_version does not match kube-apiserver $k8s_version"; exit 1
fi
k8s_minor="${k8s_version#v1.}"; k8s_minor="${k8s_minor%%.*}"

hash="$(cd "$here" && find go build.sh -type f \( -name go.mod -o -name go.sum -o -name '*.go' -o -name build.sh \) \
        -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)"
key="k8s-${k8s_version}_etcd-${etcd_version}_${hash}"
root="${ORDERFLOW_CACHE:-$HOME/.cache/orderflow}/envtest"
dest="$root/$key"
bin="$dest/bin"
binaries=(etcd kube-apiserver kubectl)

complete() {
    local b
    for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
}

if complete; then
    log "binaries present in $bin (k8s $k8s_version, etcd $etcd_version)"
    echo "$bin"
    exit 0
fi

mkdir -p "$root"
# One build at a time per cache (parallel pytest sessions, CI steps): the second waits and then finds the result.
exec 9>"$root/.build.lock"
if command -v flock >/dev/null 2>&1; then
    log "waiting for the build lock $root/.build.lock"
    flock 9
fi
if complete; then
    log "binaries present in $bin (built by another process)"
    echo "$bin"
    exit 0
fi

log "building k8s $k8s_version + etcd $etcd_version into $bin with $(go env GOVERSION)"
tmp="$(mktemp -d "$root/.tmp-$key.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"

# Stamp /version like the upstream release build does (hack/lib/version.sh).
vpkgs=(k8s.io/component-base/version k8s.io/client-go/pkg/version)
k8s_ldflags="-s -w"
for p in "${vpkgs[@]}"; do
    k8s_ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
    k8s_ldflags+=" -X $p.gitTreeState=clean"
done

export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
total_start=$SECONDS
for b in "${binaries[@]}"; do
    start=$SECONDS
    ldflags="-s -w"
    [[ "$b" == etcd ]] || ldflags="$k8s_ldflags"
    log "go build $b ..."
    # go/kubernetes is one module for every Kubernetes command (tests/e2e builds the node's from it too).
    if [[ "$b" == kube-apiserver ]]; then dir="$gosrc/kubernetes" pkg=./kube-apiserver; else dir="$gosrc/$b" pkg=.; fi
    (cd "$dir" && go build -trimpath -ldflags="$ldflags" -o "$tmp/bin/$b" "$pkg")
    log "built $b in $((SECONDS - start)) s ($(du -h "$tmp/bin/$b" | cut -f1))"
done
log "all built in $((SECONDS - total_start)) s"

cat >"$tmp/VERSIONS" <<EOF
kubernetes=$k8s_version
etcd=$etcd_version
go=$(go env GOVERSION)
key=$key
EOF
# Publish atomically: a half-built directory is never seen as complete.
rm -rf "$dest.old"
if [[ -d "$dest" ]]; then mv "$dest" "$dest.old"; fi
mv "$tmp" "$dest"
rm -rf "$dest.old"
trap - EXIT
echo "$bin"
