#!/usr/bin/env bash
# Install Debian's rabbitmq-server when it is missing: the tests start a private node from /usr/lib/rabbitmq/bin
# (services/devtools/orderflow_dev/rabbitmq). Prints the server script's path; nothing to install when it is there.
set -euo pipefail
bin="${ORDERFLOW_RABBITMQ_SBIN:-/usr/lib/rabbitmq/bin}/rabbitmq-server"
if [[ ! -x $bin ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-rabbitmq: not root; run: sudo apt-get install -y --no-install-recommends rabbitmq-server" >&2
        exit 1
    fi
    echo "install-rabbitmq: installing Debian's rabbitmq-server (the tests run a private node of it)"
    apt-get -o DPkg::Lock::Timeout=600 update -q
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
        rabbitmq-server
    # the package starts a system node; the tests run their own and need nothing from it
    if command -v systemctl >/dev/null && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
        systemctl stop rabbitmq-server || true
    fi
fi
test -x "$bin"
echo "$bin"
