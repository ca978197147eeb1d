# Helpers for the DAG, all derived from the validated config.
import json
import os
import re
import shlex

from ehrmind import config as run_config
from ehrmind.tasks import MULTI

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
TRAINED_STAGES = [s for s in STAGES if s != "baseline"]
# Cross-task transfer needs at least two tasks; `multi` trains on the union of their training sets.
TRANSFER = config["transfer"]["enabled"] and len(TASKS) > 1
TRAIN_TASKS = TASKS + ([MULTI] if TRANSFER and config["transfer"]["multi"] else [])
# Flags shared by every rule that loads a model.
MODEL_FLAGS = f"--precision {config['precision']}" + (" --trust-remote-code" if config["trust_remote_code"] else "")


def _alternatives(values):
    return "|".join(map(re.escape, values))


wildcard_constraints:
    model=_alternatives(MODELS),
    task=_alternatives(TRAIN_TASKS),
    stage=_alternatives(["baseline", "sft", "rlvr", "sft_rlvr"]),


def as_arg(obj):
    """A config block as one shell-quoted JSON argument (also a rule param, so a change reruns the job)."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


GENERATION_KEYS = ("max_new_tokens", "max_prompt_tokens")   # per-task overrides, not data settings


def data_settings(task):
    """The task block without its generation overrides, so changing those reruns no data job."""
    return {k: v for k, v in config["tasks"][task].items() if k not in GENERATION_KEYS}


def gen_settings(task):
    """The generation block with the task's own max_new_tokens / max_prompt_tokens."""
    overrides = {k: config["tasks"][task].get(k) for k in GENERATION_KEYS}
    return {**config["generation"], **{k: v for k, v in overrides.items() if v is not None}}


def grpo_settings(task):
    """The grpo block; rollouts are as long as the task's evaluation answers (the longest for multi)."""
    tasks = TASKS if task == MULTI else [task]
    length = max(config["tasks"][t].get("max_new_tokens") or config["grpo"]["max_completion_length"] for t in tasks)
    return {**config["grpo"], "max_completion_length": length}


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


def eval_tasks(train_task):
    """Tasks a checkpoint is evaluated on in the transfer matrix (its own task is a main cell)."""
    return [t for t in TASKS if t != train_task]


def transfer_dirs():
    if not TRANSFER:
        return []
    return [f"{R}/transfer/{m}/{t}/{s}" for m in MODELS for t in TRAIN_TASKS for s in TRAINED_STAGES]


def table_files():
    names = ["main", "significance", "classification"] + [f"per_category_{t}" for t in TASKS]
    names += ["transfer"] if TRANSFER else []
    return [f"{R}/tables/{n}.{ext}" for n in names for ext in ("md", "tex", "csv")]
