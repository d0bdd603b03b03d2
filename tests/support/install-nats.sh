#!/usr/bin/env bash
# Install Debian's nats-server when it is missing: the NATS transport's tests and `orderflow nats start` run it
# (services/devtools/orderflow_dev/nats.py, `nats-server -js`). Prints the binary's path.
set -euo pipefail
find_server() { command -v nats-server || PATH="/usr/sbin:/usr/local/sbin:$PATH" command -v nats-server; }
if server=$(find_server); then
    echo "$server"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "install-nats: nats-server is missing; as root run:" >&2
    echo "  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends nats-server" >&2
    exit 1
fi
echo "install-nats: installing Debian's nats-server" >&2
apt-get -o DPkg::Lock::Timeout=600 update -q >&2
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends nats-server >&2
find_server
