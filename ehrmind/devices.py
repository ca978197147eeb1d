"""Give each GPU job its own device(s) when Snakemake runs several on one machine.

Snakemake's `gpu` resource only counts: with `--resources gpu=2` two jobs may run at
once, but both would see every device and start on cuda:0. A GPU job therefore claims
free devices here, before CUDA starts, by taking an exclusive lock file per device, and
narrows CUDA_VISIBLE_DEVICES to them. The locks are released when the process exits
(the kernel drops flock locks with the file descriptors), so a crashed job frees its
GPU too. Under SLURM the scheduler assigns devices itself and nothing is claimed.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)
_held: list = []   # open lock files: kept for the life of the process


class GPUUnavailable(RuntimeError):
    """Fewer GPUs than a job asks for are visible, or none came free in time."""


def visible_devices() -> list[str]:
    """Device ids this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    if not shutil.which("nvidia-smi"):
        return []
    out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                         capture_output=True, text=True, check=False)
    return out.stdout.split() if out.returncode == 0 else []


def claim(n: int, devices: list[str] | None = None, lock_dir: Path | None = None,
          poll_s: float = 5.0, timeout_s: float | None = None) -> list[str]:
    """Lock n free devices, set CUDA_VISIBLE_DEVICES to them and return their ids.

    Waits (polling) while fewer than n are free; raises GPUUnavailable when fewer than n
    exist at all, or when timeout_s passes.
    """
    devices = visible_devices() if devices is None else devices
    if len(devices) < n:
        raise GPUUnavailable(f"this job asks for {n} GPU(s) but {len(devices)} are visible "
                             f"({', '.join(devices) or 'none'}); set resources.gpu in the run config to 0 "
                             "to run on the CPU, or run where GPUs are visible")
    lock_dir = Path(lock_dir or os.environ.get("EHRMIND_GPU_LOCK_DIR")
                    or Path(tempfile.gettempdir()) / "ehrmind-gpu-locks")
    lock_dir.mkdir(parents=True, exist_ok=True)
    start, waiting = time.monotonic(), False
    while True:
        got = []
        for device in devices:
            handle = open(lock_dir / f"gpu{device}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            got.append((device, handle))
            if len(got) == n:
                break
        if len(got) == n:
            _held.extend(handle for _, handle in got)
            ids = [device for device, _ in got]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
            log.info("using GPU %s (CUDA_VISIBLE_DEVICES)", ",".join(ids))
            return ids
        for _, handle in got:   # partial claim: give back and wait, so two jobs cannot deadlock
            handle.close()
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise GPUUnavailable(f"no {n} free GPU(s) among {', '.join(devices)} after {timeout_s:.0f} s "
                                 f"(locks in {lock_dir})")
        if not waiting:
            log.info("waiting for %d free GPU(s) among %s", n, ", ".join(devices))
            waiting = True
        time.sleep(poll_s)


def claim_for_job() -> list[str]:
    """The CLI's entry: claim EHRMIND_GPUS devices (set by the GPU rules), except under SLURM and
    in the workers of `ehrmind launch` (EHRMIND_GPUS_CLAIMED: the launcher holds their devices)."""
    n = int(os.environ.get("EHRMIND_GPUS") or 0)
    if n <= 0 or os.environ.get("SLURM_JOB_ID") or os.environ.get("EHRMIND_GPUS_CLAIMED"):
        return []
    return claim(n)
