"""Everything that builds an environment is pinned: container bases by digest, Python
dependencies by exact version in every lock (envs/requirements-*.txt), the GPU lock's trl is
the CPU lock's, and its vllm lies inside the range that trl declares for its `vllm` extra.

The checkers take paths and return a list of problems; the last tests feed them broken
files from tmp_path, so that each check is seen to fail."""
import importlib.metadata
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO

CONTAINERS = REPO / "containers"
ENVS = REPO / "envs"
CPU_LOCK = ENVS / "requirements-cpu.txt"
GPU_LOCK = ENVS / "requirements-gpu.txt"
APPTAINER_DEF = CONTAINERS / "ehrmind.def"
GPU_IMAGE = "ehrmind-gpu"            # the tag containers/Containerfile.gpu's header builds

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
PINNED = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")
VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


# ---------------------------------------------------------------------------------------------
# checkers

def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, comments dropped, continuations joined."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def containerfile_problems(path: Path) -> list[str]:
    """Every FROM names an image by digest: directly, through an ARG whose default has one, or
    an earlier stage (or scratch). Every ARG default that names a base image has a digest."""
    problems, args, stages = [], {}, set()
    instructions = _instructions(path.read_text())
    if not any(word == "FROM" for word, _ in instructions):
        problems.append(f"{path.name}: no FROM")
    for word, rest in instructions:
        if word == "ARG":
            for item in shlex.split(rest):
                name, eq, default = item.partition("=")
                if eq:
                    args[name] = default
                    if re.search(r"BASE|IMAGE", name, re.I) and not DIGEST.search(default):
                        problems.append(f"{path.name}: ARG {name}={default} has no @sha256:<64 hex> digest")
                else:
                    args.setdefault(name, None)
        elif word == "FROM":
            tokens = [t for t in rest.split() if not t.startswith("--")]
            if not tokens:
                problems.append(f"{path.name}: FROM without an image")
                continue
            ref = tokens[0]
            if len(tokens) >= 3 and tokens[1].upper() == "AS":
                stages.add(tokens[2].lower())
            unresolved = [n for n in VAR.findall(ref) if not args.get(n)]
            if unresolved:
                problems.append(f"{path.name}: FROM {ref}: ARG {', '.join(unresolved)} has no default")
                continue
            image = VAR.sub(lambda m: args[m.group(1)], ref)
            if image.lower() in stages - {tokens[2].lower() if len(tokens) >= 3 else ""} or image == "scratch":
                continue
            if not DIGEST.search(image):
                problems.append(f"{path.name}: FROM {image} is not pinned by @sha256:<64 hex> digest")
    return problems


def apptainer_def_problems(path: Path, gpu_containerfile: Path) -> list[str]:
    """The definition's base is a registry image by digest, or the image that the (pinned)
    GPU Containerfile builds, taken from a local archive or daemon."""
    header = {}
    for line in path.read_text().splitlines():
        if line.startswith("%"):
            break
        key, sep, value = line.partition(":")
        if sep and not line.lstrip().startswith("#") and key.strip():
            header[key.strip().lower()] = value.strip()
    bootstrap, source = header.get("bootstrap", ""), header.get("from", "")
    if not bootstrap or not source:
        return [f"{path.name}: no Bootstrap/From header"]
    if bootstrap in ("docker", "oras", "shub", "library"):
        if not re.search(r"sha256[:.][0-9a-f]{64}$", source):
            return [f"{path.name}: From: {source} ({bootstrap}) is not pinned by sha256 digest"]
        return []
    if bootstrap in ("docker-daemon", "docker-archive", "oci-archive", "oci"):
        if GPU_IMAGE not in source:
            return [f"{path.name}: From: {source} is not the image of {gpu_containerfile.name} ({GPU_IMAGE})"]
        if not gpu_containerfile.exists():
            return [f"{path.name}: builds on {GPU_IMAGE}, but {gpu_containerfile} is missing"]
        return [f"{path.name} via {p}" for p in containerfile_problems(gpu_containerfile)]
    return [f"{path.name}: Bootstrap: {bootstrap} cannot be checked for a pinned base"]


def read_lock(path: Path) -> tuple[dict[str, Version], list[str]]:
    """A lock's pins {canonical name: version} and its problems: every line that is not blank
    or a comment must be exactly `name==version` (no ranges, markers, options, URLs, -e)."""
    pins, problems = {}, []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PINNED.match(line)
        if not match:
            problems.append(f"{path.name}:{number}: {line!r} is not name==version")
            continue
        name = canonicalize_name(match.group(1))
        if name in pins:
            problems.append(f"{path.name}:{number}: {name} pinned twice")
        pins[name] = Version(match.group(2))
    if not pins:
        problems.append(f"{path.name}: no pins")
    return pins, problems


def vllm_range(trl_requires: list[str]) -> list[Requirement]:
    """trl's declared requirements on vllm in its `vllm` extra."""
    out = []
    for text in trl_requires:
        req = Requirement(text)
        if canonicalize_name(req.name) == "vllm" and req.marker and req.marker.evaluate({"extra": "vllm"}):
            out.append(req)
    return out


def gpu_vs_cpu_problems(cpu_lock: Path, gpu_lock: Path, trl_requires: list[str]) -> list[str]:
    """The GPU lock's trl is the CPU lock's and its vllm is inside trl's declared `vllm` range."""
    cpu, gpu = read_lock(cpu_lock)[0], read_lock(gpu_lock)[0]
    problems = []
    if "trl" not in cpu or "trl" not in gpu:
        return [f"trl is not pinned in both {cpu_lock.name} and {gpu_lock.name}"]
    if cpu["trl"] != gpu["trl"]:
        problems.append(f"trl: {gpu_lock.name} has {gpu['trl']}, {cpu_lock.name} has {cpu['trl']}")
    if "vllm" not in gpu:
        return problems + [f"{gpu_lock.name} does not pin vllm"]
    bounds = vllm_range(trl_requires)
    if not bounds:
        problems.append("trl declares no vllm requirement in its `vllm` extra")
    for req in bounds:
        if not req.specifier.contains(gpu["vllm"], prereleases=True):
            problems.append(f"vllm=={gpu['vllm']} in {gpu_lock.name} is outside trl's vllm{req.specifier}")
    return problems


def project_deps_problems(pyproject: Path, locks: list[Path]) -> list[str]:
    """Every dependency of [project].dependencies is pinned in every lock."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    problems = []
    for lock in locks:
        pins = read_lock(lock)[0]
        for dep in deps:
            name = canonicalize_name(Requirement(dep).name)
            if name not in pins:
                problems.append(f"{lock.name}: {name} (pyproject.toml dependency) is not pinned")
    return problems


# ---------------------------------------------------------------------------------------------
# the repository

CONTAINERFILES = sorted(CONTAINERS.glob("Containerfile*"))
LOCKS = sorted(ENVS.glob("requirements-*.txt"))


def test_the_repository_has_containerfiles_and_locks():
    assert CONTAINERFILES, f"no containers/Containerfile* in {CONTAINERS}"
    assert CPU_LOCK in LOCKS and GPU_LOCK in LOCKS, LOCKS


@pytest.mark.parametrize("path", CONTAINERFILES, ids=lambda p: p.name)
def test_container_bases_are_pinned_by_digest(path):
    assert containerfile_problems(path) == []


def test_apptainer_definition_builds_on_a_pinned_image():
    assert APPTAINER_DEF.exists()
    assert apptainer_def_problems(APPTAINER_DEF, CONTAINERS / "Containerfile.gpu") == []


@pytest.mark.parametrize("path", LOCKS, ids=lambda p: p.name)
def test_locks_pin_every_line_exactly(path):
    assert read_lock(path)[1] == []


def test_gpu_lock_keeps_trl_and_a_vllm_that_trl_accepts():
    installed = importlib.metadata.version("trl")
    assert Version(installed) == read_lock(CPU_LOCK)[0]["trl"], \
        f"this environment's trl {installed} is not the CPU lock's: its metadata cannot stand for the lock's"
    assert gpu_vs_cpu_problems(CPU_LOCK, GPU_LOCK, importlib.metadata.requires("trl") or []) == []


def test_project_dependencies_are_in_both_locks():
    assert project_deps_problems(REPO / "pyproject.toml", [CPU_LOCK, GPU_LOCK]) == []


# ---------------------------------------------------------------------------------------------
# the checkers fail on broken copies

DIGEST_A = "@sha256:" + "a" * 64
TRL_REQUIRES = ['vllm<=0.31.0,>=0.22.0; extra == "vllm"', 'requests; extra == "vllm"', "accelerate>=1.10.1"]


@pytest.mark.parametrize("text,ok", [
    (f"ARG BASE=docker.io/library/debian:bookworm-slim{DIGEST_A}\nFROM ${{BASE}}\nRUN true\n", True),
    (f"FROM vllm/vllm-openai:v0.31.0{DIGEST_A} AS build\nFROM build\n", True),
    ("FROM debian:bookworm-slim\n", False),                                   # a tag only
    ("ARG BASE=debian:bookworm-slim\nFROM ${BASE}\n", False),                 # ARG default, tag only
    ("ARG BASE\nFROM ${BASE}\n", False),                                      # no default at all
    (f"ARG BASE=debian{DIGEST_A[:-1]}\nFROM $BASE\n", False),                 # 63 hex digits
    ("FROM --platform=linux/amd64 \\\n    debian:bookworm-slim\nRUN true\n", False),
    (f"ARG BASE=x{DIGEST_A}\nARG BUILDER_IMAGE=golang:1.22\nFROM ${{BASE}}\n", False),
])
def test_containerfile_checker(tmp_path, text, ok):
    path = tmp_path / "Containerfile.test"
    path.write_text(text)
    assert (containerfile_problems(path) == []) is ok, containerfile_problems(path)


def test_containerfile_checker_catches_an_unpinned_copy_of_the_gpu_file(tmp_path):
    text = (CONTAINERS / "Containerfile.gpu").read_text()
    broken = tmp_path / "Containerfile.gpu"
    broken.write_text(re.sub(r"@sha256:[0-9a-f]{64}", "", text))
    assert containerfile_problems(broken)


@pytest.mark.parametrize("header,ok", [
    ("Bootstrap: docker-archive\nFrom: containers/ehrmind-gpu.tar\n", True),
    ("Bootstrap: docker-daemon\nFrom: ehrmind-gpu:latest\n", True),
    (f"Bootstrap: docker\nFrom: ghcr.io/lab/ehrmind-gpu{DIGEST_A}\n", True),
    ("Bootstrap: docker\nFrom: ghcr.io/lab/ehrmind-gpu:latest\n", False),
    ("Bootstrap: docker-daemon\nFrom: ubuntu:24.04\n", False),
    ("Bootstrap: localimage\nFrom: some.sif\n", False),
])
def test_apptainer_checker(tmp_path, header, ok):
    pinned = tmp_path / "Containerfile.gpu"
    pinned.write_text(f"ARG BASE=vllm/vllm-openai:v0.31.0{DIGEST_A}\nFROM ${{BASE}}\n")
    definition = tmp_path / "ehrmind.def"
    definition.write_text("# comment: From: nothing\n" + header + "\n%runscript\n    exec \"$@\"\n")
    assert (apptainer_def_problems(definition, pinned) == []) is ok
    if ok and "docker-" in header:                      # a local image is only as pinned as its file
        pinned.write_text("FROM vllm/vllm-openai:v0.31.0\n")
        assert apptainer_def_problems(definition, pinned)


@pytest.mark.parametrize("line", ["torch>=2.13", "torch", "-e .", "--index-url https://example.org/simple",
                                  "torch==2.13.0; sys_platform == 'linux'", "trl @ https://x/trl.whl",
                                  "torch==2.13.0 --hash=sha256:00", "torch==2.*"])
def test_lock_checker(tmp_path, line):
    good = tmp_path / "requirements-good.txt"
    good.write_text("# comment\n\ntorch==2.13.0\nnvidia-cublas==13.1.1.3\nPuLP==3.3.2\n")
    assert read_lock(good)[1] == []
    bad = tmp_path / "requirements-bad.txt"
    bad.write_text(f"scipy==1.17.1\n{line}\n")
    assert read_lock(bad)[1], line


def test_gpu_vs_cpu_checker(tmp_path):
    cpu, gpu = tmp_path / "requirements-cpu.txt", tmp_path / "requirements-gpu.txt"
    cpu.write_text("trl==1.16.0\n")
    gpu.write_text("trl==1.16.0\nvllm==0.31.0\n")
    assert gpu_vs_cpu_problems(cpu, gpu, TRL_REQUIRES) == []
    gpu.write_text("trl==1.16.0\nvllm==0.32.0\n")                  # above trl's range
    assert gpu_vs_cpu_problems(cpu, gpu, TRL_REQUIRES)
    gpu.write_text("trl==1.16.0\nvllm==0.21.0\n")                  # below it
    assert gpu_vs_cpu_problems(cpu, gpu, TRL_REQUIRES)
    gpu.write_text("trl==1.15.0\nvllm==0.31.0\n")                  # another trl
    assert gpu_vs_cpu_problems(cpu, gpu, TRL_REQUIRES)
    gpu.write_text("trl==1.16.0\n")                                # no vllm
    assert gpu_vs_cpu_problems(cpu, gpu, TRL_REQUIRES)
    gpu.write_text("trl==1.16.0\nvllm==0.31.0\n")
    assert gpu_vs_cpu_problems(cpu, gpu, ["accelerate>=1.10.1"])   # trl names no vllm range


def test_project_deps_checker(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["torch", "PyYAML>=6", "medcalc_bench"]\n')
    lock = tmp_path / "requirements-a.txt"
    lock.write_text("torch==2.13.0\npyyaml==6.0.3\nmedcalc-bench==1.7.0\n")
    assert project_deps_problems(pyproject, [lock]) == []
    lock.write_text("torch==2.13.0\nmedcalc-bench==1.7.0\n")
    assert project_deps_problems(pyproject, [lock]) == ["requirements-a.txt: pyyaml (pyproject.toml dependency) is not pinned"]
