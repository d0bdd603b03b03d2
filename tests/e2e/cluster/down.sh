#!/usr/bin/env bash
# down.sh: delete the e2e cluster (only one this suite made). Images and caches stay for the next run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_path
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    image=$(docker inspect -f '{{.Config.Image}}' "$CLUSTER_NAME-control-plane" 2>/dev/null || true)
    [[ "$image" == "$NODE_IMAGE" ]] || die "cluster '$CLUSTER_NAME' was not made by this suite; not deleting it"
    kind delete cluster --name "$CLUSTER_NAME"
fi
