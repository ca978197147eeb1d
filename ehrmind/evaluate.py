"""Evaluate one model on one task's test split: batched greedy generation, parse,
score, reward. Writes predictions.jsonl (one line per item, deterministic) and
metrics.json (accuracy with 95 % Wilson CI, per category, counts, provenance)."""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ehrmind import answer, models, provenance, stats
from ehrmind.generation import generate
from ehrmind.io import write_json, write_jsonl
from ehrmind.tasks import Example, Task

log = logging.getLogger(__name__)


def evaluate(task: Task, model: str, examples: list[Example], gen_cfg: dict[str, Any],
             reward_cfg: dict[str, float], out_dir: Path, cell: dict[str, Any], seed: int = 0,
             trust_remote_code: bool = False, precision: str = "auto") -> dict[str, Any]:
    if not examples:
        raise ValueError(f"no test examples for task {task.name}")
    started = time.perf_counter()
    net, tokenizer = models.load(model, trust_remote_code, precision=precision)
    net.eval()
    chats = [answer.build_messages(task, ex) for ex in examples]
    outputs = generate(net, tokenizer, chats, max_new_tokens=gen_cfg["max_new_tokens"],
                       batch_size=gen_cfg["batch_size"], temperature=gen_cfg["temperature"],
                       top_p=gen_cfg["top_p"], seed=seed, max_prompt_tokens=gen_cfg["max_prompt_tokens"])
    predictions = []
    for ex, (gen,) in zip(examples, outputs):
        judged = answer.judge(task, gen.text, ex.gold, reward_cfg)
        predictions.append({
            "id": ex.id, "category": ex.category, "completion": gen.text,
            "answer": judged.parsed.answer, "parsed_value": judged.score.value,
            "correct": judged.score.correct, "format_ok": judged.parsed.answer is not None,
            "reward": judged.reward, "parse_error": judged.error, "generated_tokens": gen.n_tokens,
        })
    wall = time.perf_counter() - started
    metrics = summarize(predictions)
    metrics.update(cell=cell, generation=gen_cfg, reward_config=reward_cfg, seed=seed, dtype=str(net.dtype),
                   wall_time_s=round(wall, 2), provenance=provenance.collect())
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "predictions.jsonl", predictions)
    write_json(out_dir / "metrics.json", metrics)
    log.info("%s: accuracy %.3f [%.3f, %.3f] on %d items, %d parse failures, %.0f s",
             "/".join(str(v) for v in cell.values()), metrics["accuracy"], metrics["ci_low"],
             metrics["ci_high"], metrics["n"], metrics["parse_failures"], wall)
    return metrics


def summarize(predictions: list[dict[str, Any]]) -> dict[str, Any]:
    overall = stats.accuracy_summary([p["correct"] for p in predictions])
    by_category: dict[str, list[bool]] = defaultdict(list)
    for p in predictions:
        by_category[p["category"]].append(p["correct"])
    tokens = sum(p["generated_tokens"] for p in predictions)
    return {
        **overall,
        "per_category": {c: stats.accuracy_summary(v) for c, v in sorted(by_category.items())},
        "format_rate": sum(p["format_ok"] for p in predictions) / len(predictions),
        "parse_failures": sum(p["parse_error"] is not None for p in predictions),
        "mean_reward": sum(p["reward"] for p in predictions) / len(predictions),
        "generated_tokens": tokens,
    }
