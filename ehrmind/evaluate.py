"""Evaluate one model on one or more tasks' test splits: batched greedy generation,
parse, score, reward. The model is loaded once for all of them (the transfer
matrix evaluates every checkpoint on every other task).

Per evaluation, writes predictions.jsonl (one line per item, deterministic) and
metrics.json (accuracy with 95 % Wilson CI, per category, counts, provenance; for
classification tasks also balanced accuracy, macro-F1, Cohen's kappa, the
confusion matrix, and for two classes AUROC from the model's probability of
answering class 1)."""
from __future__ import annotations

import logging
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ehrmind import generation, provenance, stats
from ehrmind.generation import Generation, SamplingSpec
from ehrmind.io import write_json, write_jsonl
from ehrmind.methods.ehrmind import answer, prompts
from ehrmind.tasks import Example, Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalJob:
    task: Task
    examples: list[Example]
    gen_cfg: dict[str, Any]   # the generation block, with the task's overrides applied
    out_dir: Path
    cell: dict[str, Any]      # labels stored in metrics.json (model, task, stage, ...)


def evaluate(model: str, jobs: list[EvalJob], reward_cfg: dict[str, float], seed: int = 0,
             trust_remote_code: bool = False, precision: str = "auto") -> list[dict[str, Any]]:
    for job in jobs:
        if not job.examples:
            raise ValueError(f"no test examples for task {job.task.name}")
    backend = generation.load(model, jobs[0].gen_cfg.get("backend", "auto"), precision=precision,
                              trust_remote_code=trust_remote_code, batch_size=jobs[0].gen_cfg["batch_size"],
                              engine_args=jobs[0].gen_cfg.get("vllm"))
    return [_evaluate_one(backend, job, reward_cfg, seed) for job in jobs]


def encode_prompts(tokenizer, items: list[tuple[Task, Example]],
                   max_prompt_tokens: int | None) -> tuple[list[list[int]], int]:
    """EHRMind prompts of (task, example) pairs as token ids, and how many had to be shortened
    inside their record."""
    encoded = [prompts.encode(tokenizer, task.prompt, ex.fields, max_prompt_tokens, where=ex.id)
               for task, ex in items]
    cut = sum(c > 0 for _, c in encoded)
    if cut:
        log.warning("%d of %d prompts were shortened inside the record to fit %d tokens",
                    cut, len(items), max_prompt_tokens)
    return [ids for ids, _ in encoded], cut


def _evaluate_one(backend, job: EvalJob, reward_cfg: dict[str, float], seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    task, gen_cfg, tokenizer = job.task, job.gen_cfg, backend.tokenizer
    binary = len(getattr(task, "labels", ())) == 2
    digits = _digit_tokens(tokenizer) if binary else {}
    encoded, cut = encode_prompts(tokenizer, [(task, ex) for ex in job.examples], gen_cfg["max_prompt_tokens"])
    if hasattr(backend, "batch_size"):
        backend.batch_size = gen_cfg["batch_size"]
    outputs = backend.generate(encoded, SamplingSpec(
        max_new_tokens=gen_cfg["max_new_tokens"], temperature=gen_cfg["temperature"], top_p=gen_cfg["top_p"],
        seed=seed, watch=tuple(digits)))
    predictions = []
    for ex, (gen,) in zip(job.examples, outputs):
        judged = answer.judge(task, gen.text, ex.gold, reward_cfg)
        row = {"id": ex.id, "category": ex.category, "completion": gen.text,
               "answer": judged.parsed.answer, "parsed_value": judged.score.value,
               "correct": judged.score.correct, "format_ok": judged.parsed.answer is not None,
               "reward": judged.reward, "parse_error": judged.error, "generated_tokens": gen.n_tokens}
        if hasattr(task, "labels"):
            row["gold_label"] = ex.gold["label"]
        if binary:
            row["p_positive"], row["p_source"] = _p_positive(tokenizer, gen, judged, task.label_key, digits)
        predictions.append(row)
    wall = time.perf_counter() - started
    metrics = summarize(predictions, len(getattr(task, "labels", ())), getattr(task, "headline", "accuracy"), seed)
    metrics.update(cell=job.cell, generation=gen_cfg, reward_config=reward_cfg, seed=seed,
                   backend=backend.name, dtype=_dtype(backend), prompt=task.prompt.source, prefill=prompts.PREFILL,
                   prompts_cut=cut, prompt_tokens=sum(map(len, encoded)), wall_time_s=round(wall, 2),
                   provenance=provenance.collect())
    job.out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(job.out_dir / "predictions.jsonl", predictions)
    write_json(job.out_dir / "metrics.json", metrics)
    log.info("%s: accuracy %.3f [%.3f, %.3f] on %d items, %d parse failures, %.0f s",
             "/".join(str(v) for v in job.cell.values()), metrics["accuracy"], metrics["ci_low"],
             metrics["ci_high"], metrics["n"], metrics["parse_failures"], wall)
    return metrics


def headline_arrays(name: str, predictions: list[dict[str, Any]]) -> tuple[list[int], list[float]]:
    """What the headline metric reads from predictions.jsonl rows (see stats.metric)."""
    if name == "accuracy":
        return [0] * len(predictions), [float(p["correct"]) for p in predictions]
    if name == "balanced_accuracy":
        return [p["gold_label"] for p in predictions], [-1 if p["parsed_value"] is None else p["parsed_value"]
                                                        for p in predictions]
    return [p["gold_label"] for p in predictions], [p["p_positive"] for p in predictions]


def summarize(predictions: list[dict[str, Any]], n_classes: int = 0, headline: str = "accuracy",
              seed: int = 0) -> dict[str, Any]:
    overall = stats.accuracy_summary([p["correct"] for p in predictions])
    by_category: dict[str, list[bool]] = defaultdict(list)
    for p in predictions:
        by_category[p["category"]].append(p["correct"])
    metrics = {
        **overall,
        "per_category": {c: stats.accuracy_summary(v) for c, v in sorted(by_category.items())},
        "format_rate": sum(p["format_ok"] for p in predictions) / len(predictions),
        "parse_failures": sum(p["parse_error"] is not None for p in predictions),
        "mean_reward": sum(p["reward"] for p in predictions) / len(predictions),
        "generated_tokens": sum(p["generated_tokens"] for p in predictions),
        "headline": stats.metric_summary(headline, *headline_arrays(headline, predictions), seed=seed),
    }
    if n_classes:
        # A consistent answer naming a wrong class still counts as that class; anything else is "none".
        metrics["classification"] = stats.classification_summary(
            [p["gold_label"] for p in predictions], [p["parsed_value"] for p in predictions], n_classes,
            [p["p_positive"] for p in predictions] if n_classes == 2 else None)
    return metrics


def _dtype(backend) -> str:
    model = getattr(backend, "model", None)
    return str(getattr(model, "dtype", "")) or getattr(backend, "dtype", "")


# --- probability of the positive class, read off the generation's own logits ---

_DIGIT_OF = {"0": "1", "1": "0"}


def _digit_tokens(tokenizer) -> dict[int, str]:
    """Vocabulary entries that decode to a lone 0 or 1 (with or without a leading space)."""
    out = {}
    for token, i in tokenizer.get_vocab().items():
        text = tokenizer.convert_tokens_to_string([token])
        if text.strip() in _DIGIT_OF:
            out[i] = text
    return dict(sorted(out.items()))


def _p_positive(tokenizer, gen: Generation, judged: answer.Judged, label_key: str,
                digits: dict[int, str]) -> tuple[float, str]:
    """P(class 1): the probability the answer states, for tasks that ask for one ("stated");
    else the probability at the step where the model wrote the label digit, renormalized over
    the two digits ("logits"). When that step cannot be found, the hard answer ("answer": 0
    or 1), and 0.5 when there is no valid answer ("none")."""
    if judged.score.probability is not None:
        return float(judged.score.probability), "stated"
    p = _p_from_logits(tokenizer, gen, label_key, digits)
    if p is not None:
        return p, "logits"
    if judged.score.value in (0, 1):
        return float(judged.score.value), "answer"
    return 0.5, "none"


def _p_from_logits(tokenizer, gen: Generation, label_key: str, digits: dict[int, str]) -> float | None:
    start = gen.text.rfind("<answer>")
    found = list(re.finditer(rf'"{re.escape(label_key)}"\s*:\s*"?([01])', gen.text[max(start, 0):]))
    if start < 0 or not found or not gen.watched:
        return None
    pos = start + found[-1].start(1)
    # The step that produced the character at `pos`: the shortest prefix whose text reaches past it.
    lo, hi = 1, len(gen.token_ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.decode(gen.token_ids[:mid], skip_special_tokens=True)) > pos:
            hi = mid
        else:
            lo = mid + 1
    step = lo - 1
    token = gen.token_ids[step]
    if token not in digits:
        return None   # the digit was merged into a longer token
    text = digits[token]
    digit = text.strip()
    rival = next((i for i, t in digits.items() if t == text.replace(digit, _DIGIT_OF[digit])), None)
    if rival is None:
        return None
    ids = list(digits)
    lp_self, lp_rival = gen.watched[step][ids.index(token)], gen.watched[step][ids.index(rival)]
    lp1, lp0 = (lp_self, lp_rival) if digit == "1" else (lp_rival, lp_self)
    if math.isinf(lp0) and math.isinf(lp1):
        return None
    return 1.0 / (1.0 + math.exp(lp0 - lp1))
