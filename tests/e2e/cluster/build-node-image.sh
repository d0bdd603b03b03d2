#!/usr/bin/env bash
# The kind node image, assembled by hand the way `kind build node-image` does it -- which cannot run offline (it
# pulls etcd, coredns, pause and kindnetd): start the node base with `sleep`, copy kubelet/kubeadm/kubectl/crictl
# in, import the control-plane and add-on images (each a base + one Go-built binary) into the node's containerd,
# `docker commit`. Rebuilt only when its inputs change (binaries, node base, this script).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_path

IMAGES=(
    "registry.k8s.io/kube-apiserver:$K8S_VERSION|$PYTHON_STANDIN|kube-apiserver"
    "registry.k8s.io/kube-controller-manager:$K8S_VERSION|$PYTHON_STANDIN|kube-controller-manager"
    "registry.k8s.io/kube-scheduler:$K8S_VERSION|$PYTHON_STANDIN|kube-scheduler"
    "registry.k8s.io/etcd:$ETCD_IMAGE_TAG|$PYTHON_STANDIN|etcd"
    # kube-proxy and kube-router program iptables/ipset: the node base has Debian's.
    "registry.k8s.io/kube-proxy:$K8S_VERSION|$NODE_BASE_IMAGE|kube-proxy|[]"
    "registry.k8s.io/coredns/coredns:$COREDNS_VERSION|$PYTHON_STANDIN|coredns|[\"/usr/local/bin/coredns\"]"
    "orderflow.local/kube-router:$KUBE_ROUTER_VERSION|$NODE_BASE_IMAGE|kube-router|[\"/usr/local/bin/kube-router\"]"
)

inputs=$( { cat "$0" "$E2E_HERE/lib.sh"; for i in "${IMAGES[@]}"; do b=$(cut -d'|' -f3 <<<"$i"); sha256sum "$KIND_BIN/$b"; done
            sha256sum "$KIND_BIN"/{kubelet,kubeadm,kubectl,crictl,pause}
            docker image inspect -f '{{.Id}}' "$NODE_BASE_IMAGE" "$PYTHON_STANDIN"; } | sha256sum | cut -c1-12)
if image_current "$NODE_IMAGE" "$inputs"; then log "$NODE_IMAGE is current"; exit 0; fi

ctx="$KIND_WORK/images"; rm -rf "$ctx"; mkdir -p "$ctx"
names=()
for spec in "${IMAGES[@]}"; do
    IFS='|' read -r tag base b ep <<<"$spec"
    mkdir -p "$ctx/$b"; cp "$KIND_BIN/$b" "$ctx/$b/"
    { echo "FROM $base"; echo "COPY $b /usr/local/bin/$b"; [[ -n "$ep" ]] && echo "ENTRYPOINT $ep"; true; } > "$ctx/$b/Dockerfile"
    docker build -q -t "$tag" "$ctx/$b" >/dev/null
    names+=("$tag")
done
mkdir -p "$ctx/pause"; cp "$KIND_BIN/pause" "$ctx/pause/"
printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$ctx/pause/Dockerfile"
docker build -q -t "registry.k8s.io/pause:$PAUSE_TAG" "$ctx/pause" >/dev/null
names+=("registry.k8s.io/pause:$PAUSE_TAG")
log "images built: ${names[*]}"

c=orderflow-kind-node-build
docker rm -f "$c" >/dev/null 2>&1 || true
docker run -d --name "$c" --privileged --entrypoint=sleep "$NODE_BASE_IMAGE" infinity >/dev/null
trap 'docker rm -f "$c" >/dev/null 2>&1 || true' EXIT
for b in kubelet kubeadm kubectl; do docker cp "$KIND_BIN/$b" "$c:/usr/bin/$b"; done
docker cp "$KIND_BIN/crictl" "$c:/usr/local/bin/crictl"     # `kind load` runs `crictl inspecti`
docker exec "$c" sh -c "echo $K8S_VERSION > /kind/version && mkdir -p /kind/manifests /etc/cni/net.d"
# CNI: a static bridge (single node: the pod CIDR kube-controller-manager gives the first node) instead of kindnetd.
docker exec -i "$c" sh -c 'cat > /etc/cni/net.d/10-orderflow-bridge.conflist' <<'JSON'
{ "cniVersion": "0.4.0", "name": "orderflow-kind",
  "plugins": [
    { "type": "bridge", "bridge": "kind-br0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.244.0.0/24" }]], "routes": [{ "dst": "0.0.0.0/0" }] } },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" } ] }
JSON
# kind applies /kind/manifests/default-cni.yaml unless networking.disableDefaultCNI: a harmless no-op object.
docker exec -i "$c" sh -c 'cat > /kind/manifests/default-cni.yaml' <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata: { name: orderflow-kind-cni, namespace: kube-system }
data: { cni: "static bridge conflist baked into the node image (/etc/cni/net.d/10-orderflow-bridge.conflist)" }
YAML
docker exec -i "$c" sh -c 'cat > /kind/manifests/default-storage.yaml' <<'YAML'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: { storageclass.kubernetes.io/is-default-class: "true" }
provisioner: kubernetes.io/host-path
YAML
docker exec -d "$c" sh -c 'containerd >/tmp/containerd.log 2>&1'
deadline=$((SECONDS + 30))
until docker exec "$c" ctr version >/dev/null 2>&1; do
    (( SECONDS < deadline )) || die "containerd in the node build container did not start"; sleep 0.5
done
docker save "${names[@]}" | docker exec -i "$c" ctr -n k8s.io images import --all-platforms --no-unpack --digests - >/dev/null
want=$(docker exec "$c" kubeadm config images list --kubernetes-version "$K8S_VERSION" | sort)
have=$(docker exec "$c" ctr -n k8s.io images ls -q | sort)
missing=$(comm -23 <(echo "$want") <(echo "$have"))
[[ -z "$missing" ]] || die "the node lacks images kubeadm wants: $missing"
docker exec "$c" sh -c 'pkill containerd; while pgrep -x containerd >/dev/null; do sleep 0.2; done'
docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' "$c" "$NODE_IMAGE-tmp" >/dev/null
printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$NODE_IMAGE-tmp" \
    | docker build -q --label "dev.orderflow.inputs=$inputs" -t "$NODE_IMAGE" - >/dev/null
docker rmi "$NODE_IMAGE-tmp" >/dev/null
log "node image $NODE_IMAGE assembled ($(docker image inspect -f '{{.Size}}' "$NODE_IMAGE" | awk '{printf "%.2f GB", $1/1e9}'))"
