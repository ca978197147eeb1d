"""GPU jobs on one machine each get their own device; the DAG's GPU annotations."""
import os
import re

import pytest
import yaml

from ehrmind import devices
from tests.conftest import REPO, run_snakemake


@pytest.fixture
def no_held_locks(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    yield
    for handle in devices._held:
        handle.close()
    devices._held.clear()


def test_two_jobs_never_share_a_device(tmp_path, no_held_locks):
    first = devices.claim(1, devices=["0", "1"], lock_dir=tmp_path)
    assert first == ["0"] and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    second = devices.claim(1, devices=["0", "1"], lock_dir=tmp_path)
    assert second == ["1"] and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    with pytest.raises(devices.GPUUnavailable, match="no 1 free GPU"):
        devices.claim(1, devices=["0", "1"], lock_dir=tmp_path, poll_s=0.01, timeout_s=0.05)
    devices._held.pop(0).close()   # the first job ends: its device is free again
    assert devices.claim(1, devices=["0", "1"], lock_dir=tmp_path) == ["0"]


def test_a_two_gpu_job_waits_rather_than_taking_one(tmp_path, no_held_locks):
    devices.claim(1, devices=["0", "1"], lock_dir=tmp_path)
    with pytest.raises(devices.GPUUnavailable):
        devices.claim(2, devices=["0", "1"], lock_dir=tmp_path, poll_s=0.01, timeout_s=0.05)
    assert len(devices._held) == 1   # the partial claim was given back


def test_too_few_devices_is_a_clear_error(tmp_path, no_held_locks):
    with pytest.raises(devices.GPUUnavailable, match="asks for 2 GPU.*1 are visible.*resources.gpu"):
        devices.claim(2, devices=["0"], lock_dir=tmp_path)


def test_slurm_and_cpu_jobs_claim_nothing(monkeypatch, no_held_locks):
    monkeypatch.setenv("EHRMIND_GPUS", "0")
    assert devices.claim_for_job() == []
    monkeypatch.setenv("EHRMIND_GPUS", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "42")   # the scheduler has already chosen the device
    assert devices.claim_for_job() == []


def test_visible_devices_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert devices.visible_devices() == ["2", "3"]


def test_only_training_and_generation_rules_ask_for_gpus(tmp_path):
    cfg = yaml.safe_load((REPO / "workflow/config/tiny.yaml").read_text())
    cfg.update(results_dir=str(tmp_path / "results"),
               resources={"gpu": 1, "gpu_model": "h100", "cpus_per_gpu": 4, "mem_mb": 16000, "runtime": 60})
    config = tmp_path / "gpu.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = run_snakemake(config, "--dry-run", "--printshellcmds")
    assert proc.returncode == 0, proc.stderr[-3000:]
    blocks = re.split(r"^\[.*\]$", proc.stdout + proc.stderr, flags=re.M)   # a job per "[date]" header
    jobs = [(m.group(1), b) for b in blocks if (m := re.match(r"\s*(?:rule|checkpoint) (\w+):", b))]
    gpu_rules = {"sft", "grpo", "evaluate", "transfer", "passk", "passk_primer", "robustness", "eag_sft", "mcts", "eag_grpo",
                 "eag_evaluate"}
    assert {rule for rule, _ in jobs} >= gpu_rules | {"prepare_data", "prepare_model", "gate", "tables"}
    for rule, body in jobs:
        resources = re.search(r"resources: (.*)", body)
        resources = resources.group(1) if resources else ""
        if rule in gpu_rules:
            for want in ("gpu=1", "gpu_model=h100", "cpus_per_gpu=4", "mem_mb=16000", "runtime=60"):
                assert want in resources, (rule, resources)
            assert "EHRMIND_GPUS=1" in body and "threads: 2" in body, (rule, body)
        else:
            assert "gpu" not in resources, (rule, resources)
