#!/bin/sh
# Install and configure podman for the container build and test (containers/, `make container`,
# tests/test_container.py). Run as root; idempotent: safe to run again.
#  - apt-installs podman, runc and debootstrap when missing (debootstrap builds the local base image
#    when no container registry answers, containers/build-base.sh);
#  - writes /etc/containers/containers.conf so Debian's podman runs with runc on build machines
#    without systemd or settable ulimits (DESIGN.md §7): no default ulimits, cgroupfs cgroups,
#    and the runc runtime (Debian's default, crun 1.8, stops with "cgroups in hybrid mode not
#    supported" on hosts with cgroup v1 controllers beside an empty cgroup v2 mount).
set -eu
[ "$(id -u)" -eq 0 ] || { echo "install-podman.sh: run as root" >&2; exit 1; }

missing=""
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "install-podman.sh: apt-installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
else
    echo "install-podman.sh: podman and debootstrap already installed"
fi

conf=/etc/containers/containers.conf
mkdir -p /etc/containers
touch "$conf"
# Add a key under its [section] unless the key is already set anywhere in the file.
ensure() {  # section key value
    if grep -Eq "^[[:space:]]*$2[[:space:]]*=" "$conf"; then
        echo "install-podman.sh: $conf already sets $2, kept"
    elif grep -Eq "^[[:space:]]*\[$1\]" "$conf"; then
        sed -i "/^[[:space:]]*\[$1\]/a $2 = $3" "$conf"
        echo "install-podman.sh: $conf: [$1] $2 = $3"
    else
        printf '\n[%s]\n%s = %s\n' "$1" "$2" "$3" >> "$conf"
        echo "install-podman.sh: $conf: [$1] $2 = $3"
    fi
}
ensure containers default_ulimits '[]'
ensure engine cgroup_manager '"cgroupfs"'
ensure engine runtime '"runc"'

if info=$(podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}' 2>&1); then
    echo "install-podman.sh: podman works (OCI runtime, cgroup manager: $info)"
else
    echo "install-podman.sh: warning: 'podman info' failed: $info" >&2
fi
