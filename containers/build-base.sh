#!/bin/sh
# Produce the base image of containers/Containerfile.cpu and print its reference on stdout
# (the last line; progress goes to stderr), for `--build-arg BASE=<ref>`.
#
#   1. the pinned base (ARG BASE=... in Containerfile.cpu, debian:bookworm-slim by digest), when it
#      is already in the local image store, or
#   2. the local base $EHRMIND_LOCAL_BASE (default localhost/ehrmind-base:bookworm), when an earlier
#      run built it (cache; EHRMIND_BASE_PULL=1 tries the registry first anyway), or
#   3. the pinned base pulled from its registry (given $EHRMIND_PULL_TIMEOUT s, default 30), or
#   4. when no registry answers: a minimal Debian bookworm made by
#      `debootstrap --variant=minbase bookworm` (needs root, debootstrap and deb.debian.org or
#      $DEBIAN_MIRROR), imported as $EHRMIND_LOCAL_BASE.
#
# Usage: containers/build-base.sh [podman|docker]   (default: $ENGINE, else podman, else docker)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ENGINE=${1:-${ENGINE:-}}
if [ -z "$ENGINE" ]; then
    if command -v podman >/dev/null 2>&1; then ENGINE=podman
    elif command -v docker >/dev/null 2>&1; then ENGINE=docker
    else echo "build-base.sh: neither podman nor docker found (root: .ci/install-podman.sh)" >&2; exit 1; fi
fi
PINNED=$(sed -n 's/^ARG BASE=//p' "$here/Containerfile.cpu" | head -n 1)
LOCAL=${EHRMIND_LOCAL_BASE:-localhost/ehrmind-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
say() { echo "build-base.sh: $*" >&2; }
exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

[ -n "$PINNED" ] || { say "no 'ARG BASE=' line in $here/Containerfile.cpu"; exit 1; }
if exists "$PINNED"; then
    say "base: the pinned image $PINNED (already in the local store)"
    echo "$PINNED"; exit 0
fi
if exists "$LOCAL" && [ "${EHRMIND_BASE_PULL:-0}" != 1 ]; then
    say "base: $LOCAL, the local debootstrap base built earlier (reused; rm it or set EHRMIND_BASE_PULL=1 to try the registry)"
    echo "$LOCAL"; exit 0
fi
say "pulling the pinned base $PINNED (timeout ${EHRMIND_PULL_TIMEOUT:-30} s)"
if timeout "${EHRMIND_PULL_TIMEOUT:-30}" "$ENGINE" pull "$PINNED" >&2; then
    say "base: the pinned image $PINNED (pulled)"
    echo "$PINNED"; exit 0
fi
if exists "$LOCAL"; then
    say "no registry answered; base: $LOCAL (reused)"
    echo "$LOCAL"; exit 0
fi

say "no registry answered; building $LOCAL with debootstrap --variant=minbase bookworm from $MIRROR"
command -v debootstrap >/dev/null 2>&1 || { say "debootstrap is missing (root: .ci/install-podman.sh)"; exit 1; }
[ "$(id -u)" -eq 0 ] || { say "debootstrap needs root"; exit 1; }
root=$(mktemp -d "${TMPDIR:-/var/tmp}/ehrmind-base.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM
debootstrap --variant=minbase bookworm "$root" "$MIRROR" >&2
# As in debian:bookworm-slim: updates and security suites, no apt or package caches.
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
SOURCES
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log \
       "$root"/var/cache/debconf/*-old "$root"/tmp/* "$root"/root/.bash_history
tar --numeric-owner -C "$root" -cf - . \
    | "$ENGINE" import --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase bookworm $MIRROR" - "$LOCAL" >&2
say "base: $LOCAL (built with debootstrap; $("$ENGINE" image inspect --format '{{.Size}}' "$LOCAL") bytes)"
echo "$LOCAL"
