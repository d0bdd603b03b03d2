#!/usr/bin/env bash
# Install Debian's chromium for `make screenshot` when it is missing (needs root: apt-get). Prints its path.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "[chromium] not installed; as root: apt-get update && apt-get install -y chromium" >&2
        exit 1
    fi
    echo "[chromium] installing Debian's chromium (apt-get)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi
command -v chromium
