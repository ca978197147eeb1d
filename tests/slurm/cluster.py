"""A throwaway one-node SLURM cluster on localhost, for tests/test_slurm.py.

munged, slurmctld and slurmd run as root with every file they write (key, socket,
state, spool, logs, pid files, the job-completion log) under one directory; the
generated slurm.conf and gres.conf lie there too and the client tools find them
through SLURM_CONF (`Cluster.env`), or through a link /run/slurm/conf to that directory
while the cluster runs (see _link_run_conf). Nothing under /etc is written. The node offers `gpus` GPUs as
GRES backed by placeholder files, so GPU requests are scheduled and recorded on a
machine without any.

Daemons are stopped by the pids in their pid files, never by name.

By hand (as root):
    python -m tests.slurm.cluster start /tmp/ehrmind-slurm   # prints the SLURM_CONF to export
    python -m tests.slurm.cluster stop /tmp/ehrmind-slurm
"""
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
RUN_CONF = Path("/run/slurm/conf")   # where client tools look last for slurm.conf (configless mode)


def _find(tool: str) -> str | None:
    """A tool on PATH or in the sbin folders, where Debian puts the daemons."""
    return shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def missing_tools() -> list[str]:
    """The daemons and client tools this cluster needs that are not installed."""
    return [t for t in DAEMONS + CLIENTS if _find(t) is None]


def _which(tool: str) -> str:
    path = _find(tool)
    if path is None:
        raise FileNotFoundError(tool)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_for(predicate, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s\n{tail}")


class Cluster:
    def __init__(self, root: Path, gpus: int = 2, partition: str = "debug"):
        self.root = Path(root).resolve()
        self.gpus = gpus
        self.partition = partition
        self.conf = self.root / "slurm.conf"
        self.jobcomp = self.root / "log/jobcomp.txt"
        self.munge_socket = self.root / "munge/munge.socket"
        self.ctld_port = _free_port()
        self.pidfiles = {
            "munged": self.root / "munge/munged.pid",
            "slurmctld": self.root / "run/slurmctld.pid",
            "slurmd": self.root / "run/slurmd.pid",
        }
        self.logs = {
            "munged": self.root / "munge/munged.log",
            "slurmctld": self.root / "log/slurmctld.log",
            "slurmd": self.root / "log/slurmd.log",
        }

    @property
    def env(self) -> dict:
        """The environment for client tools (and Snakemake): SLURM_CONF set."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=check, timeout=60)

    # --- start --------------------------------------------------------------------
    def start(self, timeout: float = 60):
        if os.geteuid() != 0:
            raise PermissionError("the test cluster's daemons run as root")
        for d in ("munge", "state", "spool", "run", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chmod(self.root / "munge", 0o700)   # munged refuses group/other-writable dirs
        try:
            self._start_munged(timeout)
            self._write_config()
            # -c: start clean, without any saved state.
            self._daemon("slurmctld", [_which("slurmctld"), "-c", "-f", str(self.conf)])
            _wait_for(lambda: self.run("scontrol", "ping", check=False).stdout.count("UP") > 0,
                      timeout, "slurmctld", self.logs["slurmctld"])
            self._link_run_conf()
            self._daemon("slurmd", [_which("slurmd"), "-f", str(self.conf)])
            _wait_for(self._node_idle, timeout, "slurmd (node idle)", self.logs["slurmd"])
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munged(self, timeout):
        key = self.root / "munge/munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        self._daemon("munged", [
            _which("munged"), "--force",
            f"--socket={self.munge_socket}", f"--key-file={key}",
            f"--pid-file={self.pidfiles['munged']}", f"--log-file={self.logs['munged']}",
            f"--seed-file={self.root / 'munge/munged.seed'}",
        ])
        _wait_for(self.munge_socket.exists, timeout, "munged", self.logs["munged"])

    def _daemon(self, name: str, cmd: list[str], env: dict | None = None):
        """Start a daemon that forks into the background and writes its pid file."""
        pidfile = self.pidfiles[name]
        pidfile.unlink(missing_ok=True)
        proc = subprocess.run(cmd, env=self.env if env is None else env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed to start ({proc.returncode}): {proc.stderr}\n"
                               + (self.logs[name].read_text()[-3000:] if self.logs[name].exists() else ""))
        _wait_for(lambda: self._pid(name) is not None, 30, f"{name} pid file", self.logs[name])

    def _write_config(self):
        hardware = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True,
                                  check=True).stdout.splitlines()[0]
        node = socket.gethostname().split(".")[0]
        # slurmd -C: "NodeName=x CPUs=.. Boards=.. ... RealMemory=.."; keep all but the name.
        hardware = " ".join(f for f in hardware.split() if not f.startswith("NodeName="))
        # Placeholder "device" files for the GPU GRES (see gres.conf.in).
        (self.root / "dev").mkdir(exist_ok=True)
        for i in range(self.gpus):   # character devices like /dev/null (1:3); plain files if mknod fails
            dev = self.root / f"dev/gpu{i}"
            if not dev.exists():
                try:
                    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
                except OSError:
                    dev.touch()
        gpu_files = f"{self.root}/dev/gpu[0-{self.gpus - 1}]" if self.gpus > 1 else f"{self.root}/dev/gpu0"
        values = dict(root=self.root, gpu_files=gpu_files, node=node, addr="127.0.0.1", user="root",
                      ctld_port=self.ctld_port, slurmd_port=_free_port(), munge_socket=self.munge_socket,
                      hardware=hardware, gpus=self.gpus, partition=self.partition, jobcomp=self.jobcomp)
        for name in ("slurm.conf", "gres.conf", "jobcomp.lua"):
            text = Template((HERE / f"{name}.in").read_text()).substitute(values)
            (self.root / name).write_text(text)
        (self.root / "plugstack.conf").write_text("")

    def _link_run_conf(self):
        """Link /run/slurm/conf to this cluster's directory, as a configless slurmd does.

        SLURM's client tools read SLURM_CONF, else /etc/slurm/slurm.conf, else
        /run/slurm/conf/slurm.conf. The executor's job step (snakemake-executor-plugin-
        slurm-jobstep) removes every SLURM_* variable but a few, SLURM_CONF included,
        before the `srun` that runs the rule inside the job, so that srun finds this
        cluster only through the link. It is removed again by stop(). (Where
        /etc/slurm/slurm.conf exists the nested srun would read it instead.)"""
        if RUN_CONF.is_symlink() and not RUN_CONF.exists():
            RUN_CONF.unlink()   # left by a cluster that was not stopped
        if RUN_CONF.is_symlink() and RUN_CONF.resolve() == self.root:
            return
        if RUN_CONF.exists() or RUN_CONF.is_symlink():
            raise RuntimeError(f"{RUN_CONF} exists (another SLURM configuration); not replacing it")
        if not RUN_CONF.parent.exists():
            RUN_CONF.parent.mkdir(parents=True)
            (self.root / "run/created-run-dir").touch()
        RUN_CONF.symlink_to(self.root)

    def _unlink_run_conf(self):
        if RUN_CONF.is_symlink() and Path(os.readlink(RUN_CONF)) == self.root:
            RUN_CONF.unlink()
            if (self.root / "run/created-run-dir").exists():
                try:
                    RUN_CONF.parent.rmdir()
                except OSError:
                    pass

    def _node_idle(self) -> bool:
        out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.split()
        return bool(out) and all(s.rstrip("*") == "idle" for s in out)

    # --- stop ---------------------------------------------------------------------
    def _pid(self, name: str) -> int | None:
        try:
            pid = int(self.pidfiles[name].read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def stop(self, timeout: float = 30):
        """Cancel what is left in the queue, then stop slurmd, slurmctld and munged by
        their pid files (SIGTERM, then SIGKILL after `timeout`), each waited for."""
        if self._pid("slurmctld") and self.conf.exists():
            self.run("scancel", "--user=root", check=False)
            try:   # let the job steps end before their slurmd does
                _wait_for(lambda: not self.run("squeue", "-h", "-t", "RUNNING,COMPLETING", check=False).stdout.strip(),
                          timeout, "the cancelled jobs' end")
            except TimeoutError:
                pass
        for name in reversed(DAEMONS):
            pid = self._pid(name)
            if pid is None:
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.1)
        self._unlink_run_conf()

    # --- records ------------------------------------------------------------------
    def completed_jobs(self) -> list[dict]:
        """The job-completion log, one dict per job (key=value fields; values without spaces)."""
        if not self.jobcomp.exists():
            return []
        jobs = []
        for line in self.jobcomp.read_text().splitlines():
            fields = {}
            for item in line.split():
                key, sep, value = item.partition("=")
                if sep:
                    fields[key] = value
                elif fields:   # a value with a space: glue it to the previous field
                    last = next(reversed(fields))
                    fields[last] += " " + item
            jobs.append(fields)
        return jobs


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        sys.exit("usage: python -m tests.slurm.cluster start|stop DIR")
    cluster = Cluster(Path(argv[2]))
    if argv[1] == "start":
        cluster.start()
        print(f"export SLURM_CONF={cluster.conf}")
    else:
        cluster.stop()


if __name__ == "__main__":
    main(sys.argv)
