"""Exact mode: results that do not depend on the CPU's instruction set or the thread count.

Rounding differs across machines where kernels differ: bf16 matmuls exist only on AVX512-BF16
and AMX CPUs, and fp32 kernels dispatch to AVX2 or AVX-512 code with other summation orders.
Exact mode (config `exact: true`; the rules then set these variables before Python starts)
computes in fp32 with the kernels every x86-64 CPU runs the same way:

  ATEN_CPU_CAPABILITY=default   PyTorch's own kernels without AVX2/AVX-512 dispatch
  MKL_CBWR=COMPATIBLE           MKL's conditional numerical reproducibility, its baseline code path
  ONEDNN_MAX_CPU_ISA=SSE41      oneDNN likewise
  deterministic algorithms      torch.use_deterministic_algorithms(True)

scripts/exact_mode_check.py measures what each setting changes on one machine and what exact
mode costs; the README quotes it.
"""
from __future__ import annotations

import os

ENV = {"EHRMIND_EXACT": "1", "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE",
       "ONEDNN_MAX_CPU_ISA": "SSE41"}


def enabled() -> bool:
    return os.environ.get("EHRMIND_EXACT") == "1"


def shell_prefix() -> str:
    """The variables as a shell prefix for a rule's command."""
    return " ".join(f"{k}={v}" for k, v in ENV.items())


def apply() -> None:
    """In exact mode: deterministic algorithms (the variables above must already be set)."""
    if enabled():
        import torch
        torch.use_deterministic_algorithms(True)
