#!/usr/bin/env bash
# `make image`: the image of deploy/image/Containerfile, built without any registry.
#   1. a Debian bookworm minbase rootfs (debootstrap) with python3.11 and CA certificates;
#   2. the locked venv installed into it under chroot (uv, exact versions and hashes of uv.lock, the
#      project's own wheels), then uv, caches and apt state removed again: no build tools remain;
#   3. buildah commits it as an OCI archive: uid 10001, entrypoint `aforo`.
#   build.sh [OUTPUT]   (default build/aforo-notify.oci.tar; work files in .local/image)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/build/aforo-notify.oci.tar}")
WORK=$ROOT/.local/image
ROOTFS=$WORK/rootfs
UV_PY=${PYTHON_BOOTSTRAP:-python3}  # the Python that has uv, as in the Makefile
STORAGE=(--root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
say() { echo "make image: $*" >&2; }

[[ $(id -u) -eq 0 ]] || { say "needs root (debootstrap and chroot)"; exit 1; }
"$ROOT/deploy/local/ensure-debian-packages.sh" debootstrap:debootstrap buildah:buildah

# The machine's own Debian mirror, as apt is configured here.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[[ -n $mirror ]] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[[ -n $mirror ]] || { say "no Debian mirror found in the apt configuration"; exit 1; }

cleanup() {
  umount "$ROOTFS/proc" 2>/dev/null || true
}
trap cleanup EXIT

# Never follow a mount out of the rootfs (a proc left mounted by an interrupted build).
umount "$ROOTFS/proc" 2>/dev/null || true
rm -rf --one-file-system "$ROOTFS" "$WORK/dist"
mkdir -p "$WORK/dist" "$(dirname "$OUT")"
# The pristine minbase is kept between builds (delete .local/image to refresh it).
MINBASE=$WORK/minbase-bookworm-python3.11.tar
if [[ ! -f $MINBASE ]]; then
  say "debootstrap bookworm minbase from $mirror"
  debootstrap --variant=minbase --include=python3.11,ca-certificates bookworm "$ROOTFS" "$mirror" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  tar -C "$ROOTFS" --numeric-owner -cf "$MINBASE.partial" . && mv "$MINBASE.partial" "$MINBASE"
else
  say "reusing the minbase rootfs in $MINBASE"
  mkdir -p "$ROOTFS" && tar -C "$ROOTFS" --numeric-owner -xf "$MINBASE"
fi

say "building the project's wheels and the locked requirements"
uv=("$UV_PY" -m uv)
(cd "$ROOT" && UV_PYTHON_DOWNLOADS=never "${uv[@]}" build --all-packages --wheel --out-dir "$WORK/dist" -q)
(cd "$ROOT" && "${uv[@]}" export --frozen --no-dev --all-packages --no-emit-workspace --quiet \
  --output-file "$WORK/dist/requirements.txt")
uv_binary=$("$UV_PY" -c 'import uv; print(uv.find_uv_bin())')

say "installing the locked venv under chroot"
mkdir -p "$ROOTFS/build"
cp "$WORK"/dist/*.whl "$WORK/dist/requirements.txt" "$uv_binary" "$ROOTFS/build/"
# The host's trust store, so the package index is reached as the host reaches it (a TLS-inspecting
# proxy's CA included); it leaves with /build.
cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$ROOTFS/build/ca.crt"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
mount -t proc proc "$ROOTFS/proc"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin UV_CACHE_DIR=/build/cache UV_PYTHON_DOWNLOADS=never SSL_CERT_FILE=/build/ca.crt \
  UV_COMPILE_BYTECODE=1 /bin/sh -ec '
    /build/uv venv --quiet --python /usr/bin/python3.11 /opt/aforo/venv
    /build/uv pip install --quiet --python /opt/aforo/venv/bin/python --require-hashes -r /build/requirements.txt
    /build/uv pip install --quiet --python /opt/aforo/venv/bin/python --no-deps /build/*.whl
  '
umount "$ROOTFS/proc"

say "removing build leftovers"
rm -rf --one-file-system "$ROOTFS/build" "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/* \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/tmp/*
: >"$ROOTFS/etc/resolv.conf"
echo "aforo:x:10001:10001:aforo-notify:/nonexistent:/usr/sbin/nologin" >>"$ROOTFS/etc/passwd"
echo "aforo:x:10001:" >>"$ROOTFS/etc/group"

say "committing $OUT"
tar -C "$ROOTFS" --numeric-owner -cf "$WORK/rootfs.tar" .
container=$(buildah "${STORAGE[@]}" from scratch)
buildah "${STORAGE[@]}" add "$container" "$WORK/rootfs.tar" / >/dev/null
buildah "${STORAGE[@]}" config \
  --user 10001:10001 \
  --workingdir /tmp \
  --env PATH=/opt/aforo/venv/bin:/usr/local/bin:/usr/bin:/bin \
  --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 \
  --env AFORO_HTTP_HOST=0.0.0.0 --env AFORO_TRIGGER_DATA_DIR=/tmp/faust \
  --entrypoint '["aforo"]' --cmd '["--help"]' \
  --label org.opencontainers.image.title=aforo-notify \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  "$container"
rm -f "$OUT"
buildah "${STORAGE[@]}" commit --quiet --format oci --rm "$container" "oci-archive:$OUT:aforo-notify:latest" >/dev/null
rm -rf --one-file-system "$WORK/rootfs.tar" "$ROOTFS"
say "built $OUT ($(du -h "$OUT" | cut -f1))"
