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
# Cross-task transfer needs at least two tasks; `multi` trains on the union of their training sets.
TRANSFER = config["transfer"]["enabled"] and len(TASKS) > 1
TRAIN_TASKS = TASKS + ([MULTI] if TRANSFER and config["transfer"]["multi"] else [])
# The Pass@k gate: `audit` runs rlvr and sft_rlvr and checks the gate's choice; `gated` runs only the choice.
PASSK = config["passk"]["enabled"]
GATED = PASSK and config["passk"]["mode"] == "gated"
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
    """The grpo block; rollouts are as long as the task's evaluation answers and prompts as its
    evaluation prompts (the longest for multi)."""
    tasks = TASKS if task == MULTI else [task]
    length = max(config["tasks"][t].get("max_new_tokens") or config["grpo"]["max_completion_length"] for t in tasks)
    prompt = max(gen_settings(t)["max_prompt_tokens"] for t in tasks)
    return {**config["grpo"], "max_completion_length": length, "max_prompt_length": prompt}


def passk_settings(task):
    """What `ehrmind passk` samples with: the passk block plus the task's generation lengths."""
    p, g = config["passk"], gen_settings(task)
    keys = ("n", "k", "temperature", "top_p", "items_per_category")
    return {**{k: p[k] for k in keys}, "batch_size": p["batch_size"] or g["batch_size"],
            "max_new_tokens": g["max_new_tokens"], "max_prompt_tokens": g["max_prompt_tokens"]}


def gate_settings():
    """What `ehrmind gate` decides with; changing it reruns no sampling."""
    return {k: config["passk"][k] for k in ("k", "threshold", "thresholds", "reliable")}


def rl_stages(model, task):
    """The GRPO stages run for a model and training task: those in `stages`, or in gated
    mode only the gate's choice (read from the checkpoint's output, so the DAG is
    re-evaluated once the gate has run)."""
    if not GATED:
        return [s for s in ("rlvr", "sft_rlvr") if s in STAGES]
    with open(checkpoints.gate.get(model=model, task=task).output[0]) as f:
        return [json.load(f)["gate"]["decision"]]


def stages_run(model, task):
    return [s for s in STAGES if s in ("baseline", "sft")] + rl_stages(model, task)


def job_resources():
    """Standard Snakemake resource names for jobs that train or generate."""
    r = config["resources"]
    res = {"gpu": r["gpu"], "mem_mb": r["mem_mb"], "runtime": r["runtime"]}
    if r["gpu"]:
        res["cpus_per_gpu"] = r["cpus_per_gpu"]
        if r["gpu_model"]:
            res["gpu_model"] = r["gpu_model"]
    return res


def job_threads():
    """Threads of a job that trains or generates: on the CPU all cores; with GPUs
    cpus_per_gpu per GPU (capped at --cores), so GPU jobs on one machine can run side by side."""
    r = config["resources"]
    return min(r["cpus_per_gpu"] * r["gpu"], workflow.cores) if r["gpu"] else workflow.cores


def model_for(stage):
    """Input checkpoint of a stage: the base model for baseline, else the trained checkpoint."""
    if stage == "baseline":
        return f"{R}/models/{{model}}/base.json"
    return f"{R}/models/{{model}}/{{task}}/{stage}"


def all_cells(wildcards=None):
    return [f"{R}/cells/{m}/{t}/{s}/metrics.json" for m in MODELS for t in TASKS for s in stages_run(m, t)]


def eval_tasks(train_task):
    """Tasks a checkpoint is evaluated on in the transfer matrix (its own task is a main cell)."""
    return [t for t in TASKS if t != train_task]


def transfer_dirs(wildcards=None):
    if not TRANSFER:
        return []
    return [f"{R}/transfer/{m}/{t}/{s}" for m in MODELS for t in TRAIN_TASKS for s in stages_run(m, t) if s != "baseline"]


def gate_files(wildcards=None):
    return [f"{R}/passk/{m}/{t}/gate.json" for m in MODELS for t in TRAIN_TASKS] if PASSK else []


def training_dirs(wildcards=None):
    """Training logs of every checkpoint (the pass@k cost table reads their wall time and tokens)."""
    if not PASSK:
        return []
    return [f"{R}/training/{m}/{t}/{s}" for m in MODELS for t in TRAIN_TASKS for s in stages_run(m, t) if s != "baseline"]


def table_files():
    names = ["main", "significance", "classification"] + [f"per_category_{t}" for t in TASKS]
    names += ["transfer"] if TRANSFER else []
    names += [f"passk_{m}" for m in MODELS] + ["passk_cost", "passk_vs_rlvr_gain"] if PASSK else []
    files = [f"{R}/tables/{n}.{ext}" for n in names for ext in ("md", "tex", "csv")]
    return files + ([f"{R}/tables/passk_vs_rlvr_gain.png"] if PASSK else [])
