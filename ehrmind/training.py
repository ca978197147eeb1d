"""The two training stages, thin wrappers around TRL:

- SFT warm-up (SFTTrainer, full or LoRA via peft) on pre-tokenized examples: the EHRMind
  prompt through its prefill (loss masked) then the SFT target (trained), tokenized exactly as
  generation will see them;
- RLVR (GRPOTrainer) with the task's rule-checked reward. Rollouts come from the suite's own
  generation backend through TRL's `rollout_func` (each prompt encoded once for its
  num_generations samples, finished rows dropped); TRL does everything else: advantages,
  the clipped loss, KL, logging.

Both keep fp32 master weights (bf16 autocast where the hardware has it), take micro-batches
with gradient accumulation, and can save periodic checkpoints into a scratch folder beside the
output (`<out>.resume/`), from which a rerun of an interrupted job continues. Each writes a
plain checkpoint (LoRA merged) plus its log history (JSONL), a summary and a PNG of the curves.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
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
    import torch
    from ehrmind import plots
    state = trainer.accelerator.get_state_dict(trainer.model)   # gathered from every rank under FSDP
    if not trainer.accelerator.is_main_process:
        return
    net = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(net, "merge_and_unload"):
        net = net.merge_and_unload()
    if models.device() == "cuda" and trainer.args.bf16:
        net = net.to(torch.bfloat16)   # trained with fp32 master weights; saved as it will be served
    history = trainer.state.log_history
    with atomic_path(log_dir, is_dir=True) as tmp:
        write_jsonl(tmp / "train_log.jsonl", history)
        write_json(tmp / "train_summary.json", summary)
        plots.training_curves(history, plot_keys, tmp / "training_curves.png", title=summary["stage"])
    with atomic_path(out_dir, is_dir=True) as tmp:
        net.save_pretrained(tmp, state_dict=None if hasattr(trainer.model, "merge_and_unload") else state)
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
    """Train, continuing from the newest checkpoint in `scratch` if an earlier run left one."""
    checkpoint = last_checkpoint(scratch)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    return trainer.train(resume_from_checkpoint=checkpoint), checkpoint


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


def sft(task: Task | None, model: str, train: list[Example], cfg: dict[str, Any], seed: int, out_dir: Path,
        log_dir: Path, trust_remote_code: bool = False, precision: str = "auto") -> dict[str, Any]:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    net, tokenizer = models.load(model, trust_remote_code, for_generation=False, precision=precision)
    rows = sft_rows(tokenizer, task, train, cfg["max_length"])
    peft_config = None
    if cfg["method"] == "lora":
        peft_config = LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"],
                                 lora_dropout=cfg["lora_dropout"], target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    scratch = resume_dir(out_dir)
    micro = cfg.get("micro_batch_size") or cfg["batch_size"]
    if cfg["batch_size"] % micro:
        raise ValueError(f"sft.batch_size {cfg['batch_size']} is not a multiple of micro_batch_size {micro}")
    args = SFTConfig(num_train_epochs=cfg["epochs"], per_device_train_batch_size=micro,
                     gradient_accumulation_steps=cfg["batch_size"] // micro, max_length=cfg["max_length"],
                     completion_only_loss=False,   # the labels already mask the prompt
                     train_sampling_strategy="group_by_length",   # batches of similar length: little padding
                     **_shared_args(cfg, seed, precision, scratch))
    trainer = SFTTrainer(model=net, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=peft_config)
    started = time.perf_counter()
    result, resumed = _train(trainer, scratch)
    epochs = cfg["epochs"]
    summary = {"stage": "sft", "method": cfg["method"], "examples": len(train),
               "steps": trainer.state.global_step, "train_loss": result.training_loss,
               "trained_tokens": round(epochs * sum(len(r["input_ids"]) for r in rows)),
               "supervised_tokens": round(epochs * sum(sum(x != -100 for x in r["labels"]) for r in rows)),
               "resumed_from": resumed, "wall_time_s": time.perf_counter() - started}
    _save(trainer, tokenizer, out_dir, log_dir, summary, ["loss", "entropy"])
    shutil.rmtree(scratch, ignore_errors=True)
    return summary


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
            backend = HFBackend(model, trainer.processing_class, batch_size=cfg["rollout_batch_size"] or len(batch))
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


def grpo_arguments(cfg: dict[str, Any], seed: int, precision: str, scratch: Path) -> dict[str, Any]:
    """GRPOConfig arguments. One generation round per optimizer step and one update per batch
    (EHRMind): the step's prompts_per_step x num_generations rollouts are trained in
    micro-batches of micro_batch_size sequences with gradient accumulation."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))   # accelerate's workers share a step's rollouts
    rollouts = cfg["prompts_per_step"] * cfg["num_generations"] // processes
    micro = cfg.get("micro_batch_size") or rollouts
    if rollouts % micro:
        raise ValueError(f"grpo: prompts_per_step x num_generations = {rollouts} is not a multiple of "
                         f"micro_batch_size {micro}")
    accumulation = rollouts // micro
    length = dict(num_train_epochs=cfg["epochs"], max_steps=-1) if cfg.get("epochs") else dict(max_steps=cfg["max_steps"])
    args = dict(**length, per_device_train_batch_size=micro,
                gradient_accumulation_steps=accumulation, steps_per_generation=accumulation, num_iterations=1,
                num_generations=cfg["num_generations"], max_completion_length=cfg["max_completion_length"],
                beta=cfg["beta"], epsilon=cfg["epsilon"], temperature=cfg["temperature"], top_p=cfg["top_p"],
                loss_type=cfg["loss_type"], reward_weights=[1.0, 0.0], log_completions=False,
                use_vllm=cfg["use_vllm"], **_shared_args(cfg, seed, precision, scratch))
    if cfg["use_vllm"]:
        args.update(vllm_mode="colocate", vllm_gpu_memory_utilization=cfg["vllm_gpu_memory_utilization"],
                    vllm_enable_sleep_mode=cfg["vllm_enable_sleep_mode"],
                    vllm_max_model_length=cfg["vllm_max_model_length"])
    return args


def grpo(task: Task | None, model: str, train: list[Example], cfg: dict[str, Any], reward_cfg: dict[str, float],
         seed: int, out_dir: Path, log_dir: Path, stage: str, trust_remote_code: bool = False,
         precision: str = "auto") -> dict[str, Any]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    net, tokenizer = models.load(model, trust_remote_code, for_generation=False, precision=precision)
    tasks = _tasks(task, train)
    prompt_ids: dict[str, list[int]] = {}
    rows = []
    for ex in train:
        name = _task_name(task, ex)
        ids, _ = prompts.encode(tokenizer, tasks[name].prompt, ex.fields, cfg["max_prompt_length"], where=ex.id)
        text = tokenizer.decode(ids)   # the prompt as TRL logs it; also the key to its token ids
        prompt_ids[text] = ids
        rows.append({"prompt": text, "task_name": name, "gold": json.dumps(ex.gold)})

    def _judged(completions, task_name, gold) -> list[answer.Judged]:
        return [answer.judge(tasks[name], text, json.loads(g), reward_cfg)
                for text, name, g in zip(completions, task_name, gold)]

    # Dataset columns reach reward functions as keyword arguments (here `task_name` and `gold`).
    def rule_reward(completions, task_name, gold, **_) -> list[float]:
        return [j.reward for j in _judged(completions, task_name, gold)]

    def accuracy(completions, task_name, gold, **_) -> list[float]:  # weight 0: logged, not optimized
        return [float(j.score.correct) for j in _judged(completions, task_name, gold)]

    scratch = resume_dir(out_dir)
    args = GRPOConfig(**grpo_arguments(cfg, seed, precision, scratch))
    trainer_class = GRPOTrainer
    if cfg.get("share_prompt_forward", True):
        from ehrmind.shared_prompt import SharedPromptMixin
        trainer_class = type("SharedPromptGRPOTrainer", (SharedPromptMixin, GRPOTrainer), {})
    # rollout_func is marked experimental; TRL is pinned and tests/test_training.py exercises it.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    trainer = trainer_class(model=net, reward_funcs=[rule_reward, accuracy], args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          rollout_func=rollout_func(prompt_ids, cfg, seed))
    started = time.perf_counter()
    result, resumed = _train(trainer, scratch)
    history = trainer.state.log_history
    rollouts = cfg["prompts_per_step"] * cfg["num_generations"]
    generated = sum(h.get("completions/mean_length", 0) * rollouts for h in history)
    steps = [h for h in history if "frac_reward_zero_std" in h]
    summary = {"stage": stage, "examples": len(train), "steps": trainer.state.global_step,
               "train_loss": result.training_loss, "generated_tokens": round(generated),
               "steps_with_reward_spread": sum(h["frac_reward_zero_std"] < 1 for h in steps),
               "mean_entropy": sum(h.get("entropy", 0) for h in steps) / max(len(steps), 1),
               "resumed_from": resumed, "wall_time_s": time.perf_counter() - started}
    _save(trainer, tokenizer, out_dir, log_dir, summary,
          ["reward", "rewards/accuracy/mean", "frac_reward_zero_std", "entropy", "loss"])
    shutil.rmtree(scratch, ignore_errors=True)
    return summary
