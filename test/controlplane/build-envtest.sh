#!/usr/bin/env bash
# Builds kube-apiserver, kubectl (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3),
# helm and kubeconform from Go modules into ~/.cache/mailroute/envtest/<k8s version>/.
# Idempotent: a binary that is already there is not rebuilt.
# Honours KUBEBUILDER_ASSETS: if it is set and holds kube-apiserver and etcd, nothing is built for them.
set -euo pipefail
# shellcheck source=kube-module.sh
. "$(cd "$(dirname "$0")" && pwd)/kube-module.sh"
K8S_VERSION="${MAILROUTE_K8S_VERSION:-1.34.4}"
ETCD_VERSION="${MAILROUTE_ETCD_VERSION:-3.6.16}"
HELM_VERSION="${MAILROUTE_HELM_VERSION:-3.19.2}"
KUBECONFORM_VERSION="${MAILROUTE_KUBECONFORM_VERSION:-0.7.0}"
CACHE="${MAILROUTE_CACHE_DIR:-$HOME/.cache/mailroute}"
OUT="$CACHE/envtest/$K8S_VERSION"
TOOLS="$CACHE/tools"
mkdir -p "$OUT" "$TOOLS"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export CGO_ENABLED=0

want() { [ ! -x "$1" ]; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  echo "build-envtest: using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS for kube-apiserver and etcd"
  SKIP_CP=1
else
  SKIP_CP=0
fi

if [ "$SKIP_CP" = 0 ] && { want "$OUT/kube-apiserver" || want "$OUT/kubectl"; }; then
  src="$CACHE/src/kubernetes-$K8S_VERSION"
  kube_module "$src" mailroute.io/envtest-kube "$K8S_VERSION" kube-apiserver kubectl
  if want "$OUT/kube-apiserver"; then
    echo "build-envtest: building kube-apiserver v$K8S_VERSION (takes several minutes once)"
    kube_build "$src" "$OUT/kube-apiserver" "$K8S_VERSION" kube-apiserver
  fi
  if want "$OUT/kubectl"; then
    echo "build-envtest: building kubectl v$K8S_VERSION"
    kube_build "$src" "$OUT/kubectl" "$K8S_VERSION" kubectl
  fi
fi

if [ "$SKIP_CP" = 0 ] && want "$OUT/etcd"; then
  echo "build-envtest: building etcd v$ETCD_VERSION"
  src="$CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$src"
  cat > "$src/go.mod" <<GOMOD
module mailroute.io/envtest-etcd

go 1.24

require go.etcd.io/etcd/server/v3 v$ETCD_VERSION
GOMOD
  cat > "$src/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$src" && go mod tidy >/dev/null && go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" . && mv "$OUT/etcd.tmp" "$OUT/etcd")
fi

if want "$TOOLS/helm-$HELM_VERSION"; then
  echo "build-envtest: building helm v$HELM_VERSION"
  GOBIN="$TOOLS/bin-helm" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  mv "$TOOLS/bin-helm/helm" "$TOOLS/helm-$HELM_VERSION"
fi
if want "$TOOLS/kubeconform-$KUBECONFORM_VERSION"; then
  echo "build-envtest: building kubeconform v$KUBECONFORM_VERSION"
  GOBIN="$TOOLS/bin-kubeconform" go install -trimpath -ldflags "-s -w" "github.com/yannh/kubeconform/cmd/kubeconform@v$KUBECONFORM_VERSION"
  mv "$TOOLS/bin-kubeconform/kubeconform" "$TOOLS/kubeconform-$KUBECONFORM_VERSION"
fi
ln -sf "$TOOLS/helm-$HELM_VERSION" "$TOOLS/helm"
ln -sf "$TOOLS/kubeconform-$KUBECONFORM_VERSION" "$TOOLS/kubeconform"
echo "build-envtest: done: $OUT ($(ls "$OUT" | tr '\n' ' ')) $TOOLS"
