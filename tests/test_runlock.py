"""Stale Snakemake locks (left by a killed run) are cleared; a lock of a live Snakemake run is
kept, and the outcome names the process. Live runs are played by a sleeping python process
whose program is a script named `snakemake`."""
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ehrmind import cli, runlock


def make_locks(workdir: Path) -> list[Path]:
    locks = workdir / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    files = [locks / "0.input.lock", locks / "0.output.lock"]
    for f in files:
        f.write_text(f"{workdir}/results/x.json\n")
    return files


@pytest.fixture
def fake_snakemake(tmp_path):
    """Start `python <tmp>/bin/snakemake ARGS` in a given directory; stop it afterwards (by pid)."""
    script = tmp_path / "bin" / "snakemake"
    script.parent.mkdir()
    script.write_text("import time\ntime.sleep(120)\n")
    started = []

    def start(cwd: Path, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, str(script), *args], cwd=cwd)
        started.append(proc)
        for _ in range(100):   # until its command line is visible
            if Path(f"/proc/{proc.pid}/cmdline").read_bytes().count(b"snakemake"):
                break
            time.sleep(0.05)
        return proc
    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_stale_lock_is_cleared(tmp_path):
    files = make_locks(tmp_path)
    empty_proc = tmp_path / "proc"   # no process at all
    empty_proc.mkdir()
    outcome = runlock.clear_stale(tmp_path, proc=empty_proc)
    assert outcome.removed == files and not any(f.exists() for f in files)
    assert "removed 2 stale lock file(s)" in outcome.message
    assert runlock.clear_stale(tmp_path).message.startswith("no Snakemake lock")


def test_a_live_snakemake_keeps_its_lock(tmp_path, fake_snakemake):
    work = tmp_path / "work"
    work.mkdir()
    files = make_locks(work)
    proc = fake_snakemake(work, "--cores", "2")
    outcome = runlock.clear_stale(work)
    assert all(f.exists() for f in files) and outcome.kept == files and outcome.removed == []
    assert proc.pid in [pid for pid, _ in outcome.holders]
    assert f"pid {proc.pid}: {sys.executable} {tmp_path}/bin/snakemake --cores 2" in outcome.message
    proc.kill()
    proc.wait()
    after = runlock.clear_stale(work)   # stopped: now stale (unless another run works here)
    assert proc.pid not in [pid for pid, _ in after.holders]
    assert after.removed == ([] if after.holders else files)


def test_a_live_snakemake_found_by_its_directory_option(tmp_path, fake_snakemake):
    work = tmp_path / "work"
    work.mkdir()
    make_locks(work)
    proc = fake_snakemake(tmp_path, "--directory", "work", "-n")
    outcome = runlock.clear_stale(work)
    assert proc.pid in [pid for pid, _ in outcome.holders] and outcome.removed == []


def test_snakemake_elsewhere_and_other_programs_here_do_not_hold_it(tmp_path, fake_snakemake):
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    other.mkdir()
    make_locks(work)
    elsewhere = fake_snakemake(other, "--cores", "1")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "snakemake"], cwd=work)
    try:
        holders = [pid for pid, _, where in runlock.snakemake_processes() if where in (work, None)]
        assert elsewhere.pid not in holders and sleeper.pid not in holders
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("argv,expected", [
    (["snakemake", "--cores", "2"], True),
    (["/x/.venv/bin/python3", "/x/.venv/bin/snakemake", "-n"], True),
    (["python3.11", "-u", "/x/bin/snakemake"], True),
    (["python", "-m", "snakemake", "--cores", "1"], True),
    (["python", "-c", "print()", "snakemake"], False),
    (["vim", "Snakefile"], False),
    (["python3", "-c", "import snakemake"], False),
    (["/usr/bin/bash", "-c", "snakemake --cores 2"], False),   # its child snakemake is the one that counts
])
def test_what_counts_as_snakemake(argv, expected):
    assert runlock._is_snakemake(argv) is expected


@pytest.mark.parametrize("argv,expected", [
    (["/x/.venv/bin/python3", "/x/.venv/bin/ehrmind", "grpo", "--task", "medcalc"], True),
    (["python", "-m", "ehrmind.cli", "sft"], True),
    (["/x/bin/python3", "/x/bin/accelerate", "launch", "--num_processes", "2", "-m", "ehrmind.cli", "sft"], True),
    (["/x/bin/python3", "/x/bin/accelerate", "launch", "train.py"], False),
    (["python", "-m", "pytest", "tests/test_runlock.py"], False),
])
def test_what_counts_as_a_job_of_a_run(argv, expected):
    assert runlock._is_job(argv) is expected


def test_a_job_left_running_by_a_killed_snakemake_keeps_the_lock(tmp_path):
    """kill -9 of Snakemake alone leaves its jobs running; a rerun must not start them again."""
    script = tmp_path / "ehrmind"
    script.write_text("import time\ntime.sleep(120)\n")
    make_locks(tmp_path)
    job = subprocess.Popen([sys.executable, str(script), "grpo"], cwd=tmp_path)
    try:
        time.sleep(0.3)
        outcome = runlock.clear_stale(tmp_path)
        assert job.pid in [pid for pid, _ in outcome.holders] and outcome.removed == []
        assert "ehrmind job works in" in outcome.message
    finally:
        job.kill()
        job.wait()


def test_cli_verb(tmp_path, fake_snakemake, capsys):
    make_locks(tmp_path)
    fake_snakemake(tmp_path)
    with pytest.raises(SystemExit, match="a live Snakemake process or ehrmind job works in"):
        cli.main(["unlock-stale", "--directory", str(tmp_path)])
    assert (tmp_path / ".snakemake/locks/0.input.lock").exists()
