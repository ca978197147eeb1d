"""The CPU image (containers/Containerfile.cpu, built by `make container`) runs the tiny
end-to-end DAG as its non-root user, offline, and writes the same tables as the host run of
the same config, byte for byte (passk_cost, timings, aside). Skipped where neither podman nor
docker works (as root, .ci/install-podman.sh installs and configures podman).
Build and run times are printed (pytest -s)."""
import os
import shutil
import subprocess
import time

import pytest
import yaml

from tests.conftest import ONE_THREAD_RULES, REPO, skip_unless_required, table_files

IMAGE = os.environ.get("IMAGE", "ehrmind-cpu:latest")
IN = "/results"                      # the host folder's mount point in the container
ONE_THREAD = [f"{rule}=1" for rule in ONE_THREAD_RULES]


def _working_engine() -> str | None:
    for tool in ("podman", "docker"):
        if shutil.which(tool):
            try:
                if subprocess.run([tool, "info"], capture_output=True, timeout=120).returncode == 0:
                    return tool
            except subprocess.TimeoutExpired:
                pass
    return None


@pytest.fixture(scope="module")
def engine() -> str:
    tool = _working_engine()
    if tool is None:
        skip_unless_required("container", "no container engine: neither `podman info` nor `docker info` works here "
                    "(as root, .ci/install-podman.sh installs and configures podman)")
    return tool


@pytest.fixture(scope="module")
def image(engine) -> str:
    """`make container`: the layer cache makes it a no-op when nothing changed."""
    start = time.monotonic()
    proc = subprocess.run(["make", "container"], cwd=REPO, env={**os.environ, "ENGINE": engine, "IMAGE": IMAGE},
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    summary = [l for l in proc.stderr.splitlines() if l.startswith("build-base.sh: base:") or
               l.startswith("build-cpu.sh: built") or l.startswith("build-cpu.sh: image size")]
    print(f"\n[container] make container ({engine}): {time.monotonic() - start:.0f} s", *summary, sep="\n  ")
    return IMAGE


def test_tiny_grid_in_the_container_matches_the_host(engine, image, request, tmp_path):
    start = time.monotonic()
    _, host_results, cfg = request.getfixturevalue("tiny_run")   # the host run, unless done earlier
    host_s = time.monotonic() - start
    shared = tmp_path / "container"
    shared.mkdir()
    shared.chmod(0o777)   # the container's user (uid 1000, not root) writes here
    config = {**cfg, "results_dir": f"{IN}/results", "model_cache": "/home/ehrmind/model_cache"}
    (shared / "tiny.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    script = (f"id -u > {IN}/uid && exec snakemake --configfile {IN}/tiny.yaml --cores 2 --nolock "
              f"--set-threads {' '.join(ONE_THREAD)}")
    start = time.monotonic()
    proc = subprocess.run([engine, "run", "--rm", "--network=none", "-v", f"{shared}:{IN}", image, "sh", "-c", script],
                          capture_output=True, text=True, timeout=1800)
    container_s = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    print(f"\n[container] tiny DAG: {container_s:.0f} s in the container; host run "
          + (f"{host_s:.0f} s" if host_s > 1 else "done earlier in this session (see --durations)"))

    uid = int((shared / "uid").read_text())
    assert uid != 0, "the DAG ran as root in the container"
    main = shared / "results/tables/main.csv"
    assert main.stat().st_uid != 0, "the container's outputs are owned by root"

    host, container = table_files(host_results), table_files(shared / "results")
    assert sorted(container) == sorted(host)
    differ = [name for name in host if host[name] != container[name]]
    assert not differ, f"tables differ between host and container: {differ}; " \
                       f"diff -r -x 'passk_cost.*' {host_results / 'tables'} {shared / 'results/tables'}"
