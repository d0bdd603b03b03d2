#!/usr/bin/env bash
# Install the pinned AsyncAPI validator (@asyncapi/parser, see package.json and package-lock.json beside this
# script) into ${ORDERFLOW_CACHE:-~/.cache/orderflow}/node with `npm ci`. Idempotent: does nothing when the
# installed lock file already matches. Needs node >= 18 and npm; reaches only the npm registry.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target="${ORDERFLOW_CACHE:-$HOME/.cache/orderflow}/node"
command -v node >/dev/null || { echo "install-asyncapi.sh: node is not installed" >&2; exit 2; }
command -v npm >/dev/null || { echo "install-asyncapi.sh: npm is not installed" >&2; exit 2; }
mkdir -p "$target"
if [ -f "$target/package-lock.json" ] && cmp -s "$here/package-lock.json" "$target/package-lock.json" \
    && [ -f "$target/node_modules/@asyncapi/parser/package.json" ]; then
  echo "@asyncapi/parser already installed in $target"
  exit 0
fi
cp "$here/package.json" "$here/package-lock.json" "$target/"
# No telemetry from dependencies (scarf), no audit or funding chatter; install scripts are not needed.
export SCARF_ANALYTICS=false
(cd "$target" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
echo "installed @asyncapi/parser $(node -p "require('$target/node_modules/@asyncapi/parser/package.json').version") in $target"
