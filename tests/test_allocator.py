"""The allocator settings: large tensors come from the reused heap, not fresh mmap'd pages, and
the jobs' environment puts that heap on huge pages."""
import os
import platform
import re
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys, torch
from ehrmind.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
before = mallinfo2().hblkhd
x = torch.empty(64 * 2**20, dtype=torch.uint8)   # above glibc's largest mmap threshold
print(mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_large_tensors_come_from_the_heap_once_freed_memory_is_kept():
    def mapped(mode):   # bytes in mmap'd blocks that the 64 MB tensor added, in a fresh process
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])
    assert mapped("default") >= 64 * 2**20   # glibc's default: the tensor gets its own mapping
    assert mapped("keep") == 0


HUGE = """
import re, torch
x = torch.ones(64 * 2**20, dtype=torch.uint8)   # touched: faulted in
print(int(re.search(r"AnonHugePages:\\s+(\\d+)", open("/proc/self/smaps_rollup").read()).group(1)))
"""


def _thp_mode() -> str:
    try:
        return re.search(r"\[(\w+)\]", open("/sys/kernel/mm/transparent_hugepage/enabled").read()).group(1)
    except OSError:
        return "never"


def _glibc_version() -> tuple[int, ...]:
    name, version = platform.libc_ver()
    return tuple(int(part) for part in version.split(".")[:2]) if name == "glibc" and version else (0, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux") or _thp_mode() == "never" or _glibc_version() < (2, 35),
                    reason="needs the kernel's transparent huge pages and glibc >= 2.35")
def test_the_job_environment_puts_the_heap_on_huge_pages():
    def huge_kb(env):
        out = subprocess.run([sys.executable, "-c", HUGE], capture_output=True, text=True, check=True,
                             env={**os.environ, **env})
        return int(out.stdout.split()[-1])
    from ehrmind import allocator
    assert huge_kb(allocator.ENV) >= 32 * 1024
