"""One MedCalc cell end to end on one device, timed: the device check of scripts/gpu_check.sh.

    python -m ehrmind.gpucheck [--device cuda|cpu] [--model SPEC] [--random-weights] ...

Runs, in this process, the CLI verbs the Snakemake rules run, with the run config's settings
for the medcalc cell (workflow/config/embedded.yaml by default, derived as
workflow/rules/common.smk derives them): prepare-data, prepare-model, evaluate (baseline) and
grpo (rlvr). Prints evaluation tokens/s (metrics.json: generated tokens / wall time) and GRPO
steps/s (steps / TRL's train_runtime) and writes them to OUT/gpucheck.json.

Throughput without the model's weights: `--export-shape DIR` writes a model's config and
tokenizer (a few MB) to DIR; `--model DIR --random-weights` on the GPU machine builds random
weights of that shape. Decoding speed and GRPO step time are then the real model's, accuracy
is meaningless, and no completion ends early (every one runs to max_new_tokens).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

TASK = "medcalc"
GENERATION_KEYS = ("max_new_tokens", "max_prompt_tokens")   # as in workflow/rules/common.smk
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def cell_settings(cfg: dict, overrides: argparse.Namespace) -> tuple[dict, dict, dict]:
    """(data, generation, grpo) settings of the medcalc cell, as common.smk derives them."""
    block = dict(cfg["tasks"][TASK])
    if overrides.test_per_category:
        block["test_per_category"] = overrides.test_per_category
    data = {k: v for k, v in block.items() if k not in GENERATION_KEYS}
    gen = {**cfg["generation"], **{k: block[k] for k in GENERATION_KEYS if block.get(k) is not None}}
    grpo = {**cfg["grpo"], "max_completion_length": block.get("max_new_tokens") or cfg["grpo"]["max_completion_length"],
            "max_prompt_length": gen["max_prompt_tokens"]}
    if overrides.max_new_tokens:
        gen["max_new_tokens"] = grpo["max_completion_length"] = overrides.max_new_tokens
    if overrides.grpo_steps:
        grpo["max_steps"] = overrides.grpo_steps
    return data, gen, grpo


def _verb(*argv: str) -> float:
    """Run one CLI verb here; its wall time in seconds. A failure stops the check, naming the verb."""
    from ehrmind import cli
    started = time.perf_counter()
    code = cli.main(list(argv))
    if code:
        raise SystemExit(f"gpu check: `ehrmind {argv[0]}` failed (exit {code}); see its log above")
    return time.perf_counter() - started


def export_shape(spec: str, out: Path, cache: Path | None) -> None:
    """A model's config and tokenizer files, without weights."""
    from ehrmind import models
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(models.prepare(spec, Path(tmp) / "ref.json", cache)["path"])
    out.mkdir(parents=True, exist_ok=True)
    for f in path.iterdir():
        if f.is_file() and not f.name.endswith(WEIGHTS):
            shutil.copy2(f, out / f.name)
    print(f"config and tokenizer of {spec} -> {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.1f} MB)")


def random_weights(shape: Path, out: Path) -> Path:
    """A checkpoint of `shape`'s architecture with seeded random weights (throughput only)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    if not (shape / "config.json").is_file():
        raise SystemExit(f"gpu check: --random-weights needs a folder with config.json and the tokenizer "
                         f"(from --export-shape); {shape} has no config.json")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(shape), dtype=torch.float32)
    model.save_pretrained(out)
    for f in shape.iterdir():
        if f.is_file() and f.name != "config.json" and not f.name.endswith(WEIGHTS):
            shutil.copy2(f, out / f.name)
    return out


def _grpo_runtime(log_dir: Path) -> float | None:
    path = log_dir / "train_log.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return next((r["train_runtime"] for r in reversed(rows) if "train_runtime" in r), None)


def run(a: argparse.Namespace) -> dict:
    from ehrmind import config
    cfg = config.load(a.config)
    data, gen, grpo = cell_settings(cfg, a)
    out = Path(a.out)
    seed, reward = str(cfg["seed"]), json.dumps(cfg["reward"])
    precision = ["--precision", a.precision or cfg["precision"]]
    cache = ["--cache", str(a.cache)] if a.cache else []
    spec = str(random_weights(Path(a.model), out / "random-model")) if a.random_weights else a.model

    _verb("prepare-data", "--task", TASK, "--data", json.dumps(data), "--seed", seed,
          "--train-out", str(out / "data/train.jsonl"), "--test-out", str(out / "data/test.jsonl"))
    _verb("prepare-model", "--spec", spec, *cache, "--out", str(out / "models/base.json"))
    eval_s = _verb("evaluate", "--model", str(out / "models/base.json"), "--task", TASK,
                   "--test", str(out / "data/test.jsonl"), "--settings", json.dumps(gen), "--reward", reward,
                   "--seed", seed, *precision, "--cell", "model=gpucheck", "stage=baseline",
                   "--out", str(out / "cells/baseline"))
    metrics = json.loads((out / "cells/baseline/metrics.json").read_text())
    grpo_s = _verb("grpo", "--task", TASK, "--model", str(out / "models/base.json"),
                   "--train", str(out / "data/train.jsonl"), "--settings", json.dumps(grpo), "--reward", reward,
                   "--stage", "rlvr", "--seed", seed, *precision, "--out", str(out / "models/rlvr"),
                   "--log-dir", str(out / "training/rlvr"))
    summary = json.loads((out / "training/rlvr/train_summary.json").read_text())
    runtime = _grpo_runtime(out / "training/rlvr") or grpo_s
    import torch
    result = {
        "device": torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu",
        "torch": torch.__version__, "model": a.model, "random_weights": a.random_weights,
        "eval_items": metrics["n"], "eval_generated_tokens": metrics["generated_tokens"],
        "eval_wall_s": metrics["wall_time_s"], "eval_tokens_per_s": metrics["generated_tokens"] / metrics["wall_time_s"],
        "eval_accuracy": metrics["accuracy"], "eval_verb_s": round(eval_s, 1),
        "grpo_steps": summary["steps"], "grpo_train_runtime_s": round(runtime, 2),
        "grpo_steps_per_s": summary["steps"] / runtime, "grpo_verb_s": round(grpo_s, 1),
        "settings": {"generation": gen, "grpo": grpo},
    }
    (out / "gpucheck.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ehrmind.gpucheck", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: hide every GPU (CUDA_VISIBLE_DEVICES='')")
    p.add_argument("--model", default="embedded:smollm2-135m-instruct", help="model spec or folder")
    p.add_argument("--random-weights", action="store_true", help="--model is a folder from --export-shape")
    p.add_argument("--export-shape", metavar="DIR", help="write --model's config and tokenizer to DIR, then stop")
    p.add_argument("--config", default="workflow/config/embedded.yaml", help="run config of the cell")
    p.add_argument("--out", default=None, help="work folder (default: a new temporary one)")
    p.add_argument("--cache", type=Path, help="model cache (default $EHRMIND_CACHE or .cache/ehrmind)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), help="default: the run config's")
    p.add_argument("--test-per-category", type=int, help="evaluation items per category (default: the config's)")
    p.add_argument("--max-new-tokens", type=int, help="evaluation and rollout length (default: the config's)")
    p.add_argument("--grpo-steps", type=int, help="GRPO steps (default: the config's max_steps)")
    a = p.parse_args(argv)
    if a.export_shape:
        export_shape(a.model, Path(a.export_shape), a.cache)
        return 0
    if a.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""   # before anything starts CUDA
    else:
        import torch
        if not torch.cuda.is_available():
            raise SystemExit("gpu check: no CUDA device is visible (torch.cuda.is_available() is False); "
                             "use --device cpu to run the check on the CPU")
    a.out = a.out or tempfile.mkdtemp(prefix="ehrmind-gpucheck-")
    started = time.perf_counter()
    r = run(a)
    print(f"\ngpu check on {r['device']} (torch {r['torch']}), model {r['model']}"
          f"{' (random weights)' if r['random_weights'] else ''}, {time.perf_counter() - started:.0f} s in all:")
    print(f"  evaluation: {r['eval_tokens_per_s']:.1f} tokens/s ({r['eval_generated_tokens']} tokens, "
          f"{r['eval_items']} items, {r['eval_wall_s']} s), accuracy {r['eval_accuracy']:.3f}")
    print(f"  GRPO: {r['grpo_steps_per_s']:.3f} steps/s ({r['grpo_steps']} steps in {r['grpo_train_runtime_s']} s)")
    print(f"  {Path(a.out) / 'gpucheck.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
