# Helpers for the DAG, all derived from the validated config.
import json
import os
import re
import shlex

from ehrmind import config as run_config

DEFAULT_CONFIG = "workflow/config/embedded.yaml"   # used when no --configfile is given

if config:
    origin = ", ".join(map(str, workflow.overwrite_configfiles)) or "--config"
    _validated = run_config.validate(dict(config), origin=origin)
else:
    _validated = run_config.load(DEFAULT_CONFIG)
config.clear()
config.update(_validated)

R = config["results_dir"].rstrip("/")
SEED = config["seed"]
MODELS = list(config["models"])
TASKS = list(config["tasks"])
STAGES = config["stages"]
# Flags shared by every rule that loads a model.
MODEL_FLAGS = f"--precision {config['precision']}" + (" --trust-remote-code" if config["trust_remote_code"] else "")


def _alternatives(values):
    return "|".join(map(re.escape, values))


wildcard_constraints:
    model=_alternatives(MODELS),
    task=_alternatives(TASKS),
    stage=_alternatives(["baseline", "sft", "rlvr", "sft_rlvr"]),


def as_arg(obj):
    """A config block as one shell-quoted JSON argument (also a rule param, so a change reruns the job)."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


def job_resources():
    """Standard Snakemake resource names for jobs that train or generate."""
    r = config["resources"]
    res = {"gpu": r["gpu"], "mem_mb": r["mem_mb"], "runtime": r["runtime"]}
    if r["gpu"]:
        res["cpus_per_gpu"] = r["cpus_per_gpu"]
        if r["gpu_model"]:
            res["gpu_model"] = r["gpu_model"]
    return res


def model_for(stage):
    """Input checkpoint of a stage: the base model for baseline, else the trained checkpoint."""
    if stage == "baseline":
        return f"{R}/models/{{model}}/base.json"
    return f"{R}/models/{{model}}/{{task}}/{stage}"


def all_cells():
    return [f"{R}/cells/{m}/{t}/{s}/metrics.json" for m in MODELS for t in TASKS for s in STAGES]


def table_files():
    names = ["main", "significance"] + [f"per_category_{t}" for t in TASKS]
    return [f"{R}/tables/{n}.{ext}" for n in names for ext in ("md", "tex", "csv")]
