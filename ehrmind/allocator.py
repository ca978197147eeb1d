"""Keep freed memory in the process instead of handing it back to the OS (glibc malloc).

glibc serves each allocation above its mmap threshold (32 MB at most) with fresh pages from
mmap and unmaps them on free, so every large activation of a forward or backward pass is
page-faulted in anew: on a 2-core Xeon with AMX (this work's build machine) an fp32 multiply of two
32 x 273 x 1536 tensors took 11.9 ms with its output freshly mapped against 3.9 ms from reused
memory, and an SFT step of the embedded model 9.8 s against 6.4 s (`ehrmind bench`).
`mallopt(M_MMAP_MAX, 0)` serves large blocks from the heap and a high `M_TRIM_THRESHOLD` keeps
freed heap for reuse: a job's resident memory then stays near its peak until it exits (every
Snakemake job is its own process). The same as MALLOC_MMAP_MAX_=0 and MALLOC_TRIM_THRESHOLD_ in
the environment; numerics are unchanged. A no-op where the C library is not glibc.

Huge pages (`ENV`): glibc's `glibc.malloc.hugetlb=1` tunable asks the kernel for transparent
huge pages (2 MB) for the heap, so a job's memory is faulted in 2 MB at a time, not 4 kB, and
each TLB entry covers 512 times more of it. glibc reads tunables once, as a process starts, so
the workflow sets it in the environment its jobs inherit (`workflow/rules/common.smk`) and the
Makefile exports it; provenance records it (`glibc_tunables`). On a 2-core AMD EPYC VM where
first touching memory ran at ~0.55 GB/s (2 GiB in 3.7 s; 0.1 s with the tunable), a grid
evaluation job (medcalc, 105 prompts, one thread; four alternating pairs) went from ~460-500k to
132k page faults, 6.5-7.4 to 3.9-4.8 s of kernel time and 0.3-9.9 s less wall time a pair, its
predictions byte-identical; a GRPO job (4 steps) 1.33M -> 221k faults and 76-81 -> 67-72 s.
Where memory sits changes no arithmetic. Without transparent huge pages in the kernel
(`/sys/kernel/mm/transparent_hugepage/enabled` at never) or with a glibc older than 2.35 it
changes nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

ENV = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4   # glibc's <malloc.h>
TRIM_THRESHOLD = 2**31 - 1              # the largest value mallopt takes (an int): never trim below 2 GB free


def keep_freed_memory() -> bool:
    """Apply the settings above; True where they took effect."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # not glibc (macOS, musl without mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("glibc malloc: mmap off, trim threshold %d: %s", TRIM_THRESHOLD, done)
    return done
