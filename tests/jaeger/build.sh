#!/usr/bin/env bash
# Build Jaeger v2 (the OTLP-in, query-API-out trace store the tracing tests export to) from the wrapper Go module in
# ./go, whose go.mod names `github.com/jaegertracing/jaeger/cmd/jaeger` on a `tool` line.
#
# Idempotent: the binary goes to ${ORDERFLOW_CACHE:-$HOME/.cache/orderflow}/jaeger/<key>/bin/jaeger, where <key> is
# the Jaeger version and a hash of the wrapper module and this script; when it is there the build is skipped.
# Progress goes to stderr; the last line of stdout is the binary's path.
#
# Needs only `go` (1.26+) and the Go module proxy. Jaeger's web UI is not part of the Go module (its assets are
# built by a separate npm project), so this binary serves the query API and a placeholder page, not the UI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gosrc="$here/go"

log() { printf '[jaeger build] %s\n' "$*" >&2; }

command -v go >/dev/null 2>&1 || { log "error: 'go' is not on PATH (Go 1.26+ is needed)"; exit 1; }

version="$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2; exit }' "$gosrc/go.mod")"
[[ -n "$version" ]] || { log "error: no github.com/jaegertracing/jaeger require line in $gosrc/go.mod"; exit 1; }
hash="$(cd "$here" && cat go/go.mod go/go.sum build.sh | sha256sum | cut -c1-12)"
key="jaeger-${version}_${hash}"
root="${ORDERFLOW_CACHE:-$HOME/.cache/orderflow}/jaeger"
dest="$root/$key"
binary="$dest/bin/jaeger"

if [[ -x "$binary" ]]; then
    log "present: $binary"
    echo "$binary"
    exit 0
fi

mkdir -p "$root"
# One build at a time per cache: a second caller waits for the lock, then finds the result.
exec 9>"$root/.build.lock"
command -v flock >/dev/null 2>&1 && flock 9
if [[ -x "$binary" ]]; then
    log "present: $binary (built by another process)"
    echo "$binary"
    exit 0
fi

log "building jaeger $version into $dest with $(go env GOVERSION)"
tmp="$(mktemp -d "$root/.tmp-$key.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
start=$SECONDS
export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
(cd "$gosrc" && nice -n 10 go build -trimpath -ldflags="-s -w" -o "$tmp/bin/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger)
log "built in $((SECONDS - start)) s ($(du -h "$tmp/bin/jaeger" | cut -f1))"
printf 'jaeger=%s\ngo=%s\nkey=%s\n' "$version" "$(go env GOVERSION)" "$key" >"$tmp/VERSIONS"
# Publish atomically: a half-built directory is never seen as complete.
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "$binary"
