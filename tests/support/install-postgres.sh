#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries when they are missing: the tests start a private server from
# /usr/lib/postgresql/<version>/bin (services/devtools/postgres.py). Nothing to do when one is already installed.
set -euo pipefail
if compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || [[ -n "${ORDERFLOW_PG_BIN:-}" ]]; then
    exit 0
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-postgres: not root and no sudo; install Debian's postgresql" >&2; exit 1; }
    sudo=(sudo)
fi
echo "install-postgres: installing Debian's postgresql (server binaries for the tests)"
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null
