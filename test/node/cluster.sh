#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, for the end-to-end suites in test/node/ (run as root, no systemd):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy (iptables), kubelet, CoreDNS (no upstream),
# containerd + runc, the bridge CNI with host-local IPAM, and a hostPath volume provisioner (test/node/provisioner.ts).
#
#   test/node/cluster.sh up      start everything (idempotent), import the images, wait for the node to be Ready
#   test/node/cluster.sh down    stop everything by PID and undo the host changes; state is kept
#   test/node/cluster.sh purge   down, then delete the state (certificates, etcd, containerd, volumes)
#
# Nothing leaves the machine: no masquerade; forwarded traffic from the pod network to anything outside it is
# dropped; cluster DNS answers cluster.local only; every image is imported, never pulled (imagePullPolicy: Never).
# Binaries: test/node/build-node.sh and test/controlplane/build-envtest.sh. Images: scripts/image.sh --archive,
# and the pause image made here from the pause binary.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PROJECT="$(cd "$HERE/../.." && pwd)"
K8S_VERSION="${MAILROUTE_K8S_VERSION:-1.34.4}"
CACHE="${MAILROUTE_CACHE_DIR:-$HOME/.cache/mailroute}"
NODE_BIN="$CACHE/node/$K8S_VERSION"
CP_BIN="${KUBEBUILDER_ASSETS:-$CACHE/envtest/$K8S_VERSION}"
KUBECTL="$CACHE/envtest/$K8S_VERSION/kubectl"
IMAGES="${MAILROUTE_NODE_IMAGES:-$CACHE/node/images}"
STATE="${MAILROUTE_NODE_STATE:-/var/lib/mailroute-node}"
RUN="${MAILROUTE_NODE_RUN:-/run/mailroute-node}"
NODE_IP="${MAILROUTE_NODE_IP:-10.250.0.1}"
NODE_NAME="mailroute-node"
SERVICE_CIDR="10.96.0.0/24"; API_SERVICE_IP="10.96.0.1"
CLUSTER_CIDR="10.244.0.0/16"; POD_CIDR="10.244.0.0/24"
API_PORT=16443; ETCD_PORT=23790; ETCD_PEER_PORT=23800
BRIDGE="mailroute-br0"
PAUSE_IMAGE="localhost/pause:3.10"
PKI="$STATE/pki"; LOGS="$STATE/logs"; PIDS="$STATE/pids"; CONF="$STATE/conf"
CTR_SOCK="$RUN/containerd.sock"
export PATH="$NODE_BIN:$CP_BIN:$(dirname "$KUBECTL"):$PATH"
T0=$(date +%s)
log() { echo "[cluster $(( $(date +%s) - T0 )) s] $*"; }

running() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }
start() { # start NAME CMD...: a new session in the background, PID and log files
  local name=$1; shift
  if running "$name"; then log "$name already running"; return; fi
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
  log "started $name (pid $!)"
}
wait_for() { # wait_for SECONDS WHAT CMD...: poll CMD until it succeeds or the deadline passes
  local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { log "timed out waiting for $what"; return 1; }
    sleep 0.5
  done
  log "$what"
}
write_config() { # write_config FILE < content: replaces FILE only when the content differs (kube-proxy exits when
  # its configuration file changes, so an `up` on a running cluster must not rewrite the same content)
  local tmp; tmp="$1.new.$$"
  cat >"$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}
stop() { # stop NAME: SIGTERM, up to 15 s, then SIGKILL
  local f="$PIDS/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    log "stopped $1 ($pid)"
  fi
  rm -f "$f"
}

pki() {
  [ -f "$PKI/ca.crt" ] && return
  log "certificates"
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl genrsa -out ca.key 2048 2>/dev/null
    openssl req -x509 -new -nodes -key ca.key -subj "/CN=mailroute-node-ca" -days 3650 -out ca.crt
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    cert() { # cert NAME SUBJECT [SANs]
      openssl genrsa -out "$1.key" 2048 2>/dev/null
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
      if [ -n "${3:-}" ]; then printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" >"$1.ext"
      else printf 'extendedKeyUsage=clientAuth\n' >"$1.ext"; fi
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    cert apiserver "/CN=kube-apiserver" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:$API_SERVICE_IP"
    cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    cert admin "/O=system:masters/CN=mailroute-node-admin"
    cert controller-manager "/CN=system:kube-controller-manager"
    cert scheduler "/CN=system:kube-scheduler"
    cert kube-proxy "/CN=system:kube-proxy"
    cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
    cert kubelet-serving "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
    cert coredns "/CN=mailroute-node-coredns"
  )
}

kubeconfig() { # kubeconfig NAME: $CONF/NAME.kubeconfig with the client certificate $PKI/NAME.{crt,key}
  write_config "$CONF/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: mailroute-node
  cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$PKI/$1.crt", client-key: "$PKI/$1.key"}
contexts:
- name: mailroute-node
  context: {cluster: mailroute-node, user: $1}
current-context: mailroute-node
KC
}

host_network() {
  case "$(ip -4 -o addr show dev lo)" in *" $NODE_IP/"*) ;; *) ip addr add "$NODE_IP/32" dev lo ;; esac
  sysctl -qw net.ipv4.ip_forward=1
  modprobe br_netfilter 2>/dev/null || true
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && sysctl -qw net.bridge.bridge-nf-call-iptables=1
  # Pods never reach beyond this machine: forwarded traffic from the pod network to any other network is dropped
  # (pod -> host, including Service DNAT to the API server, is INPUT and stays open). In mangle, because kube-proxy
  # inserts its filter FORWARD rules above any of ours.
  iptables -t mangle -C FORWARD -s "$CLUSTER_CIDR" ! -d "$CLUSTER_CIDR" -j DROP 2>/dev/null \
    || iptables -t mangle -I FORWARD 1 -s "$CLUSTER_CIDR" ! -d "$CLUSTER_CIDR" -j DROP
}

containerd_up() {
  write_config "$CONF/containerd.toml" <<TOML
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"
[grpc]
  address = "$CTR_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Root in some VMs lacks CAP_SYS_RESOURCE, so runc cannot set the negative oom_score_adj the kubelet asks for
  # (runc: "failed to update /proc/self/oom_score_adj: Permission denied"); clamp it to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
TOML
  write_config "$STATE/cni/net.d/10-mailroute-node.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "mailroute-node",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$STATE/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
CNI
  start containerd containerd --config "$CONF/containerd.toml"
  wait_for 30 "containerd answers" ctr --address "$CTR_SOCK" version
}

import_images() {
  # The pause image: the static pause binary in an image FROM scratch.
  if ! ctr --address "$CTR_SOCK" -n k8s.io images ls -q | grep -qx "$PAUSE_IMAGE"; then
    local c; c=$(buildah from scratch)
    buildah copy -q "$c" "$NODE_BIN/pause" /pause >/dev/null
    buildah config --entrypoint '["/pause"]' --cmd '' --user 65535:65535 "$c"
    buildah commit -q --rm --format docker "$c" "$PAUSE_IMAGE" >/dev/null
    rm -f "$STATE/pause.tar"
    buildah push -q "$PAUSE_IMAGE" "docker-archive:$STATE/pause.tar:$PAUSE_IMAGE" >/dev/null
    ctr --address "$CTR_SOCK" -n k8s.io images import "$STATE/pause.tar" >/dev/null
    log "imported $PAUSE_IMAGE"
  fi
  local f
  for f in "$IMAGES"/*.tar; do
    [ -f "$f" ] || continue
    # Import again only when the archive changed since its last import.
    if [ ! -f "$STATE/imported/$(basename "$f")" ] || [ "$f" -nt "$STATE/imported/$(basename "$f")" ]; then
      ctr --address "$CTR_SOCK" -n k8s.io images import "$f" >/dev/null
      mkdir -p "$STATE/imported" && touch "$STATE/imported/$(basename "$f")"
      log "imported $(basename "$f")"
    fi
  done
}

control_plane_up() {
  start etcd etcd --name mailroute-node --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "mailroute-node=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "http://127.0.0.1:23810" \
    --quota-backend-bytes=$((1024 * 1024 * 1024))
  start kube-apiserver kube-apiserver --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --advertise-address="$NODE_IP" --bind-address="$NODE_IP" --secure-port="$API_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction --allow-privileged=true --profiling=false
  wait_for 90 "kube-apiserver ready" kubectl get --raw /readyz
  start kube-controller-manager kube-controller-manager --kubeconfig="$CONF/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$CONF/controller-manager.kubeconfig" --authorization-kubeconfig="$CONF/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr="$CLUSTER_CIDR" --node-cidr-mask-size=24 --service-cluster-ip-range="$SERVICE_CIDR"
  start kube-scheduler kube-scheduler --kubeconfig="$CONF/scheduler.kubeconfig" \
    --authentication-kubeconfig="$CONF/scheduler.kubeconfig" --authorization-kubeconfig="$CONF/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false
}

node_up() {
  write_config "$CONF/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$CONF/kube-proxy.kubeconfig"}
mode: iptables
clusterCIDR: "$CLUSTER_CIDR"
hostnameOverride: "$NODE_NAME"
bindAddress: 127.0.0.1
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
nodePortAddresses: ["$NODE_IP/32"]
YAML
  start kube-proxy kube-proxy --config="$CONF/kube-proxy.yaml"
  # CoreDNS on the node address: cluster.local and reverse zones from the API, nothing else (no forward plugin,
  # so any other name is refused and no query leaves the machine).
  write_config "$CONF/Corefile" <<CORE
.:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $CONF/coredns.kubeconfig mailroute-node
        pods insecure
        ttl 5
    }
}
CORE
  start coredns coredns -conf "$CONF/Corefile"
  [ -f "$CONF/resolv.conf" ] || : >"$CONF/resolv.conf"   # what pods with dnsPolicy Default get: no nameserver outside the cluster
  write_config "$CONF/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: "unix://$CTR_SOCK"
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
address: "$NODE_IP"
tlsCertFile: "$PKI/kubelet-serving.crt"
tlsPrivateKeyFile: "$PKI/kubelet-serving.key"
healthzBindAddress: 127.0.0.1
clusterDomain: cluster.local
clusterDNS: ["$NODE_IP"]
resolvConf: "$CONF/resolv.conf"
podCIDR: "$POD_CIDR"
podLogsDir: "$STATE/pod-logs"
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
YAML
  start kubelet kubelet --config="$CONF/kubelet.yaml" --kubeconfig="$CONF/kubelet.kubeconfig" \
    --root-dir="$STATE/kubelet" --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" --v=1
  wait_for 120 "node $NODE_NAME Ready" kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
  wait_for 60 "ServiceAccount default/default" kubectl -n default get serviceaccount default
}

cluster_objects() {
  # What a cluster normally brings and this one lacks: the API objects CoreDNS needs to read, and a default
  # StorageClass served by test/node/provisioner.ts (hostPath folders under $STATE/volumes, owned by root like
  # any hostPath or local PersistentVolume).
  kubectl apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: mailroute-node-coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: mailroute-node-coredns}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:coredns}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: mailroute-node-hostpath
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: mailroute.io/node-hostpath
reclaimPolicy: Delete
volumeBindingMode: Immediate
YAML
  start provisioner "$PROJECT/node_modules/.bin/node" "$HERE/provisioner.ts" \
    --kubeconfig "$CONF/admin.kubeconfig" --root "$STATE/volumes" --node "$NODE_NAME" \
    --class mailroute-node-hostpath --provisioner mailroute.io/node-hostpath
}

up() {
  [ "$(id -u)" = 0 ] || { echo "cluster.sh: needs root (containerd, kubelet, iptables)" >&2; exit 2; }
  for b in "$NODE_BIN"/{kubelet,kube-controller-manager,kube-scheduler,kube-proxy,coredns,pause,crictl} "$CP_BIN"/{kube-apiserver,etcd} "$KUBECTL"; do
    [ -x "$b" ] || { echo "cluster.sh: missing $b (run test/node/build-node.sh and test/controlplane/build-envtest.sh)" >&2; exit 2; }
  done
  for b in containerd runc ctr buildah iptables /usr/lib/cni/bridge; do
    command -v "$b" >/dev/null || { echo "cluster.sh: missing $b (apt-get install containerd runc containernetworking-plugins iptables buildah)" >&2; exit 2; }
  done
  mkdir -p "$LOGS" "$PIDS" "$CONF" "$RUN" "$STATE/cni/net.d" "$STATE/volumes"
  pki
  for n in admin controller-manager scheduler kube-proxy kubelet coredns; do kubeconfig "$n"; done
  export KUBECONFIG="$CONF/admin.kubeconfig"
  host_network
  containerd_up
  import_images
  control_plane_up
  cluster_objects
  node_up
  log "up: KUBECONFIG=$KUBECONFIG"
}

down() {
  set +e # take down whatever is there: a step that finds nothing to remove is not a failure
  stop provisioner
  stop kubelet
  if [ -S "$CTR_SOCK" ] && [ -x "$NODE_BIN/crictl" ]; then
    # Pod sandboxes through CRI (CNI DEL, network namespaces, mounts) while containerd still runs.
    timeout 60 crictl --runtime-endpoint "unix://$CTR_SOCK" --timeout 30s rmp -fa >/dev/null 2>&1 || true
  fi
  stop containerd
  local p
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $CTR_SOCK" || true); do kill "$p" 2>/dev/null || true; done
  stop coredns
  stop kube-proxy
  [ -x "$NODE_BIN/kube-proxy" ] && "$NODE_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  stop kube-scheduler
  stop kube-controller-manager
  stop kube-apiserver
  stop etcd
  # Mounts left under our folders, deepest first.
  grep -E " ($STATE|$RUN)/" /proc/self/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # KUBE-* chains the kubelet and kube-proxy leave: the jumps first, then the chains.
  local ipt table ch
  for ipt in iptables ip6tables; do
    for table in filter nat mangle; do
      $ipt -t "$table" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-' | sed 's/^-A/-D/' \
        | while read -r rule; do eval "$ipt -t $table $rule" || true; done
      for ch in $($ipt -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/{print $2}'); do $ipt -t "$table" -F "$ch" || true; done
      for ch in $($ipt -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/{print $2}'); do $ipt -t "$table" -X "$ch" || true; done
    done
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  iptables -t mangle -D FORWARD -s "$CLUSTER_CIDR" ! -d "$CLUSTER_CIDR" -j DROP 2>/dev/null || true
  ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true
  log "down"
}

purge() {
  down
  find /var/log/containers -maxdepth 1 -type l -lname "$STATE/pod-logs/*" -delete 2>/dev/null || true
  rm -rf "$STATE" "$RUN" /run/containerd/runc/k8s.io
  log "purged $STATE $RUN"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  purge) purge ;;
  *) echo "usage: cluster.sh up|down|purge" >&2; exit 2 ;;
esac
