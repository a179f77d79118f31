# Sourced by build-envtest.sh and test/node/build-node.sh: one Go module per set of k8s.io/kubernetes commands,
# with the staging repositories pinned to the matching v0.x versions, and one way to build a command from it.
#   kube_module SRC MODULE_NAME K8S_VERSION CMD...   writes SRC/go.mod and SRC/tools.go, then go mod tidy
#   kube_build SRC OUT_FILE K8S_VERSION CMD           go build k8s.io/kubernetes/cmd/CMD into OUT_FILE (atomically)
KUBE_STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)

kube_module() {
  local src=$1 name=$2 version=$3; shift 3
  mkdir -p "$src"
  {
    printf 'module %s\n\ngo 1.24\n\nrequire k8s.io/kubernetes v%s\n\n' "$name" "$version"
    for m in "${KUBE_STAGING[@]}"; do echo "replace k8s.io/$m => k8s.io/$m v0.${version#1.}"; done
  } > "$src/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for c in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  } > "$src/tools.go"
  (cd "$src" && go mod tidy)
}

kube_build() {
  local src=$1 out=$2 version=$3 cmd=$4
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$version -X k8s.io/client-go/pkg/version.gitVersion=v$version"
  (cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "k8s.io/kubernetes/cmd/$cmd" && mv "$out.tmp" "$out")
}
