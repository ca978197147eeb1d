#!/bin/sh
# Build the CPU image (containers/Containerfile.cpu) with podman, else docker; `make container`.
#   1. the base image: containers/build-base.sh (the pinned debian:bookworm-slim, or a local
#      debootstrap base where no registry answers);
#   2. stage containers/local/ (ignored by git, bind-mounted into the pip step, not copied into
#      the image): the wheels found in $WHEELS (default: pip's find-links $PIP_FIND_LINKS, else
#      /opt/wheels; there the host's torch CPU wheel) and the host CA bundle $HOST_CA (default
#      $PIP_CERT, else /etc/ssl/certs/ca-certificates.crt). Without a local torch CPU wheel pip
#      also reads $TORCH_INDEX (default https://download.pytorch.org/whl/cpu);
#   3. build with the layer cache (a no-op when nothing changed), tag $IMAGE (default
#      ehrmind-cpu:latest) and ehrmind-cpu:<git short hash>, print build time and image size.
#      $BUILD_ARGS go to the build as they are (BUILD_ARGS=--no-cache: a cold build).
# Usage: containers/build-cpu.sh [podman|docker]   (or ENGINE=...)
set -eu
cd "$(dirname "$0")/.."
ENGINE=${1:-${ENGINE:-}}
if [ -z "$ENGINE" ]; then
    if command -v podman >/dev/null 2>&1; then ENGINE=podman
    elif command -v docker >/dev/null 2>&1; then ENGINE=docker
    else
        echo "build-cpu.sh: neither podman nor docker is installed; as root, .ci/install-podman.sh installs podman" >&2
        exit 1
    fi
fi
IMAGE=${IMAGE:-ehrmind-cpu:latest}
say() { echo "build-cpu.sh: $*" >&2; }
"$ENGINE" info >/dev/null 2>&1 || { say "'$ENGINE info' fails: $ENGINE cannot run here (root: .ci/install-podman.sh)"; exit 1; }

t0=$(date +%s)
BASE=$(containers/build-base.sh "$ENGINE" | tail -n 1)

stage=containers/local
mkdir -p "$stage"
find "$stage" -maxdepth 1 -name '*.whl' -exec rm -f {} +   # restaged below, links or copies
for dir in $(echo "${WHEELS:-${PIP_FIND_LINKS:-/opt/wheels}}" | tr ' ,' '\n\n'); do
    [ -d "$dir" ] || continue
    for whl in "$dir"/*.whl; do
        [ -f "$whl" ] || continue
        ln -f "$whl" "$stage/" 2>/dev/null || cp -p "$whl" "$stage/"
        say "staged wheel $(basename "$whl")"
    done
done
HOST_CA=${HOST_CA:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}
if [ -f "$HOST_CA" ]; then
    cmp -s "$HOST_CA" "$stage/host-ca.crt" || cp "$HOST_CA" "$stage/host-ca.crt"
    say "pip trusts the CA bundle $HOST_CA"
else
    rm -f "$stage/host-ca.crt"
fi
set --
if ! ls "$stage"/torch-*+cpu-*.whl >/dev/null 2>&1; then
    say "no local torch CPU wheel: pip also reads ${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
    set -- --build-arg "PIP_EXTRA_INDEX_URL=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
fi
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain 2>/dev/null)" ] || rev="$rev-dirty"

[ "$ENGINE" = docker ] && export DOCKER_BUILDKIT=1
say "$ENGINE build -f containers/Containerfile.cpu --build-arg BASE=$BASE -t $IMAGE -t ehrmind-cpu:$rev"
t1=$(date +%s)
"$ENGINE" build --network=host -f containers/Containerfile.cpu --build-arg "BASE=$BASE" "$@" ${BUILD_ARGS:-} \
    -t "$IMAGE" -t "ehrmind-cpu:$rev" .
t2=$(date +%s)
size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE (also ehrmind-cpu:$rev) from $BASE"
say "build time: $((t2 - t1)) s (image build), $((t2 - t0)) s in all (with base and staging)"
say "image size: $size bytes ($(awk "BEGIN{printf \"%.0f\", $size/1e6}") MB)"
