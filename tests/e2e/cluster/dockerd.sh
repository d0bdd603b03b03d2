#!/usr/bin/env bash
# Make sure a Docker engine answers. When none runs, start Debian's dockerd in the background (log in the cache),
# registering the runc wrapper runtime when the host lacks CAP_SYS_RESOURCE. An engine that already runs is used as
# it is; if it needs the wrapper and lacks it, say how to register it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || die "no dockerd: apt-get install docker.io"
    args=()
    if needs_runtime_wrapper; then
        install -D -m 0755 "$E2E_HERE/host/runc-nosysresource" "$KIND_CACHE/host/runc-nosysresource"
        args+=(--add-runtime "$RUNTIME_NAME=$KIND_CACHE/host/runc-nosysresource")
    fi
    log "starting dockerd (log: $KIND_CACHE/dockerd.log)"
    # setsid: the daemon outlives this script and is not in the test runner's process group.
    setsid dockerd "${args[@]}" >"$KIND_CACHE/dockerd.log" 2>&1 < /dev/null &
    deadline=$((SECONDS + 60))
    until docker info >/dev/null 2>&1; do
        (( SECONDS < deadline )) || { tail -20 "$KIND_CACHE/dockerd.log" >&2; die "dockerd did not answer in 60 s"; }
        sleep 0.5
    done
fi
if needs_runtime_wrapper && ! docker info --format '{{json .Runtimes}}' | grep -q "$RUNTIME_NAME"; then
    die "this host lacks CAP_SYS_RESOURCE and the running dockerd has no '$RUNTIME_NAME' runtime: add
  {\"runtimes\": {\"$RUNTIME_NAME\": {\"path\": \"$KIND_CACHE/host/runc-nosysresource\"}}} to /etc/docker/daemon.json,
  install $E2E_HERE/host/runc-nosysresource there, and send dockerd SIGHUP"
fi
log "docker engine $(docker version -f '{{.Server.Version}}') answers"
