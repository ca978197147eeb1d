# Helpers for the DAG, all derived from the validated config.
import json
import os
import re
import shlex

from ehrmind import config as run_config
from ehrmind import allocator, exact
from ehrmind.tasks import MULTI, STRUCTURED

DEFAULT_CONFIG = "workflow/config/embedded.yaml"   # used when no --configfile is given

if config:
    origin = ", ".join(map(str, workflow.overwrite_configfiles)) or "--config"
    _validated = run_config.validate(dict(config), origin=origin)
else:
    _validated = run_config.load(DEFAULT_CONFIG)
config.clear()
config.update(_validated)

R = config["results_dir"].rstrip("/")
DATA_SEED = config["seed"]          # the data: splits and generated items, the same for every run seed
SEEDS = config["seeds"]             # the runs: training, sampling; tables show mean ± sd over them
MODELS = list(config["models"])
TASKS = list(config["tasks"])
STAGES = config["stages"]
EHR_TASKS = [t for t in TASKS if t in STRUCTURED]
# Cross-task transfer: each checkpoint on the other tasks of its family (the EHRMind text tasks;
# the structured-EHR tasks); `multi` trains on the union of the text tasks' training sets.
FAMILIES = [f for f in ([t for t in TASKS if t not in STRUCTURED], EHR_TASKS) if len(f) > 1]
TRANSFER = config["transfer"]["enabled"] and bool(FAMILIES)
MULTI_TASKS = [t for t in TASKS if t not in STRUCTURED]
TRAIN_TASKS = TASKS + ([MULTI] if TRANSFER and config["transfer"]["multi"] and len(MULTI_TASKS) > 1 else [])
# The Pass@k gate: `audit` runs rlvr and sft_rlvr and checks the gate's choice; `gated` runs only the choice.
PASSK = config["passk"]["enabled"]
GATED = PASSK and config["passk"]["mode"] == "gated"
# This suite's device, not EHRMind's: a "primer" checkpoint (the first primer_steps steps of the SFT
# warm-up) with its own diagnostic and gate, and RLVR from it, for a base that never writes the format.
PRIMER_STEPS = config["passk"]["primer_steps"] if PASSK else 0
PRIMER_STAGES = ["primer", "primer_rlvr"] if PRIMER_STEPS else []
ROBUSTNESS = config["robustness"]["shuffle_fractions"] if EHR_TASKS else []
# EAG-RL on the structured-EHR tasks (workflow/rules/eagrl.smk). Methods and what each is:
EAG = config["eagrl"]
EAG_TASKS = EHR_TASKS if EAG["enabled"] else []
EAG_STYLES = {"eag_vanilla": "vanilla", "eag_think": "think", "eag_decompose": "decompose"}   # prompting
# GRPO methods: (ehrmind grpo --method, --method-settings, reward overrides), all from the stage-1
# start except eag_rl_no_stage1 (from the base model, or the warm-up)
EAG_RL_METHODS = {
    "eag_rl": ("eagrl", {}, {}),
    "eag_rl_no_stage1": ("eagrl", {}, {}),
    "eag_rl_no_att": ("eagrl", {}, {"lam": 1.0}),               # without R_att: R = R_cls
    "eag_rl_no_clip": ("eagrl", {"adaptive_clip": False}, {}),  # the fixed upper clip
    "eag_grpo": ("grpo_baseline", {}, {}),
    "eag_dapo": ("dapo", {}, {}),
}
EAG_METHODS = [m for m in EAG["methods"] if m in EAG_STYLES or m == "eag_sft" or m in EAG_RL_METHODS]
# Exact mode's variables, set before Python starts in every job that loads a model.
JOB_ENV = exact.shell_prefix() if config["exact"] else ""
# glibc's huge pages for the heap (allocator.py), read as each job's process starts: jobs inherit
# this environment (locally, and through SLURM's exported one). Not a rule parameter: it changes
# no result, so it must not make Snakemake rerun jobs. A value already set is kept.
for _name, _value in allocator.ENV.items():
    os.environ.setdefault(_name, _value)
# Flags shared by every rule that loads a model.
MODEL_FLAGS = f"--precision {config['precision']}" + (" --trust-remote-code" if config["trust_remote_code"] else "")


def _alternatives(values):
    return "|".join(map(re.escape, values))


wildcard_constraints:
    model=_alternatives(MODELS),
    task=_alternatives(TRAIN_TASKS),
    stage=_alternatives(["baseline", "sft", "rlvr", "sft_rlvr", "primer", "primer_rlvr"]),
    seed=r"\d+",


def as_arg(obj):
    """A config block as one shell-quoted JSON argument (also a rule param, so a change reruns the job)."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


TASK_KEYS = ("max_new_tokens", "max_prompt_tokens", "sft", "grpo")   # per-task overrides, not data settings


def data_settings(task):
    """The task block without its generation and training overrides, so changing those reruns no data job."""
    return {k: v for k, v in config["tasks"][task].items() if k not in TASK_KEYS}


def gen_settings(task):
    """The generation block with the task's own max_new_tokens / max_prompt_tokens."""
    overrides = {k: config["tasks"][task].get(k) for k in ("max_new_tokens", "max_prompt_tokens")}
    return {**config["generation"], **{k: v for k, v in overrides.items() if v is not None}}


def _tasks_of(task):
    return MULTI_TASKS if task == MULTI else [task]


def sft_settings(task, stage="sft"):
    """The sft block with the task's own `sft:` overrides (EHRMind's per-task scripts differ);
    the primer stops after passk.primer_steps optimizer steps."""
    own = {**config["sft"], **config["tasks"].get(task, {}).get("sft", {})}
    return {**own, "max_steps": PRIMER_STEPS} if stage == "primer" else own


def grpo_settings(task):
    """The grpo block with the task's own `grpo:` overrides; rollouts are as long as the task's
    evaluation answers and prompts as its evaluation prompts (the longest for multi)."""
    tasks = _tasks_of(task)
    length = max(config["tasks"][t].get("max_new_tokens") or config["grpo"]["max_completion_length"] for t in tasks)
    prompt = max(gen_settings(t)["max_prompt_tokens"] for t in tasks)
    own = config["tasks"].get(task, {}).get("grpo", {})
    return {**config["grpo"], "max_completion_length": length, "max_prompt_length": prompt, **own}


def passk_settings(task):
    """What `ehrmind passk` samples with: the passk block plus the task's generation lengths."""
    p, g = config["passk"], gen_settings(task)
    keys = ("n", "k", "temperature", "top_p", "items_per_category")
    return {**{k: p[k] for k in keys}, "batch_size": p["batch_size"] or g["batch_size"],
            "max_new_tokens": g["max_new_tokens"], "max_prompt_tokens": g["max_prompt_tokens"],
            "backend": g["backend"], "vllm": g["vllm"]}


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
    primer = PRIMER_STAGES if task != MULTI else []
    return [s for s in STAGES if s in ("baseline", "sft")] + rl_stages(model, task) + primer


def seeds_of(stage):
    """Run seeds of a stage: a greedy baseline is the same for every seed, so it runs once."""
    greedy = config["generation"]["temperature"] == 0
    return SEEDS[:1] if stage == "baseline" and greedy else SEEDS


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
    return f"{R}/models/{{model}}/{{task}}/{stage}/seed{{seed}}"


def eag_start():
    """Where EAG-RL's MCTS and stage 2 start: the base model, or the format warm-up (this suite's device)."""
    return f"{R}/models/{{model}}/{{task}}/eag_warmup/seed{{seed}}" if EAG["warmup"] else f"{R}/models/{{model}}/base.json"


def eag_input(method):
    """The model an EAG-RL training job starts from."""
    if method in ("eag_warmup",):
        return f"{R}/models/{{model}}/base.json"
    if method in ("mcts", "eag_rl_no_stage1"):
        return eag_start()
    if method == "eag_sft":
        return eag_start()
    return f"{R}/models/{{model}}/{{task}}/eag_sft/seed{{seed}}"


def eag_eval_model(method):
    """The model an EAG-RL evaluation cell scores: the base model for the prompting baselines."""
    if method in EAG_STYLES:
        return f"{R}/models/{{model}}/base.json"
    return f"{R}/models/{{model}}/{{task}}/{method}/seed{{seed}}"


def eag_sft_settings(task):
    return {**sft_settings(task), **EAG["sft"]}


def eag_grpo_settings(task):
    return {**grpo_settings(task), **EAG["grpo"]}


def eag_cells(wildcards=None):
    cells = [f"{R}/eagrl/cells/{m}/{t}/{method}/seed{seed}/main/metrics.json"
             for m in MODELS for t in EAG_TASKS for method in EAG_METHODS
             for seed in (SEEDS[:1] if method in EAG_STYLES else SEEDS)]
    cells += [f"{R}/eagrl/cells/{m}/{t}/eag_rl/seed{seed}/shuffle{f}/metrics.json"
              for m in MODELS for t in EAG_TASKS if "eag_rl" in EAG_METHODS for seed in SEEDS for f in ROBUSTNESS]
    return cells


def eag_training_dirs(wildcards=None):
    trained = [k for k in EAG_METHODS if k not in EAG_STYLES] + (["eag_warmup"] if EAG["warmup"] else [])
    return [f"{R}/training/{m}/{t}/{k}/seed{seed}" for m in MODELS for t in EAG_TASKS for k in trained for seed in SEEDS]


def checkpoints_run(tasks):
    """(model, task, stage, seed) of every trained checkpoint of these training tasks."""
    return [(m, t, s, seed) for m in MODELS for t in tasks for s in stages_run(m, t) if s != "baseline"
            for seed in seeds_of(s)]


def all_cells(wildcards=None):
    """The EHRMind grid's cells (EAG-RL's are eag_cells)."""
    return [f"{R}/cells/{m}/{t}/{s}/seed{seed}/metrics.json"
            for m in MODELS for t in TASKS for s in stages_run(m, t) for seed in seeds_of(s)]


def eval_tasks(train_task):
    """Tasks a checkpoint is evaluated on in the transfer matrix (its own task is a main cell)."""
    family = next((f for f in FAMILIES if train_task in f), MULTI_TASKS if train_task == MULTI else [])
    return [t for t in family if t != train_task]


def transfer_dirs(wildcards=None):
    if not TRANSFER:
        return []
    return [f"{R}/transfer/{m}/{t}/{s}/seed{seed}" for m, t, s, seed in checkpoints_run(TRAIN_TASKS)
            if eval_tasks(t) and s not in PRIMER_STAGES]


def robustness_files(wildcards=None):
    return [f"{R}/robustness/{m}/{t}/{s}/seed{seed}/shuffle{f}/metrics.json"
            for m, t, s, seed in checkpoints_run(EHR_TASKS) if s in config["robustness"]["stages"]
            for f in ROBUSTNESS]


def expert_files(wildcards=None):
    return [f"{R}/experts/{t}/metrics.json" for t in EHR_TASKS] if config["expert"]["enabled"] else []


def gate_files(wildcards=None):
    """The base model's gate per model x training task; the primer's (first seed) per model x task."""
    base = [f"{R}/passk/{m}/{t}/gate.json" for m in MODELS for t in TRAIN_TASKS] if PASSK else []
    return base + [f"{R}/passk/{m}/{t}/primer/seed{SEEDS[0]}/gate.json" for m in MODELS for t in TASKS
                   if PRIMER_STEPS]


def training_dirs(wildcards=None):
    """Training logs of every checkpoint (the pass@k cost table reads their wall time and tokens)."""
    if not PASSK:
        return []
    return [f"{R}/training/{m}/{t}/{s}/seed{seed}" for m, t, s, seed in checkpoints_run(TRAIN_TASKS)]


def table_files():
    names = ["main", "main_seeds", "significance", "classification"] + [f"per_category_{t}" for t in TASKS]
    names += ["transfer"] if TRANSFER else []
    names += ["ehr"] if EHR_TASKS else []
    names += ["robustness"] if ROBUSTNESS and config["robustness"]["stages"] else []
    names += ["eagrl", "eagrl_ablation"] if EAG_TASKS and EAG_METHODS else []
    names += [f"passk_{m}" for m in MODELS] + ["passk_cost", "passk_vs_rlvr_gain"] if PASSK else []
    files = [f"{R}/tables/{n}.{ext}" for n in names for ext in ("md", "tex", "csv")]
    return files + ([f"{R}/tables/passk_vs_rlvr_gain.png"] if PASSK else [])
