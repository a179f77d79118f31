#!/usr/bin/env bash
# Builds test/helm/kstatus (Flux's kstatus, github.com/fluxcd/cli-utils, as a small CLI) into
# ~/.cache/mailroute/tools/kstatus-<hash of go.mod+go.sum+main.go>, linked as ~/.cache/mailroute/tools/kstatus.
# test/helm/cluster.test.ts runs it on live mailroute objects to show that Flux's health checks understand them.
# Idempotent: an existing binary for the same sources is not rebuilt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
TOOLS="${MAILROUTE_CACHE_DIR:-$HOME/.cache/mailroute}/tools"
mkdir -p "$TOOLS"
hash="$(cat "$here/kstatus/go.mod" "$here/kstatus/go.sum" "$here/kstatus/main.go" | sha256sum | cut -c1-12)"
out="$TOOLS/kstatus-$hash"
if [ ! -x "$out" ]; then
  echo "build-kstatus: building $out"
  (cd "$here/kstatus" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$out.tmp" . && mv "$out.tmp" "$out")
fi
ln -sf "$out" "$TOOLS/kstatus"
echo "build-kstatus: $TOOLS/kstatus -> $out"
