"""apptainer exec options for GPU jobs in the image: caches bound at their host paths and named
inside (Snakemake makes the checkout the container's $HOME), offline by default, --nv; and the
GPU and SLURM profiles still read as before, with apptainer-args added."""
import shlex

import pytest

from ehrmind.apptainer import apptainer_args
from tests.conftest import REPO


def options(text):
    """--env and --bind values of an apptainer-args string."""
    words = shlex.split(text)
    env = dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "--env")
    binds = [b for i, w in enumerate(words) if w == "--bind" for b in words[i + 1].split(",")]
    return words, env, binds


def test_existing_caches_are_bound_and_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    hf, ir = tmp_path / "scratch" / "hf", tmp_path / "home" / ".ir_datasets"
    hf.mkdir(parents=True)
    ir.mkdir(parents=True)
    words, env, binds = options(apptainer_args({"HF_HOME": str(hf), "EHRMIND_BIND": "/data/ehrshot:/data/ehrshot:ro"}))
    assert words[0] == "--nv"
    assert env == {"HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1", "HF_HOME": str(hf), "IR_DATASETS_HOME": str(ir)}
    assert binds == [str(hf), str(ir), "/data/ehrshot:/data/ehrshot:ro"]


def test_missing_caches_are_not_bound_and_offline_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))   # no ~/.cache/huggingface, no ~/.ir_datasets
    words, env, binds = options(apptainer_args({"HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "nowhere")}))
    assert env == {"HF_HUB_OFFLINE": "0", "PYTHONNOUSERSITE": "1"} and binds == [] and "--bind" not in words


def test_paths_with_spaces_stay_one_word(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    hf = tmp_path / "my caches" / "hf"
    hf.mkdir(parents=True)
    words, env, binds = options(apptainer_args({"HF_HOME": str(hf)}))
    assert env["HF_HOME"] == str(hf) and binds == [str(hf)]


def test_snakemake_puts_them_into_its_apptainer_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".cache" / "huggingface").mkdir(parents=True)
    from snakemake.deployment.singularity import shellcmd
    cmd = shellcmd("containers/ehrmind-gpu.sif", "ehrmind evaluate --task medcalc", args=apptainer_args({}),
                   shell_executable="bash")
    assert f"--nv --env HF_HUB_OFFLINE=1 --env PYTHONNOUSERSITE=1 --env HF_HOME={tmp_path}/.cache/huggingface" \
           f" --bind {tmp_path}/.cache/huggingface containers/ehrmind-gpu.sif bash -c" in cmd


# The profiles' settings before apptainer-args was added, as Snakemake reads them.
BEFORE = {
    "gpu": {"cores": "all", "printshellcmds": "True", "rerun-incomplete": "True", "show-failed-logs": "True",
            "resources": ["gpu=1"]},
    "slurm": {"executor": "slurm", "jobs": "50", "latency-wait": "60", "seconds-between-status-checks": "30",
              "printshellcmds": "True", "rerun-incomplete": "True", "show-failed-logs": "True", "retries": "1",
              "default-resources": ["runtime=30", "mem_mb=4000"], "slurm-init-seconds-before-status-checks": "40"},
}


@pytest.mark.parametrize("profile", sorted(BEFORE))
def test_profiles_keep_their_settings_and_add_apptainer_args(profile, tmp_path, monkeypatch):
    from snakemake.profiles import ProfileConfigFileParser
    monkeypatch.setenv("HOME", str(tmp_path))
    with open(REPO / "workflow/profiles" / profile / "config.yaml") as f:
        settings = dict(ProfileConfigFileParser().parse(f))
    assert settings.pop("apptainer-args") == apptainer_args()
    assert settings == BEFORE[profile]
