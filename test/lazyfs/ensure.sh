#!/usr/bin/env bash
# Prints the path of a LazyFS binary built from the vendored sources beside this script (third_party/lazyfs: LazyFS,
# MIT, see LICENSE; third_party/toml11 and third_party/spdlog, MIT, each with its LICENSE), building it once per
# source hash into ~/.cache/mailroute/lazyfs/<hash>/. Needs g++, cmake, libfuse3-dev and fuse3 (.ci/run installs them).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
HASH="$(cd "$HERE" && find third_party build.sh -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
OUT="${XDG_CACHE_HOME:-$HOME/.cache}/mailroute/lazyfs/$HASH"
mkdir -p "$(dirname "$OUT")"
# One build at a time (two test runs may start together).
exec 9>"$OUT.lock"
flock 9
bash "$HERE/build.sh" "$OUT"
