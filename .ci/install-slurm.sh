#!/bin/sh
# Install SLURM and munge for the SLURM test (tests/test_slurm.py, which starts its own
# one-node cluster under a temporary directory; nothing here configures or starts a daemon).
# Run as root; idempotent: apt runs only when a tool is missing.
#  - slurm-wlm: slurmctld, slurmd, the client tools (sbatch, squeue, ...) and the plugins the
#    test cluster uses (select/cons_tres, gres/gpu, jobcomp/lua with liblua5.1);
#  - munge: munged, the authentication daemon.
set -eu
[ "$(id -u)" -eq 0 ] || { echo "install-slurm.sh: run as root" >&2; exit 1; }

PATH="$PATH:/usr/sbin:/sbin"
missing=""
for tool in slurmctld slurmd sbatch squeue munged; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
ls /usr/lib/*/slurm-wlm/jobcomp_lua.so >/dev/null 2>&1 || missing="$missing jobcomp_lua.so"
if [ -z "$missing" ]; then
    echo "install-slurm.sh: slurm-wlm and munge already installed"
    exit 0
fi
echo "install-slurm.sh: apt-installing slurm-wlm and munge (missing:$missing)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# The packages' services are not wanted (the test starts its own daemons); on a host that
# runs services they start and stop harmlessly for want of /etc/slurm/slurm.conf.
apt-get install -y -q --no-install-recommends slurm-wlm munge
