"""Where a result came from: package versions, git commit, device."""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from typing import Any

PACKAGES = ("ehrmind", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "scipy", "snakemake")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else None


ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")   # what changes the kernels torch dispatches to


def cpu() -> dict[str, Any]:
    """The CPU's model name and the ISA extensions that decide kernel dispatch (Linux /proc/cpuinfo)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return {}
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return {"cpu_model": model, "isa": [f for f in ISA_FLAGS if f in flags]}


def device_info() -> dict[str, Any]:
    import torch
    info: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                            "torch_threads": torch.get_num_threads(), **cpu(),
                            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}   # huge pages: allocator.py
    if torch.cuda.is_available():
        info.update(device="cuda", gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count())
    else:
        info.update(device="cpu", processor=platform.processor() or platform.machine())
    return info


def collect() -> dict[str, Any]:
    return {"packages": package_versions(), "git_commit": git_commit(), "device": device_info()}
