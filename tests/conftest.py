import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")   # nothing in the test suite may reach a hub


def skip_unless_required(feature: str, reason: str):
    """Skip a test whose tool (podman, SLURM) is missing here, but fail when EHRMIND_REQUIRE
    names the feature: .ci/run installs the tools and sets it, so CI never skips these tests."""
    if feature in os.environ.get("EHRMIND_REQUIRE", "").split():
        pytest.fail(f"{reason}, and EHRMIND_REQUIRE says the {feature} test must run here")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model_cache")


@pytest.fixture(scope="session")
def tiny_model(model_cache) -> Path:
    """Reference JSON of a tiny random Llama with SmolLM2's tokenizer, built locally."""
    from ehrmind import models
    ref = model_cache / "tiny.json"
    models.prepare("tiny:1", ref, model_cache)
    return ref


SNAKEMAKE = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"


def run_snakemake(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([SNAKEMAKE, "--configfile", str(config), "--cores", "2", "--nolock", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=2400)


ONE_THREAD_RULES = ("sft", "grpo", "evaluate", "transfer", "passk", "robustness", "eag_sft", "mcts", "eag_grpo",
                    "eag_evaluate")


def run_tiny_grid(root: Path, model_cache, *snakemake_args: str, **overrides):
    """Run the tiny grid (workflow/config/tiny.yaml, config keys overridden by `overrides`)
    with results under root; extra Snakemake options (an executor, say) in snakemake_args."""
    cfg = yaml.safe_load((REPO / "workflow/config/tiny.yaml").read_text())
    cfg.update(results_dir=str(root / "results"), model_cache=str(model_cache), **overrides)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))   # keep the tasks in their order
    # Tiny jobs are mostly Python start-up: one thread each lets two run at once on two cores.
    one_thread = [f"{rule}=1" for rule in ONE_THREAD_RULES]
    proc = run_snakemake(config, "--set-threads", *one_thread, *snakemake_args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return config, root / "results", cfg


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, model_cache):
    return run_tiny_grid(tmp_path_factory.mktemp("grid"), model_cache)


def run_stages(cfg: dict) -> list[str]:
    """The stages of a run's main table: the config's, then the primer's (passk.primer_steps)."""
    return cfg["stages"] + (["primer", "primer_rlvr"] if cfg.get("passk", {}).get("primer_steps") else [])


def table_files(results: Path) -> dict[str, bytes]:
    """A run's tables by file name, for comparing two runs byte for byte; passk_cost.* holds
    wall times, which no two runs share, so it is left out."""
    tables = results / "tables"
    return {str(p.relative_to(tables)): p.read_bytes() for p in sorted(tables.rglob("*"))
            if p.is_file() and not p.name.startswith("passk_cost.") and p.name != ".snakemake_timestamp"}
