"""Training on several GPUs: `ehrmind launch VERB ...` runs a training verb plainly on 0 or 1
GPU and under `accelerate launch` (FSDP, workflow/accelerate/fsdp.yaml) on more.

A rule runs, e.g.:  EHRMIND_GPUS={resources.gpu} ehrmind launch sft --task ... --out ...
The outer process claims the job's GPUs first (ehrmind.cli -> devices.claim_for_job), then starts
accelerate's N worker processes with CUDA_VISIBLE_DEVICES narrowed to them and
EHRMIND_GPUS_CLAIMED set, so the workers, each an `ehrmind.cli` process, claim nothing again.
The outer process holds the device locks until the workers end. The rendezvous port is a free
one picked at launch, so two multi-GPU jobs on one machine do not collide on accelerate's 29500.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

FSDP_CONFIG = Path("workflow/accelerate/fsdp.yaml")
CLAIMED = "EHRMIND_GPUS_CLAIMED"      # set for the workers: the launcher holds their devices
TRAINING_VERBS = ("sft", "grpo")      # what accelerate may run; generation scales through vLLM


def free_port() -> int:
    """A TCP port free on this machine now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_prefix(n_gpus: int, config_path: str | os.PathLike = FSDP_CONFIG) -> list[str]:
    """argv to put before a verb's arguments: [] for 0 or 1 GPU (run `ehrmind VERB` plainly),
    else accelerate launch of `python -m ehrmind.cli` on n_gpus processes with the FSDP config."""
    if n_gpus <= 1:
        return []
    return ["accelerate", "launch", "--config_file", str(config_path), "--num_processes", str(n_gpus),
            "--num_machines", "1", "--main_process_port", str(free_port()), "-m", "ehrmind.cli"]


def fsdp_active() -> bool:
    """True inside a worker that accelerate launched with FSDP (it sets ACCELERATE_USE_FSDP)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"


def run(command: list[str], n_gpus: int, config_path: str | os.PathLike = FSDP_CONFIG) -> int:
    """Run `ehrmind COMMAND` on n_gpus: in this process for 0 or 1, under accelerate for more."""
    if not command:
        raise SystemExit("error: ehrmind launch needs a verb to run, e.g. `ehrmind launch sft --task ...`")
    if n_gpus <= 1:
        from ehrmind import cli
        args = cli.parser().parse_args(command)
        args.func(args)
        return 0
    if command[0] not in TRAINING_VERBS:
        raise SystemExit(f"error: ehrmind launch runs {' and '.join(TRAINING_VERBS)} on several GPUs, not "
                         f"{command[0]!r}; generation uses several GPUs through vLLM (tensor_parallel_size)")
    if not Path(config_path).is_file():
        raise SystemExit(f"error: accelerate config {config_path} not found; run from the repository root "
                         "or pass --accelerate-config")
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if "CUDA_VISIBLE_DEVICES" in os.environ and len(visible) < n_gpus:
        raise SystemExit(f"error: {n_gpus} GPU processes asked for, but CUDA_VISIBLE_DEVICES shows "
                         f"{len(visible)} ({','.join(visible) or 'none'}); EHRMIND_GPUS claims the job's GPUs")
    argv = launch_prefix(n_gpus, config_path) + command
    env = {**os.environ, CLAIMED: os.environ.get("CUDA_VISIBLE_DEVICES", "scheduler")}
    log.info("%d GPUs: %s", n_gpus, " ".join(argv))
    return subprocess.run(argv, env=env, check=False).returncode
