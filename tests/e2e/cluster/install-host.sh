#!/usr/bin/env bash
# What the e2e cluster needs on the host, from Debian's packages, when it is missing: Docker Engine (docker.io:
# dockerd, containerd, runc, the CLI) and debootstrap (the stand-in and node base images). Nothing else is installed
# on the host; every other part is built into the cache (see up.sh).
set -euo pipefail
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
[[ -x /usr/bin/docker ]] || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
(( ${#missing[@]} )) || exit 0
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-host: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
echo "install-host: installing Debian's ${missing[*]}" >&2
"${sudo[@]}" apt-get update -q >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
