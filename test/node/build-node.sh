#!/usr/bin/env bash
# Builds the node components of a real single-node cluster from Go modules, once per machine:
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy (k8s.io/kubernetes), crictl (cri-tools),
#   CoreDNS (cluster DNS, with no upstream), and the pause image's binary (test/node/pause), into ~/.cache/mailroute/node/<k8s version>/.
# kube-apiserver, etcd, kubectl and helm come from test/controlplane/build-envtest.sh (same version, same cache).
# Idempotent: a binary that is already there is not rebuilt.
set -euo pipefail
K8S_VERSION="${MAILROUTE_K8S_VERSION:-1.34.4}"
CRICTL_VERSION="${MAILROUTE_CRICTL_VERSION:-1.34.0}"
COREDNS_VERSION="${MAILROUTE_COREDNS_VERSION:-1.14.7}"
CACHE="${MAILROUTE_CACHE_DIR:-$HOME/.cache/mailroute}"
OUT="$CACHE/node/$K8S_VERSION"
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../controlplane/kube-module.sh
. "$HERE/../controlplane/kube-module.sh"
mkdir -p "$OUT"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export CGO_ENABLED=0
want() { [ ! -x "$OUT/$1" ]; }
components=(kubelet kube-controller-manager kube-scheduler kube-proxy)
missing=()
for c in "${components[@]}"; do want "$c" && missing+=("$c"); done
if [ ${#missing[@]} -gt 0 ]; then
  kube_module "$CACHE/src/kubernetes-node-$K8S_VERSION" mailroute.io/node-kube "$K8S_VERSION" "${components[@]}"
  for c in "${missing[@]}"; do
    t0=$(date +%s)
    kube_build "$CACHE/src/kubernetes-node-$K8S_VERSION" "$OUT/$c" "$K8S_VERSION" "$c"
    echo "build-node: built $c v$K8S_VERSION in $(( $(date +%s) - t0 )) s"
  done
fi
if want crictl; then
  t0=$(date +%s)
  GOBIN="$OUT/bin-crictl" go install -trimpath -ldflags '-s -w' "sigs.k8s.io/cri-tools/cmd/crictl@v$CRICTL_VERSION"
  mv "$OUT/bin-crictl/crictl" "$OUT/crictl" && rmdir "$OUT/bin-crictl"
  echo "build-node: built crictl v$CRICTL_VERSION in $(( $(date +%s) - t0 )) s"
fi
if want coredns; then
  t0=$(date +%s)
  GOBIN="$OUT/bin-coredns" go install -trimpath -ldflags '-s -w' "github.com/coredns/coredns@v$COREDNS_VERSION"
  mv "$OUT/bin-coredns/coredns" "$OUT/coredns" && rmdir "$OUT/bin-coredns"
  echo "build-node: built CoreDNS v$COREDNS_VERSION in $(( $(date +%s) - t0 )) s"
fi
if want pause; then
  # The sandbox image's only binary: static, exits on SIGTERM/SIGINT, reaps children.
  w="$CACHE/src/pause"; mkdir -p "$w"
  cp "$HERE/pause/main.go" "$w/main.go"
  printf 'module mailroute.io/pause\n\ngo 1.24\n' > "$w/go.mod"
  (cd "$w" && go build -trimpath -ldflags '-s -w' -o "$OUT/pause.tmp" . && mv "$OUT/pause.tmp" "$OUT/pause")
fi
echo "build-node: done: $OUT ($(ls "$OUT" | tr '\n' ' '))"
