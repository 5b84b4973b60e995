#!/usr/bin/env bash
# The image's smoke test: each of the five entrypoints runs inside it (`aforo <process> --help`
# imports the whole process and lists its settings; `python -m aforo.<process>` resolves), as uid
# 10001, with nothing writable but /tmp needed.
#   smoke-test.sh [ARCHIVE]   (default build/aforo-notify.oci.tar)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ARCHIVE=$(realpath "${1:-$ROOT/build/aforo-notify.oci.tar}")
WORK=$ROOT/.local/image
STORAGE=(--root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
container=$(buildah "${STORAGE[@]}" from --quiet "oci-archive:$ARCHIVE")
# The storage under .local/image is this script's own: leave no container or image behind.
trap 'buildah "${STORAGE[@]}" rm "$container" >/dev/null 2>&1 || true
      buildah "${STORAGE[@]}" rmi --all --force >/dev/null 2>&1 || true' EXIT
run() { buildah "${STORAGE[@]}" run --isolation chroot "$container" -- "$@"; }

uid=$(run python3 -c 'import os; print(os.getuid())')
[[ $uid == 10001 ]] || { echo "smoke test: runs as uid $uid, not 10001" >&2; exit 1; }
for build_tool in gcc cc make pip; do
  if run /bin/sh -c "command -v $build_tool" >/dev/null 2>&1; then
    echo "smoke test: $build_tool is in the image" >&2; exit 1
  fi
done
for process in bridge trigger dispatcher api sse-gateway; do
  module=aforo.${process//-/_}
  out=$(run aforo "$process" --help)
  grep -q "same as \`python -m $module\`" <<<"$out" || { echo "smoke test: aforo $process --help: $out" >&2; exit 1; }
  run python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module.__main__') is None)"
  echo "smoke test: aforo $process OK"
done
echo "smoke test: $ARCHIVE passed"
