#!/usr/bin/env bash
# up.sh: everything the e2e suite needs before its first test, each step skipped when its result is current:
#   Debian's docker.io and debootstrap -> a docker engine -> stand-in base images and the kind node base -> the
#   cluster's binaries -> the node image -> `kind create cluster` with the project's kind config -> the
#   NetworkPolicy agent -> `kind load docker-image` of the dev charts' stand-ins. The image built from OUR Dockerfile is skaffold's to build and load (tests/e2e).
# The last line of stdout is the kubeconfig context to use. Timings of every step go to stderr ("step X took N s").
set -euo pipefail
bash "$(dirname "${BASH_SOURCE[0]}")/install-host.sh"   # before lib.sh, which needs the docker CLI
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
total=$SECONDS

timed dockerd bash "$E2E_HERE/dockerd.sh"
setup_path
timed base-images bash "$E2E_HERE/build-base-images.sh"
timed binaries bash "$E2E_HERE/build-binaries.sh"
timed node-image bash "$E2E_HERE/build-node-image.sh"

context="kind-$CLUSTER_NAME"
cluster_up() {
    if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
        local image; image=$(docker inspect -f '{{.Config.Image}}' "$CLUSTER_NAME-control-plane" 2>/dev/null || true)
        [[ "$image" == "$NODE_IMAGE" ]] || die "a kind cluster '$CLUSTER_NAME' exists that this suite did not make (node image '$image'): delete it, or set ORDERFLOW_E2E_CLUSTER to another name"
        log "cluster $CLUSTER_NAME exists (node image $NODE_IMAGE)"
        kind export kubeconfig --name "$CLUSTER_NAME" >/dev/null 2>&1
        return 0
    fi
    kind create cluster --name "$CLUSTER_NAME" --image "$NODE_IMAGE" --config "$E2E_HERE/../kind-config.yaml" --wait 5m
}
timed cluster-create cluster_up

network_policy_agent() {
    sed "s/__KUBE_ROUTER_VERSION__/$KUBE_ROUTER_VERSION/" "$E2E_HERE/manifests/kube-router.yaml" \
        | kubectl --context "$context" apply -f - >/dev/null
    kubectl --context "$context" -n kube-system rollout status ds/kube-router --timeout=180s >&2
}
timed network-policy-agent network_policy_agent

load_images() {
    local img id node_ids
    node_ids=$(docker exec "$CLUSTER_NAME-control-plane" crictl images -o json 2>/dev/null \
        | python3 -c 'import json,sys; print("\n".join(i["id"] for i in json.load(sys.stdin)["images"]))' || true)
    for img in "$STANDIN/kafka:$(awk -F'"' '/^appVersion:/ {print $2}' "$REPO_ROOT/charts/dev/kafka/Chart.yaml")" \
               "$STANDIN/postgres:15-bookworm"; do
        id=$(docker image inspect -f '{{.Id}}' "$img")
        if grep -qx "$id" <<<"$node_ids"; then log "$img already in the node"; continue; fi
        kind load docker-image --name "$CLUSTER_NAME" "$img" >&2
    done
}
timed kind-load load_images

log "cluster ready in $((SECONDS - total)) s"
echo "$context"
