"""The tiny end-to-end grid through SLURM, with workflow/profiles/slurm, on a one-node
cluster started for this module (tests/slurm/cluster.py: munged, slurmctld and slurmd
as root, everything under a temporary directory, two placeholder GPUs as GRES).

The run config asks for one GPU per training/generation job. The jobs still run on the
CPU (there is no CUDA), but SLURM schedules and records them as GPU jobs: the cluster's
job-completion log must show gres gpu:1 for every job of a GPU rule and no GRES for the
others, and the tables must be byte-identical to the local tiny run's.
Run with `pytest -s` to see the wall times of both runs."""
import os
import re
import time
from pathlib import Path

import pytest

from tests.conftest import run_tiny_grid, skip_unless_required, table_files
from tests.slurm.cluster import Cluster, missing_tools

GPU_RULES = {"sft", "grpo", "evaluate", "transfer", "passk", "passk_primer", "robustness", "eag_sft", "mcts",
             "eag_grpo", "eag_evaluate"}
CPU_RULES = {"prepare_data", "prepare_shuffled", "transfer_test", "prepare_model", "merge_train", "gate", "gate_primer", "expert",
             "eag_warmup_data", "tables", "report_figures", "report_pages"}
PARTITION = "gpu"


def _skip_reason() -> str | None:
    missing = missing_tools()
    if missing:
        return (f"no SLURM test cluster: {', '.join(missing)} not installed "
                "(.ci/install-slurm.sh installs slurm-wlm and munge)")
    if os.geteuid() != 0:
        return "no SLURM test cluster: its daemons (munged, slurmctld, slurmd) must run as root"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_available():
    """Skip (fail where EHRMIND_REQUIRE names slurm) before anything runs, without SLURM."""
    reason = _skip_reason()
    if reason:
        skip_unless_required("slurm", reason)


@pytest.fixture(scope="module")
def local_run(request):
    """The session's local tiny run, timed here when this module is the first to ask for it."""
    start = time.monotonic()
    run = request.getfixturevalue("tiny_run")
    elapsed = time.monotonic() - start
    return run, (elapsed if elapsed > 1 else None)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, local_run):   # after the local run: they would share two cores
    cluster = Cluster(tmp_path_factory.mktemp("slurm"), gpus=2, partition=PARTITION)
    saved = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
        os.environ["SLURM_CONF"] = str(cluster.conf)   # for sbatch/squeue under Snakemake
        yield cluster
    finally:
        cluster.stop()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, model_cache, cluster):
    root = tmp_path_factory.mktemp("grid_slurm")
    start = time.monotonic()
    run = run_tiny_grid(
        root, model_cache,
        "--workflow-profile", "workflow/profiles/slurm",
        # The test cluster: no accounting database, so no accounts and squeue for states
        # (MinJobAge keeps finished jobs visible); status checks every second or two.
        "--slurm-status-command", "squeue", "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
        "--latency-wait", "5", "--retries", "0",
        "--slurm-logdir", str(root / "slurm_logs"), "--slurm-keep-successful-logs",
        "--default-resources", f"slurm_partition={PARTITION}", "mem_mb=1000", "runtime=30",
        resources={"gpu": 1, "gpu_model": None, "cpus_per_gpu": 1, "mem_mb": 2000, "runtime": 30},
    )
    return run, time.monotonic() - start


def _span(results: Path) -> float:
    """Seconds from the first to the last file written under results."""
    times = [p.stat().st_mtime for p in results.rglob("*") if p.is_file()]
    return max(times) - min(times)


def _rule(comment: str) -> str:
    """The rule of a job from the comment the executor gives it: rule_<name>[_wildcards_...]."""
    match = re.fullmatch(r"rule_(\w+?)(_wildcards_.*)?", comment)
    assert match, comment
    return match.group(1)


def test_slurm_run_matches_local_run_and_requests_gpus(local_run, slurm_run, cluster):
    (_, local_results, _), local_s = local_run
    (_, results, _), slurm_s = slurm_run
    local_text = f"{local_s:.0f} s" if local_s else "run earlier in this session"
    print(f"\nlocal tiny run: {local_text} (outputs written over {_span(local_results):.0f} s); "
          f"SLURM tiny run: {slurm_s:.0f} s (outputs written over {_span(results):.0f} s)")

    # (a) the same tables, byte for byte, but for the pass@k cost table (wall times)
    local, slurm = table_files(local_results), table_files(results)
    assert local and sorted(slurm) == sorted(local)
    differ = [name for name in local if local[name] != slurm[name]]
    assert not differ, f"tables differ from the local run: {differ}"

    # (b) the scheduler's record: GPU rules got one GPU each, the others none
    jobs = cluster.completed_jobs()
    assert jobs, f"no job-completion records in {cluster.jobcomp}"
    seen = {}
    for job in jobs:
        rule = _rule(job["Comment"])
        seen[rule] = seen.get(rule, 0) + 1
        assert job["JobState"] == "COMPLETED", job
        assert job["Partition"] == PARTITION, job
        if rule in GPU_RULES:
            assert job["Gres"] == "gpu:1" and job["TresPerJob"] == "gres:gpu:1", job
        else:
            assert rule in CPU_RULES, job
            assert job["Gres"] == "" and "gpu" not in job["TresPerJob"], job
    assert set(seen) == GPU_RULES | CPU_RULES, seen
    print(f"{len(jobs)} SLURM jobs: " + ", ".join(f"{r} {n}" for r, n in sorted(seen.items())))
