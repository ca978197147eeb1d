"""The two training stages, both thin wrappers around TRL:
SFT warm-up (SFTTrainer, full or LoRA via peft) and RLVR (GRPOTrainer with the
task's rule-checked reward). Each writes a merged, plain checkpoint plus its log
history (JSONL) and a PNG of the curves."""
from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from ehrmind import answer, models
from ehrmind.io import atomic_path, write_json, write_jsonl
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


def _save(trainer, tokenizer, out_dir: Path, log_dir: Path, summary: dict[str, Any],
          plot_keys: list[str]) -> None:
    """Checkpoint (LoRA merged into the weights) to out_dir; log history, summary, curves to log_dir."""
    from ehrmind import plots
    net = trainer.model
    if hasattr(net, "merge_and_unload"):
        net = net.merge_and_unload()
    history = trainer.state.log_history
    with atomic_path(log_dir, is_dir=True) as tmp:
        write_jsonl(tmp / "train_log.jsonl", history)
        write_json(tmp / "train_summary.json", summary)
        plots.training_curves(history, plot_keys, tmp / "training_curves.png", title=summary["stage"])
    with atomic_path(out_dir, is_dir=True) as tmp:
        net.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def _shared_args(cfg: dict[str, Any], seed: int, precision: str) -> dict[str, Any]:
    """TrainingArguments both trainers share: constant lr, a log line per step, no
    trainer checkpoints (the stage saves its own), seeded, bf16 where `models.use_bf16`."""
    on_gpu = models.device() == "cuda"
    return dict(learning_rate=cfg["learning_rate"], lr_scheduler_type="constant", warmup_steps=0,
                logging_steps=1, save_strategy="no", report_to="none", seed=seed, data_seed=seed,
                dataloader_num_workers=0, dataloader_pin_memory=on_gpu, use_cpu=not on_gpu,
                bf16=models.use_bf16(precision), gradient_checkpointing=cfg["gradient_checkpointing"])


def sft(task: Task | None, model: str, train: list[Example], cfg: dict[str, Any], seed: int, out_dir: Path,
        log_dir: Path, trust_remote_code: bool = False, precision: str = "auto") -> dict[str, Any]:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    tasks = _tasks(task, train)
    net, tokenizer = models.load(model, trust_remote_code, for_generation=False, precision=precision)
    data = Dataset.from_list([
        {"prompt": answer.build_messages(tasks[_task_name(task, ex)], ex),
         "completion": [{"role": "assistant", "content": answer.sft_completion(ex)}]}
        for ex in train])
    peft_config = None
    if cfg["method"] == "lora":
        peft_config = LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"],
                                 lora_dropout=cfg["lora_dropout"], target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory() as scratch:
        args = SFTConfig(output_dir=scratch, num_train_epochs=cfg["epochs"],
                         per_device_train_batch_size=cfg["batch_size"], max_length=cfg["max_length"],
                         **_shared_args(cfg, seed, precision))
        trainer = SFTTrainer(model=net, args=args, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft_config)
        started = time.perf_counter()
        result = trainer.train()
        summary = {"stage": "sft", "method": cfg["method"], "examples": len(train),
                   "steps": trainer.state.global_step, "train_loss": result.training_loss,
                   "trained_tokens": max((h.get("num_tokens", 0) for h in trainer.state.log_history),
                                         default=0),
                   "wall_time_s": time.perf_counter() - started}
        _save(trainer, tokenizer, out_dir, log_dir, summary, ["loss"])
    return summary


def grpo(task: Task | None, model: str, train: list[Example], cfg: dict[str, Any], reward_cfg: dict[str, float],
         seed: int, out_dir: Path, log_dir: Path, stage: str, trust_remote_code: bool = False,
         precision: str = "auto") -> dict[str, Any]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    net, tokenizer = models.load(model, trust_remote_code, for_generation=False, precision=precision)
    tokenizer.padding_side = "left"   # rollouts are generated in batches
    tasks = _tasks(task, train)
    data = Dataset.from_list([{"prompt": answer.build_messages(tasks[_task_name(task, ex)], ex),
                               "task_name": _task_name(task, ex), "gold": json.dumps(ex.gold)} for ex in train])

    def _texts(completions) -> list[str]:
        return [c[-1]["content"] if isinstance(c, list) else c for c in completions]

    def _judged(completions, task_name, gold) -> list[answer.Judged]:
        return [answer.judge(tasks[name], t, json.loads(g), reward_cfg)
                for t, name, g in zip(_texts(completions), task_name, gold)]

    # Dataset columns reach reward functions as keyword arguments (here `task_name` and `gold`).
    def rule_reward(completions, task_name, gold, **_) -> list[float]:
        return [j.reward for j in _judged(completions, task_name, gold)]

    def accuracy(completions, task_name, gold, **_) -> list[float]:  # weight 0: logged, not optimized
        return [float(j.score.correct) for j in _judged(completions, task_name, gold)]

    with tempfile.TemporaryDirectory() as scratch:
        # One policy update per batch of rollouts (EHRMind): steps_per_generation = num_iterations = 1.
        args = GRPOConfig(output_dir=scratch, max_steps=cfg["max_steps"],
                          per_device_train_batch_size=cfg["prompts_per_step"] * cfg["num_generations"],
                          num_generations=cfg["num_generations"], steps_per_generation=1,
                          num_iterations=1, max_completion_length=cfg["max_completion_length"],
                          beta=cfg["beta"], epsilon=cfg["epsilon"], temperature=cfg["temperature"],
                          top_p=cfg["top_p"], reward_weights=[1.0, 0.0], use_vllm=cfg["use_vllm"],
                          **_shared_args(cfg, seed, precision))
        trainer = GRPOTrainer(model=net, reward_funcs=[rule_reward, accuracy], args=args,
                              train_dataset=data, processing_class=tokenizer)
        started = time.perf_counter()
        result = trainer.train()
        history = trainer.state.log_history
        generated = sum(h.get("completions/mean_length", 0) * args.per_device_train_batch_size
                        for h in history if "completions/mean_length" in h)
        summary = {"stage": stage, "examples": len(train), "steps": trainer.state.global_step,
                   "train_loss": result.training_loss, "generated_tokens": round(generated),
                   "wall_time_s": time.perf_counter() - started}
        _save(trainer, tokenizer, out_dir, log_dir, summary, ["reward", "rewards/accuracy/mean", "loss"])
    return summary
