"""Clear a stale Snakemake lock, never a live one.

Snakemake writes .snakemake/locks/<n>.input.lock and <n>.output.lock in its working directory
and removes them when it ends. A run killed with SIGKILL (or by the out-of-memory killer, or a
lost node) leaves them, and the next plain run stops with Snakemake's LockException. Snakemake's
own `--unlock` removes them whether or not another run is still working there.

`clear_stale` removes them only when no live Snakemake process works in that directory: it reads
/proc/<pid>/cmdline of every process for the `snakemake` program (the entry script, run directly
or by python, or `python -m snakemake`) and takes the directory it works in from `--directory`/`-d`
or else /proc/<pid>/cwd. A Snakemake process whose directory cannot be read (another user's)
counts as live. So does an `ehrmind` job still running there: `kill -9` of Snakemake alone
leaves its jobs running (a GRPO job keeps its GPU and goes on writing), and a rerun would start
the same job beside it. Only this machine's processes are visible: a run on another host of a shared
file system is not, so this is for the local runs `make reproduce` starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

LOCKS = Path(".snakemake") / "locks"


@dataclass
class Outcome:
    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    holders: list[tuple[int, str]] = field(default_factory=list)   # (pid, command line)
    message: str = ""


def _program(argv: list[str]) -> str:
    """The program a command line runs: its executable, or the script / -m module python runs."""
    if not argv:
        return ""
    if Path(argv[0]).name.startswith("python"):   # python [options] SCRIPT ..., or python -m MODULE
        rest = argv[1:]
        if "-m" in rest and rest.index("-m") + 1 < len(rest):
            return rest[rest.index("-m") + 1]
        if "-c" in rest:
            return ""
        scripts = [a for a in rest if not a.startswith("-")]
        return Path(scripts[0]).name if scripts else ""
    return Path(argv[0]).name


def _is_snakemake(argv: list[str]) -> bool:
    return _program(argv) == "snakemake"


def _is_job(argv: list[str]) -> bool:
    """An `ehrmind` verb, as the rules run it (directly or under accelerate launch -m ehrmind.cli)."""
    return _program(argv) in ("ehrmind", "ehrmind.cli") or (_program(argv) == "accelerate" and "ehrmind.cli" in argv)


def _workdir(argv: list[str], cwd: Path | None) -> Path | None:
    """The directory a Snakemake command line works in: --directory / -d, relative to its cwd."""
    for i, arg in enumerate(argv):
        if arg in ("--directory", "-d") and i + 1 < len(argv):
            target = argv[i + 1]
        elif arg.startswith("--directory="):
            target = arg.split("=", 1)[1]
        else:
            continue
        if os.path.isabs(target):
            return Path(target).resolve()
        return (cwd / target).resolve() if cwd else None
    return cwd


def snakemake_processes(proc: Path = Path("/proc")):
    """(pid, argv, directory or None when unreadable) of every live Snakemake process and
    ehrmind job on this machine."""
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:   # ended meanwhile, or not ours to read
            continue
        if not (_is_snakemake(argv) or _is_job(argv)):
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd")).resolve()
        except OSError:
            cwd = None
        yield int(entry.name), argv, _workdir(argv, cwd)


def clear_stale(directory: str | os.PathLike, proc: Path = Path("/proc")) -> Outcome:
    """Remove the lock files in DIRECTORY/.snakemake/locks unless a live Snakemake (or a job of
    one) works there."""
    directory = Path(directory).resolve()
    locks = sorted((directory / LOCKS).glob("*.lock"))
    if not locks:
        return Outcome(message=f"no Snakemake lock in {directory / LOCKS}")
    holders = [(pid, " ".join(argv)) for pid, argv, where in snakemake_processes(proc)
               if where is None or where == directory]
    if holders:
        who = "; ".join(f"pid {pid}: {cmd}" for pid, cmd in holders)
        return Outcome(kept=locks, holders=holders,
                       message=f"kept {len(locks)} lock file(s) in {directory / LOCKS}: a live Snakemake "
                               f"process or ehrmind job works in {directory} (or its directory cannot be "
                               f"read): {who}")
    for lock in locks:
        lock.unlink(missing_ok=True)
    return Outcome(removed=locks, message=f"removed {len(locks)} stale lock file(s) from {directory / LOCKS}: "
                                          f"no live Snakemake process works in {directory}")
