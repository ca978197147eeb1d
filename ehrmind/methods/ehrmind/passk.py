"""The Pass@k diagnostic and the gate (EHRMind §5).

`sample` draws n completions per item of a seeded subsample of a task's training
split from the base model, all n of a batch of items in one generate call, and
scores each with the task's scorer. `summarize` turns the stored samples into
per-item and per-category figures:

- pass@1 and pass@k: the unbiased estimator 1 - C(n-c, k)/C(n, k) (`stats.pass_at_k`);
- answer entropy: Shannon entropy (nats) of the n answers as the scorer read
  them, every unparseable answer counted as one outcome "no answer";
- reliable pass@k, for small label spaces: an item counts only when at least
  `min_correct` of its n samples are right and its answer entropy is at most
  `max_entropy`. A lucky guess among 12 samples over 2 or 3 labels is not evidence
  that RLVR will find the answer.

The gate metric of an item is its reliable pass@k where a rule covers its
category, else its plain pass@k; the task's gate value is the mean over items.
`decide`: below the threshold, RLVR has too little signal to learn from, so the SFT
warm-up runs first (`sft_rlvr`); otherwise RLVR alone (`rlvr`)."""
from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ehrmind import generation, provenance, stats
from ehrmind.generation import SamplingSpec
from ehrmind.io import read_json, read_jsonl, write_json, write_jsonl
from ehrmind.methods.ehrmind import answer
from ehrmind.tasks import Example, get_task
from ehrmind.tasks.base import DataError, balanced_subsample

log = logging.getLogger(__name__)

NO_ANSWER = None          # answer key of a sample the scorer could not read
ANY_CATEGORY = "*"        # a reliability rule for every category of a task
STAGE_BELOW, STAGE_ABOVE = "sft_rlvr", "rlvr"


def sample(model: str, examples: list[Example], settings: dict[str, Any], reward_cfg: dict[str, float],
           seed: int, out_dir: Path, trust_remote_code: bool = False, precision: str = "auto") -> dict[str, Any]:
    """Sample, score and store: out_dir/samples.jsonl (one line per item, its n samples) and
    out_dir/sampling.json (settings, counts, wall time, generated tokens, provenance)."""
    items = balanced_subsample(examples, settings["items_per_category"], seed)
    if not items:
        raise DataError("pass@k: the training split has no items to sample")
    n, k = settings["n"], settings["k"]
    if n < k:
        raise ValueError(f"pass@k needs n >= k samples per item, got n={n}, k={k}")
    unnamed = [ex.id for ex in items if not ex.task]
    if unnamed:
        raise DataError(f"pass@k: example {unnamed[0]} names no task; rerun prepare-data")
    tasks = {name: get_task(name) for name in sorted({ex.task for ex in items})}
    from ehrmind.evaluate import encode_prompts
    started = time.perf_counter()
    # batch_size counts sequences: a batch holds batch_size // n items, each prompt encoded once for its n samples.
    backend = generation.load(model, settings.get("backend", "auto"), precision=precision,
                              trust_remote_code=trust_remote_code, batch_size=max(settings["batch_size"], n),
                              engine_args=settings.get("vllm"))
    encoded, _ = encode_prompts(backend.tokenizer, [(tasks[ex.task], ex) for ex in items],
                                settings["max_prompt_tokens"])
    outputs = backend.generate(encoded, SamplingSpec(max_new_tokens=settings["max_new_tokens"], n=n,
                                                     temperature=settings["temperature"], top_p=settings["top_p"],
                                                     seed=seed))
    rows, tokens = [], 0
    for ex, gens in zip(items, outputs):
        samples = []
        for gen in gens:
            judged = answer.judge(tasks[ex.task], gen.text, ex.gold, reward_cfg)
            samples.append({"completion": gen.text, "answer": answer_key(judged), "correct": judged.score.correct,
                            "parse_error": judged.error, "generated_tokens": gen.n_tokens})
            tokens += gen.n_tokens
        rows.append({"id": ex.id, "task": ex.task, "category": ex.category, "samples": samples})
    meta = {"items": len(rows), "n": n, "k": k, "settings": settings, "reward_config": reward_cfg, "seed": seed,
            "backend": backend.name, "generated_tokens": tokens, "prompt_tokens": sum(map(len, encoded)),
            "wall_time_s": round(time.perf_counter() - started, 2), "provenance": provenance.collect()}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "samples.jsonl", rows)
    write_json(out_dir / "sampling.json", meta)
    log.info("pass@k samples: %d items x %d, %d tokens, %.0f s -> %s", len(rows), n, tokens,
             meta["wall_time_s"], out_dir)
    return meta


def answer_key(judged: answer.Judged) -> str | None:
    """The answer as the scorer read it, as a comparable string (None: no answer)."""
    value = judged.score.value
    return NO_ANSWER if value is None else json.dumps(value, sort_keys=True)


def entropy(answers: list[str | None]) -> float:
    """Shannon entropy (nats) of the empirical distribution of answers."""
    counts = Counter(answers).values()
    total = sum(counts)
    return max(0.0, -sum(c / total * math.log(c / total) for c in counts))


def rule_for(rules: dict[str, dict[str, dict[str, float]]], task: str, category: str) -> dict[str, float] | None:
    """The reliability rule of a task's category: its own, else the task's `*` rule, else none."""
    by_category = rules.get(task, {})
    return by_category.get(category, by_category.get(ANY_CATEGORY))


def item_figures(row: dict[str, Any], k: int, rules: dict) -> dict[str, Any]:
    samples = row["samples"]
    n, c = len(samples), sum(bool(s["correct"]) for s in samples)
    if n == 0:
        raise DataError(f"pass@k: item {row['id']} has no samples")
    p_k = stats.pass_at_k(n, c, k)   # raises for n < k
    h = entropy([s["answer"] for s in samples])
    rule = rule_for(rules, row["task"], row["category"])
    reliable = None
    if rule is not None:
        ok = c >= rule.get("min_correct", 0) and h <= rule.get("max_entropy", math.inf)
        reliable = p_k if ok else 0.0
    return {"n": n, "correct": c, "pass_at_1": c / n, "pass_at_k": p_k, "entropy": h,
            "reliable_pass_at_k": reliable, "gate_value": p_k if reliable is None else reliable,
            "format_rate": sum(s["answer"] is not NO_ANSWER for s in samples) / n}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _aggregate(figures: list[dict[str, Any]]) -> dict[str, Any]:
    reliable = [f["reliable_pass_at_k"] for f in figures if f["reliable_pass_at_k"] is not None]
    return {"items": len(figures),
            **{key: _mean([f[key] for f in figures])
               for key in ("pass_at_1", "pass_at_k", "entropy", "gate_value", "format_rate")},
            # only over the items a rule covers; None where none is
            "reliable_pass_at_k": _mean(reliable), "reliable_items": len(reliable)}


def summarize(rows: list[dict[str, Any]], k: int, rules: dict) -> dict[str, Any]:
    """Overall, per-task and per-category pass@1, pass@k, reliable pass@k, entropy and gate value."""
    if not rows:
        raise DataError("pass@k: no sampled items to summarize")
    figures = [(row, item_figures(row, k, rules)) for row in rows]
    by_task: dict[str, list] = defaultdict(list)
    by_category: dict[tuple[str, str], list] = defaultdict(list)
    for row, f in figures:
        by_task[row["task"]].append(f)
        by_category[(row["task"], row["category"])].append(f)
    return {"k": k, **_aggregate([f for _, f in figures]),
            "per_task": {t: _aggregate(v) for t, v in sorted(by_task.items())},
            "per_category": {f"{t}/{c}": {"task": t, "category": c, **_aggregate(v)}
                             for (t, c), v in sorted(by_category.items())}}


def decide(value: float, threshold: float) -> str:
    """Below the threshold the SFT warm-up runs first; otherwise RLVR alone."""
    return STAGE_BELOW if value < threshold else STAGE_ABOVE


def gate(sample_files: list[str], settings: dict[str, Any], train_task: str, out: Path,
         model_name: str = "", start: str = "base") -> dict[str, Any]:
    """Summarize stored samples (several files for `multi`) and write the decision to `out`.
    `start` names the checkpoint sampled: the base model, or the suite's primer, whose "rlvr"
    means RLVR from the primer (primer_rlvr)."""
    rows, cost = [], {"wall_time_s": 0.0, "generated_tokens": 0}
    for path in sample_files:
        meta = Path(path).with_name("sampling.json")
        if meta.exists():   # what the diagnostic itself cost
            m = read_json(meta)
            cost = {key: cost[key] + m[key] for key in cost}
        file_rows = read_jsonl(path)
        for i, row in enumerate(file_rows, 1):
            missing = [key for key in ("id", "task", "category", "samples") if key not in row]
            if missing:
                raise DataError(f"{path}: line {i}: field '{missing[0]}' missing; expected the output of "
                                f"`ehrmind passk`")
        rows += file_rows
    summary = summarize(rows, settings["k"], settings["reliable"])
    threshold = settings["thresholds"].get(train_task, settings["threshold"])
    result = {"cell": {"model": model_name, "train_task": train_task, "start": start}, **summary, "rules": settings["reliable"],
              "gate": {"value": summary["gate_value"], "threshold": threshold,
                       "decision": decide(summary["gate_value"], threshold),
                       "rule": f"{STAGE_BELOW} if mean gate value < {threshold} else {STAGE_ABOVE}"},
              "sampling_cost": cost, "samples": [str(p) for p in sample_files]}
    write_json(out, result)
    log.info("gate %s: value %.3f, threshold %g -> %s", train_task, summary["gate_value"], threshold,
             result["gate"]["decision"])
    return result
