"""The two training stages, thin wrappers around TRL:

- SFT warm-up (SFTTrainer, full or LoRA via peft) on pre-tokenized examples: the EHRMind
  prompt through its prefill (loss masked) then the SFT target (trained), tokenized exactly as
  generation will see them; or on chat rows (EAG-RL's MCTS trajectories: prompt messages and a
  completion text), the prompt rendered with the generation prompt (masked), then the completion
  and the end-of-sequence token (trained);
- RLVR (GRPOTrainer) with the task's rule-checked reward. Rollouts come from the suite's own
  generation backend through TRL's `rollout_func` (each prompt encoded once for its
  num_generations samples, finished rows dropped); TRL does everything else: advantages,
  the clipped loss, KL, logging. A `GRPOMethod` says what differs between variants (prompt,
  reward functions, trainer class, fixed settings): EHRMind's here, EAG-RL's and its baselines'
  in ehrmind/methods/eagrl/grpo.py.

Both keep fp32 master weights (bf16 autocast where the hardware has it), take micro-batches
with gradient accumulation, and can save periodic checkpoints into a scratch folder beside the
output (`<out>.resume/`), from which a rerun of an interrupted job continues. Each writes a
plain checkpoint (LoRA merged) plus its log history (JSONL), a summary and a PNG of the curves.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ehrmind import models
from ehrmind.io import atomic_path, write_json, write_jsonl
from ehrmind.methods.ehrmind import answer, prompts
from ehrmind.tasks import Example, Task, get_task

log = logging.getLogger(__name__)


def _task_name(task: Task | None, ex: Example) -> str:
    """An example's own task (the `multi` training set mixes tasks), else the given one."""
    if ex.task or task is not None:
        return ex.task or task.name
    raise ValueError(f"example {ex.id} names no task and no default task was given")


def _tasks(task: Task | None, train: list[Example]) -> dict[str, Task]:
    names = {_task_name(task, ex) for ex in train}
    return {n: task if task is not None and n == task.name else get_task(n) for n in sorted(names)}


def resume_dir(out_dir: Path) -> Path:
    """Where a stage keeps its periodic checkpoints: beside its output, so Snakemake's cleanup
    of an interrupted job's outputs leaves them for the rerun."""
    return out_dir.with_name(out_dir.name + ".resume")


def last_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def _save(trainer, tokenizer, out_dir: Path, log_dir: Path, summary: dict[str, Any],
          plot_keys: list[str]) -> None:
    """Checkpoint (LoRA merged into the weights; bf16 on CUDA) to out_dir; log history,
    summary and curves to log_dir."""
    state = trainer.accelerator.get_state_dict(trainer.model)   # gathered from every rank under FSDP
    if not trainer.accelerator.is_main_process:
        return
    net = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(net, "merge_and_unload"):   # LoRA: the merged weights, not the adapter's state
        net, state = net.merge_and_unload(), None
    _write(net, tokenizer, trainer.args.bf16, trainer.state.log_history, out_dir, log_dir, summary, plot_keys,
           state)


def _write(net, tokenizer, bf16: bool, history: list[dict[str, Any]], out_dir: Path, log_dir: Path,
           summary: dict[str, Any], plot_keys: list[str], state: dict | None = None) -> None:
    import torch
    from ehrmind import plots
    if models.device() == "cuda" and bf16:
        net = net.to(torch.bfloat16)   # trained with fp32 master weights; saved as it will be served
    with atomic_path(log_dir, is_dir=True) as tmp:
        write_jsonl(tmp / "train_log.jsonl", history)
        write_json(tmp / "train_summary.json", summary)
        plots.training_curves(history, plot_keys, tmp / "training_curves.png", title=summary["stage"])
    with atomic_path(out_dir, is_dir=True) as tmp:
        net.save_pretrained(tmp, state_dict=state)
        tokenizer.save_pretrained(tmp)


def _shared_args(cfg: dict[str, Any], seed: int, precision: str, scratch: Path) -> dict[str, Any]:
    """TrainingArguments both trainers share: constant lr, a log line per step, seeded, bf16
    autocast where `models.use_bf16` (fp32 master weights), periodic checkpoints when
    `save_steps` > 0."""
    on_gpu = models.device() == "cuda"
    save = cfg.get("save_steps") or 0
    return dict(output_dir=str(scratch), learning_rate=cfg["learning_rate"], lr_scheduler_type="constant",
                warmup_steps=0, logging_steps=1, report_to="none", seed=seed, data_seed=seed,
                save_strategy="steps" if save else "no", save_steps=save or 500, save_total_limit=1,
                dataloader_num_workers=0, dataloader_pin_memory=on_gpu, use_cpu=not on_gpu,
                bf16=models.use_bf16(precision), gradient_checkpointing=cfg["gradient_checkpointing"])


def _train(trainer, scratch: Path):
    """Train, continuing from the newest checkpoint in `scratch` if an earlier run left one.
    Returns TRL's result, the checkpoint resumed from, and the seconds of each optimizer step
    (the first carries one-time costs: optimizer state, the rollout copy)."""
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(round(time.perf_counter() - self.started, 3))

    times = StepTimes()
    trainer.add_callback(times)
    checkpoint = last_checkpoint(scratch)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    return trainer.train(resume_from_checkpoint=checkpoint), checkpoint, times.seconds


def sft_rows(tokenizer, task: Task | None, train: list[Example], max_length: int) -> list[dict[str, list[int]]]:
    """input_ids (prompt through PREFILL, then target and end of turn) and labels (-100 on the
    prompt). A prompt is shortened inside its record so that prompt + target fit max_length."""
    tasks = _tasks(task, train)
    rows = []
    for ex in train:
        t = tasks[_task_name(task, ex)]
        target = tokenizer(prompts.sft_target(ex.reasoning, ex.answer), add_special_tokens=False)["input_ids"]
        target = target + [tokenizer.eos_token_id]
        room = max_length - len(target)
        if room < 16:
            raise ValueError(f"{ex.id}: the SFT target alone takes {len(target)} tokens of max_length {max_length}")
        prompt, _ = prompts.encode(tokenizer, t.prompt, ex.fields, room, sft=True, where=ex.id)
        rows.append({"input_ids": prompt + target, "labels": [-100] * len(prompt) + target})
    return rows


def trajectory_rows(tokenizer, trajectories: list[dict[str, Any]], max_length: int,
                    where: str = "trajectories") -> list[dict[str, list[int]]]:
    """input_ids and labels of chat rows {prompt: [messages], completion: [one assistant message]
    or text} (TRL's conversational prompt-completion layout, as `ehrmind mcts` writes it): the
    prompt as generation renders it (chat template, generation prompt; labels -100), then the
    completion's tokens and the end-of-sequence token (trained). Rows are not shortened: one that
    does not fit max_length is an error."""
    from ehrmind.generation import chat
    from ehrmind.tasks.base import DataError
    rows = []
    for i, row in enumerate(trajectories, start=1):
        name = f"{where}: row {i} (id {row.get('id', '?')})"
        prompt, completion = row.get("prompt"), row.get("completion")
        if isinstance(completion, list) and len(completion) == 1 and isinstance(completion[0], dict) \
                and completion[0].get("role") == "assistant":
            completion = completion[0].get("content")
        if not isinstance(completion, str) or not completion.strip():
            raise DataError(f"{name}, field 'completion': expected one assistant message or a non-empty text")
        if not (isinstance(prompt, list) and prompt and all(isinstance(m, dict) and {"role", "content"} <= set(m)
                                                            for m in prompt) and prompt[-1]["role"] != "assistant"):
            raise DataError(f"{name}, field 'prompt': expected chat messages (role, content) not ending with "
                            f"an assistant turn")
        prompt_ids = chat.encode(tokenizer, prompt)
        target = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(prompt_ids) + len(target) > max_length:
            raise ValueError(f"{name}: prompt {len(prompt_ids)} + completion {len(target)} tokens exceed "
                             f"sft max_length {max_length}; raise max_length")
        rows.append({"input_ids": prompt_ids + target, "labels": [-100] * len(prompt_ids) + target})
    return rows


def sft(task: Task | None, model: str, train: list[Example], cfg: dict[str, Any], seed: int, out_dir: Path,
        log_dir: Path, trust_remote_code: bool = False, precision: str = "auto", stage: str = "sft") -> dict[str, Any]:
    """The EHRMind warm-up on a task's examples (the primer: its first `max_steps` steps)."""
    return _sft(model, lambda tok: sft_rows(tok, task, train, cfg["max_length"]), cfg, seed, out_dir, log_dir,
                trust_remote_code, precision, stage=stage)


def sft_trajectories(model: str, trajectories: list[dict[str, Any]], cfg: dict[str, Any], seed: int,
                     out_dir: Path, log_dir: Path, trust_remote_code: bool = False, precision: str = "auto",
                     where: str = "trajectories", stage: str = "eag_sft") -> dict[str, Any]:
    """EAG-RL stage 1's SFT on the kept MCTS trajectories. With none kept there is nothing to
    train on: the checkpoint is the model as it came, and the summary says so (steps 0)."""
    return _sft(model, lambda tok: trajectory_rows(tok, trajectories, cfg["max_length"], where), cfg, seed,
                out_dir, log_dir, trust_remote_code, precision, stage=stage,
                extra={"patients": len({t.get("patient_id") for t in trajectories})})


def _sft(model: str, build_rows: Callable[[Any], list[dict[str, list[int]]]], cfg: dict[str, Any], seed: int,
         out_dir: Path, log_dir: Path, trust_remote_code: bool, precision: str, stage: str,
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    net, tokenizer = models.load(model, trust_remote_code, for_generation=False, precision=precision)
    rows = build_rows(tokenizer)
    if not rows:
        log.warning("%s: no training rows; the checkpoint is the input model, unchanged", stage)
        summary = {"stage": stage, "method": cfg["method"], "examples": 0, "steps": 0, "train_loss": None,
                   "trained_tokens": 0, "supervised_tokens": 0, "unchanged": True, "resumed_from": None,
                   "wall_time_s": 0.0, **(extra or {})}
        _write(net, tokenizer, models.use_bf16(precision), [], out_dir, log_dir, summary, ["loss"])
        return summary
    peft_config = None
    if cfg["method"] == "lora":
        peft_config = LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"],
                                 lora_dropout=cfg["lora_dropout"], target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    scratch = resume_dir(out_dir)
    micro = cfg.get("micro_batch_size") or cfg["batch_size"]
    if cfg["batch_size"] % micro:
        raise ValueError(f"sft.batch_size {cfg['batch_size']} is not a multiple of micro_batch_size {micro}")
    args = SFTConfig(num_train_epochs=cfg["epochs"], max_steps=cfg.get("max_steps") or -1,
                     per_device_train_batch_size=micro,
                     gradient_accumulation_steps=cfg["batch_size"] // micro, max_length=cfg["max_length"],
                     completion_only_loss=False,   # the labels already mask the prompt
                     train_sampling_strategy="group_by_length",   # batches of similar length: little padding
                     **_shared_args(cfg, seed, precision, scratch))
    with _score_labelled_positions_only():
        trainer = SFTTrainer(model=net, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                             peft_config=peft_config)
        started = time.perf_counter()
        result, resumed, step_seconds = _train(trainer, scratch)
    # passes over the rows: the epochs, or fewer where max_steps stops first (the primer)
    epochs = min(cfg["epochs"], cfg["max_steps"] * cfg["batch_size"] / len(rows)) if cfg.get("max_steps") \
        else cfg["epochs"]
    summary = {"stage": stage, "method": cfg["method"], "examples": len(rows),
               "steps": trainer.state.global_step, "train_loss": result.training_loss,
               "trained_tokens": round(epochs * sum(len(r["input_ids"]) for r in rows)),
               "supervised_tokens": round(epochs * sum(sum(x != -100 for x in r["labels"]) for r in rows)),
               "resumed_from": resumed, "wall_time_s": time.perf_counter() - started, "step_seconds": step_seconds,
               **(extra or {})}
    _save(trainer, tokenizer, out_dir, log_dir, summary, ["loss", "entropy"])
    shutil.rmtree(scratch, ignore_errors=True)
    return summary


@contextlib.contextmanager
def _score_labelled_positions_only():
    """While inside: TRL's fused LM head (SFT's loss) runs only the labelled positions through the head where
    Triton is present, and every position elsewhere, to keep tile shapes fixed for compilers.
    Without a compiler in the way the labelled-only path is the faster one on any device: an
    EHRMind example is mostly prompt (loss-masked), and on the CPU scoring it doubled a step's
    time (`ehrmind bench`: SFT step 21 s -> 13 s). The choice is a private TRL switch (TRL is
    pinned); tests/test_training.py checks the loss against a direct computation."""
    import trl.trainer.utils as trl_utils
    if not hasattr(trl_utils, "_use_triton"):
        raise RuntimeError("trl.trainer.utils._use_triton is gone: check the pinned TRL version")
    original, trl_utils._use_triton = trl_utils._use_triton, lambda device: True
    try:
        yield
    finally:
        trl_utils._use_triton = original


def rollout_func(prompt_ids: dict[str, list[int]], cfg: dict[str, Any], seed: int) -> Callable:
    """TRL's rollout_func. TRL hands over the step's prompts (their rendered text), each repeated
    num_generations times in a row; this returns their token ids (our own rendering: chat
    template, prefill, truncation inside the record) and the completions. On the CPU/HF path
    each distinct prompt is encoded once and sampled num_generations times by the suite's
    backend, seeded by (seed, global step), so a resumed run draws what an uninterrupted one
    would. With use_vllm, TRL's colocated vLLM engine generates (TRL syncs its weights first;
    vLLM's prefix cache shares the prompt)."""
    from ehrmind.generation import SamplingSpec
    from ehrmind.generation.hf import HFBackend
    sampler_copy = Bf16Copy()

    def rollout(batch: list[str], trainer) -> dict[str, list]:
        runs: list[list] = []   # [prompt, count] for each run of equal prompts
        for p in batch:
            if runs and runs[-1][0] == p:
                runs[-1][1] += 1
            else:
                runs.append([p, 1])
        n = runs[0][1]
        if any(count != n for _, count in runs):
            raise RuntimeError(f"rollout: expected every prompt {n} times in a row, got {[c for _, c in runs]}")
        if trainer.use_vllm:
            ids, completions, logprobs, _ = trainer.vllm_generation.generate(
                prompts=[prompt_ids[p] for p in batch], images=None, num_generations=n)
            return {"prompt_ids": ids, "completion_ids": completions,
                    "logprobs": [[lp[0] for lp in seq] for seq in logprobs]}
        spec = SamplingSpec(max_new_tokens=cfg["max_completion_length"], n=n, temperature=cfg["temperature"],
                            top_p=cfg["top_p"], seed=seed * 100_003 + trainer.state.global_step, logprobs=True)
        model = trainer.accelerator.unwrap_model(trainer.model)
        was_training = model.training
        model.eval()   # a cache for decoding (gradient checkpointing turns it off in train mode)
        try:
            sampler = sampler_copy.of(model) if trainer.args.bf16 else model
            backend = HFBackend(sampler, trainer.processing_class, batch_size=cfg["rollout_batch_size"] or len(batch))
            outputs = backend.generate([prompt_ids[p] for p, _ in runs], spec)
        finally:
            model.train(was_training)
        out = {"prompt_ids": [], "completion_ids": [], "logprobs": []}
        for (p, _), gens in zip(runs, outputs):
            for g in gens:
                out["prompt_ids"].append(prompt_ids[p])
                out["completion_ids"].append(list(g.token_ids))
                out["logprobs"].append(list(g.logprobs))
        return out
    return rollout


class Bf16Copy:
    """A bf16 copy of the policy for sampling rollouts, its weights refreshed from the fp32
    master weights before each round (as TRL syncs vLLM's). Decoding the master model itself
    runs under the trainer's autocast, which casts every weight to bf16 at every decode step:
    most of a rollout's time on the CPU (`ehrmind bench --profile`, `aten::copy_`). PEFT
    models are sampled as they are."""

    def __init__(self):
        self.net = None

    def of(self, model):
        import torch
        from transformers import AutoModelForCausalLM
        if hasattr(model, "peft_config"):
            return model
        if self.net is None:
            from transformers.initialization import no_init_weights
            with no_init_weights():   # every weight is overwritten below
                self.net = AutoModelForCausalLM.from_config(model.config, dtype=torch.bfloat16)
            self.net.to(model.device).eval()
            self.net.generation_config = model.generation_config
        with torch.no_grad():
            self.net.load_state_dict(model.state_dict())   # copied into the bf16 tensors in place
        return self.net


def grpo_arguments(cfg: dict[str, Any], seed: int, precision: str, scratch: Path,
                   n_rewards: int = 2) -> dict[str, Any]:
    """GRPOConfig arguments. A generation round draws prompts_per_step x num_generations
    rollouts (shared by accelerate's processes on several GPUs); `max_steps` rounds are run, or
    `epochs` passes over the prompts. EHRMind (updates_per_generation 1, the default): one
    optimizer step per round, the rollouts trained in micro-batches of micro_batch_size sequences
    with gradient accumulation; every update is then on-policy (importance ratio 1), so the clip
    bounds never bind. With updates_per_generation k > 1 (EAG-RL's methods) a round's rollouts
    are split into k shuffled mini-batches, one optimizer step each, so from the second on the
    ratio moves and the clip acts (verl's ppo_mini_batch_size); TRL then counts k steps a round.
    The first of `n_rewards` reward functions is optimized; the others are logged only (weight 0)."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    rollouts = cfg["prompts_per_step"] * cfg["num_generations"] // processes
    updates = cfg.get("updates_per_generation") or 1
    micro = cfg.get("micro_batch_size") or rollouts // updates
    if rollouts % (updates * micro):
        raise ValueError(f"grpo: prompts_per_step x num_generations = {rollouts} is not a multiple of "
                         f"micro_batch_size {micro}" + (f" x updates_per_generation {updates}" if updates > 1 else ""))
    accumulation = rollouts // (updates * micro)
    length = (dict(num_train_epochs=cfg["epochs"], max_steps=-1) if cfg.get("epochs")
              else dict(max_steps=cfg["max_steps"] * updates))
    args = dict(**length, per_device_train_batch_size=micro,
                gradient_accumulation_steps=accumulation, steps_per_generation=rollouts // micro, num_iterations=1,
                num_generations=cfg["num_generations"], max_completion_length=cfg["max_completion_length"],
                beta=cfg["beta"], epsilon=cfg["epsilon"], temperature=cfg["temperature"], top_p=cfg["top_p"],
                loss_type=cfg["loss_type"], reward_weights=[1.0] + [0.0] * (n_rewards - 1), log_completions=False,
                use_vllm=cfg["use_vllm"], **_shared_args(cfg, seed, precision, scratch))
    if cfg["use_vllm"]:
        args.update(vllm_mode="colocate", vllm_gpu_memory_utilization=cfg["vllm_gpu_memory_utilization"],
                    vllm_enable_sleep_mode=cfg["vllm_enable_sleep_mode"],
                    vllm_max_model_length=cfg["vllm_max_model_length"])
    return args


@dataclass
class GRPOMethod:
    """What one GRPO variant brings to the shared runner (`run_grpo`); everything else (rollouts
    from the suite's backend, micro-batching, checkpoints, logs) is common.

    encode         (tokenizer, example) -> the prompt's token ids
    columns        example -> dataset columns; they reach the reward functions as keyword arguments
    reward_funcs   the first is optimized; the others are logged per step (weight 0), as
                   rewards/<function name>/mean
    overrides      grpo settings the method fixes over the config's block (loss_type, beta, ...)
    config         further GRPOConfig arguments (epsilon_high, mask_truncated_completions)
    trainer_class  TRL's GRPOTrainer unless given; trainer_kwargs go to its constructor
    plot_keys      the curves drawn in training_curves.png
    summary        history -> fields added to train_summary.json
    """
    name: str
    encode: Callable[[Any, Example], list[int]]
    columns: Callable[[Example], dict[str, Any]]
    reward_funcs: list[Callable]
    overrides: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    trainer_class: type | None = None
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)
    plot_keys: list[str] = field(default_factory=lambda: ["reward", "frac_reward_zero_std", "entropy", "loss"])
    summary: Callable[[list[dict[str, Any]]], dict[str, Any]] = lambda history: {}


def ehrmind_method(task: Task | None, train: list[Example], reward_cfg: dict[str, float],
                   max_prompt_length: int | None) -> GRPOMethod:
    """EHRMind's RLVR: its prompt through the prefill, the task's rule-checked reward, accuracy logged."""
    tasks = _tasks(task, train)

    def encode(tokenizer, ex: Example) -> list[int]:
        return prompts.encode(tokenizer, tasks[_task_name(task, ex)].prompt, ex.fields, max_prompt_length,
                              where=ex.id)[0]

    def _judged(completions, task_name, gold) -> list[answer.Judged]:
        return [answer.judge(tasks[name], text, json.loads(g), reward_cfg)
                for text, name, g in zip(completions, task_name, gold)]

    # Dataset columns reach reward functions as keyword arguments (here `task_name` and `gold`).
    def rule_reward(completions, task_name, gold, **_) -> list[float]:
        return [j.reward for j in _judged(completions, task_name, gold)]

    def accuracy(completions, task_name, gold, **_) -> list[float]:  # weight 0: logged, not optimized
        return [float(j.score.correct) for j in _judged(completions, task_name, gold)]

    return GRPOMethod("ehrmind", encode, lambda ex: {"task_name": _task_name(task, ex), "gold": json.dumps(ex.gold)},
                      [rule_reward, accuracy],
                      plot_keys=["reward", "rewards/accuracy/mean", "frac_reward_zero_std", "entropy", "loss"])


def grpo(task: Task | None, model: str, train: list[Example], cfg: dict[str, Any], reward_cfg: dict[str, float],
         seed: int, out_dir: Path, log_dir: Path, stage: str, trust_remote_code: bool = False,
         precision: str = "auto") -> dict[str, Any]:
    """EHRMind's RLVR stage."""
    return run_grpo(ehrmind_method(task, train, reward_cfg, cfg["max_prompt_length"]), model, train, cfg, seed,
                    out_dir, log_dir, stage, trust_remote_code, precision)


def run_grpo(method: GRPOMethod, model: str, train: list[Example], cfg: dict[str, Any], seed: int, out_dir: Path,
             log_dir: Path, stage: str, trust_remote_code: bool = False, precision: str = "auto") -> dict[str, Any]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    cfg = {**cfg, **method.overrides}
    net, tokenizer = models.load(model, trust_remote_code, for_generation=False, precision=precision)
    prompt_ids: dict[str, list[int]] = {}
    rows = []
    for ex in train:
        ids = method.encode(tokenizer, ex)
        text = tokenizer.decode(ids)   # the prompt as TRL logs it; also the key to its token ids
        prompt_ids[text] = ids
        rows.append({"prompt": text, **method.columns(ex)})

    scratch = resume_dir(out_dir)
    args = GRPOConfig(**grpo_arguments(cfg, seed, precision, scratch, len(method.reward_funcs)), **method.config)
    trainer_class = method.trainer_class or GRPOTrainer
    if cfg.get("share_prompt_forward", True):
        from ehrmind.shared_prompt import SharedPromptGRPOTrainer
        trainer_class = SharedPromptGRPOTrainer if trainer_class is GRPOTrainer else \
            type(f"SharedPrompt{trainer_class.__name__}", (trainer_class, SharedPromptGRPOTrainer), {})
    # rollout_func is marked experimental; TRL is pinned and tests/test_training.py exercises it.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    trainer = trainer_class(
        model=net, reward_funcs=method.reward_funcs, args=args, train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer, rollout_func=rollout_func(prompt_ids, cfg, seed), **method.trainer_kwargs)
    started = time.perf_counter()
    result, resumed, step_seconds = _train(trainer, scratch)
    wall = time.perf_counter() - started
    history = trainer.state.log_history
    rollouts = cfg["prompts_per_step"] * cfg["num_generations"]
    generated = sum(h.get("completions/mean_length", 0) * rollouts for h in history)
    steps = [h for h in history if "frac_reward_zero_std" in h]
    updates = cfg.get("updates_per_generation") or 1
    summary = {"stage": stage, "method": method.name, "examples": len(train), "steps": trainer.state.global_step,
               "generation_rounds": trainer.state.global_step // updates, "updates_per_generation": updates,
               "seconds_per_round": wall * updates / max(trainer.state.global_step, 1),
               "train_loss": result.training_loss, "generated_tokens": round(generated),
               "steps_with_reward_spread": sum(h["frac_reward_zero_std"] < 1 for h in steps),
               "mean_entropy": sum(h.get("entropy", 0) for h in steps) / max(len(steps), 1),
               "resumed_from": resumed, "wall_time_s": wall,
               "seconds_per_step": wall / max(trainer.state.global_step, 1), "step_seconds": step_seconds,
               **method.summary(history)}
    _save(trainer, tokenizer, out_dir, log_dir, summary, method.plot_keys)
    shutil.rmtree(scratch, ignore_errors=True)
    return summary
