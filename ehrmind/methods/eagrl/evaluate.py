"""EAG-RL evaluation (`ehrmind evaluate --method eagrl --style ...`): prompt a model in one of
format.py's styles on a structured-EHR test split, parse, and score the stated probabilities.

Styles: `decompose` (EAG-RL's own format: for a trained EAG-RL model, and untrained as the
subquestion prompting baseline), `think` and `vanilla` (the other prompting baselines).

Per evaluation, writes predictions.jsonl (one line per patient: id, category, patient_id,
gold_label, completion, probability (the score ranked), stated_probability, p_source, stated
features, matched features, r_att against the patient's expert top-k, correct, parse_error,
generated_tokens) and metrics.json: AUROC and AUPRC with their bootstrap mean ± sd over patients
(`stats.auc_bootstrap`), accuracy with its Wilson interval, parse failures and format rate, mean
R_att, generation cost (generated tokens per second of generation, and prompt + generated tokens
per second: on a CPU the prefill of long EHR prompts takes most of the time) and provenance.

An unparseable answer gets probability 0.5 (p_source "unparseable"): the uninformative score,
which ranks the patient between the model's stated positives and negatives. Dropping those
patients instead would let a model raise its AUROC by failing on the hard cases, and a fixed 0 or
1 would rank them with one class; the parse-failure count stands beside every AUROC. 0.5 is
correct for neither class (as in the EAG reward), so an unparseable answer is never correct.

R_att: the Jaccard of the stated features and the expert's top-k (reward.py's rule and top_k),
for `decompose` only. mean_r_att counts an unparseable completion as 0 (no features stated), as
the training logs do; mean_r_att_parsed averages the parseable ones. think and vanilla state no
features: their R_att is null.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Mapping, Sequence

from ehrmind import generation, provenance, stats
from ehrmind.evaluate import EvalJob, _dtype
from ehrmind.generation import SamplingSpec
from ehrmind.io import write_json, write_jsonl
from ehrmind.methods.eagrl import format as fmt
from ehrmind.methods.eagrl.grpo import check_experts
from ehrmind.methods.eagrl.reward import RewardConfig, score

log = logging.getLogger(__name__)

UNPARSEABLE_PROBABILITY = 0.5
N_RESAMPLES = 1000


def evaluate(model: str, jobs: list[EvalJob], experts: Sequence[Mapping[str, Sequence[str]]],
             reward: Mapping[str, Any] | None, style: str = "decompose", seed: int = 0,
             trust_remote_code: bool = False, precision: str = "auto") -> list[dict[str, Any]]:
    """One model load for every job; `experts[i]` is job i's patient -> ranked features."""
    if style not in fmt.STYLES:
        raise ValueError(f"unknown prompt style {style!r}; known: {', '.join(fmt.STYLES)}")
    if len(experts) != len(jobs):
        raise ValueError("give one expert ranking file per evaluation")
    cfg = RewardConfig.from_dict(reward)
    for job, ranked in zip(jobs, experts):
        if not job.examples:
            raise ValueError(f"no test examples for task {job.task.name}")
        check_experts(job.examples, ranked, f"expert rankings for {job.task.name}")
    backend = generation.load(model, jobs[0].gen_cfg.get("backend", "auto"), precision=precision,
                              trust_remote_code=trust_remote_code, batch_size=jobs[0].gen_cfg["batch_size"])
    return [_evaluate_one(backend, job, ranked, cfg, style, seed) for job, ranked in zip(jobs, experts)]


def _evaluate_one(backend, job: EvalJob, experts: Mapping[str, Sequence[str]], cfg: RewardConfig, style: str,
                  seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    gen_cfg, tokenizer = job.gen_cfg, backend.tokenizer
    encoded = [fmt.encode(tokenizer, ex, gen_cfg["max_prompt_tokens"], style) for ex in job.examples]
    cut = sum(c > 0 for _, c in encoded)
    if hasattr(backend, "batch_size"):
        backend.batch_size = gen_cfg["batch_size"]
    gen_started = time.perf_counter()
    outputs = backend.generate([ids for ids, _ in encoded], SamplingSpec(
        max_new_tokens=gen_cfg["max_new_tokens"], temperature=gen_cfg["temperature"], top_p=gen_cfg["top_p"],
        seed=seed))
    gen_seconds = time.perf_counter() - gen_started
    predictions = [_prediction(ex, gen, experts, cfg, style) for ex, (gen,) in zip(job.examples, outputs)]
    metrics = summarize(predictions, style, seed)
    tokens, prompt_tokens = metrics["generated_tokens"], sum(len(ids) for ids, _ in encoded)
    metrics.update(cell=job.cell, style=style, generation=gen_cfg, reward_config=dataclasses.asdict(cfg), seed=seed,
                   unparseable_probability=UNPARSEABLE_PROBABILITY, backend=backend.name, dtype=_dtype(backend),
                   system_prompt=fmt.messages_for(style, "", "", [])[0]["content"], prompts_cut=cut,
                   prompt_tokens=prompt_tokens, generation_seconds=round(gen_seconds, 2),
                   tokens_per_s=round(tokens / max(gen_seconds, 1e-9), 1),
                   processed_tokens_per_s=round((tokens + prompt_tokens) / max(gen_seconds, 1e-9), 1),
                   wall_time_s=round(time.perf_counter() - started, 2), provenance=provenance.collect())
    job.out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(job.out_dir / "predictions.jsonl", predictions)
    write_json(job.out_dir / "metrics.json", metrics)
    log.info("%s (%s): AUROC %s, AUPRC %s, %d of %d unparseable, %.0f tokens/s", "/".join(map(str, job.cell.values())),
             style, _fmt(metrics.get("auroc")), _fmt(metrics.get("auprc")), metrics["parse_failures"], metrics["n"],
             metrics["tokens_per_s"])
    return metrics


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _prediction(ex, gen, experts: Mapping[str, Sequence[str]], cfg: RewardConfig, style: str) -> dict[str, Any]:
    label, pid = int(ex.gold["label"]), str(ex.gold["patient_id"])
    parsed = fmt.parse_for(style, gen.text, ex.gold["features"])
    p = parsed.probability if parsed.ok else UNPARSEABLE_PROBABILITY
    r_att = None
    if style == "decompose":
        r_att = score(parsed, label, experts[pid], cfg).r_att   # 0 when unparseable: no features stated
    return {"id": ex.id, "category": ex.category, "patient_id": pid, "gold_label": label, "completion": gen.text,
            "probability": p, "stated_probability": parsed.probability if parsed.ok else None,
            "p_source": "stated" if parsed.ok else "unparseable", "features": list(parsed.features),
            "matched": list(parsed.matched), "r_att": r_att, "correct": (p > 0.5) if label else (p < 0.5),
            "parse_error": parsed.error, "generated_tokens": gen.n_tokens}


def summarize(predictions: list[dict[str, Any]], style: str, seed: int = 0,
              n_resamples: int = N_RESAMPLES) -> dict[str, Any]:
    labels = [p["gold_label"] for p in predictions]
    parsed = [p for p in predictions if p["parse_error"] is None]
    metrics: dict[str, Any] = {
        **stats.accuracy_summary([p["correct"] for p in predictions]),
        "n_positive": sum(labels), "parse_failures": len(predictions) - len(parsed),
        "format_rate": len(parsed) / len(predictions),
        "generated_tokens": sum(p["generated_tokens"] for p in predictions),
        "mean_r_att": None, "mean_r_att_parsed": None}
    if style == "decompose":
        metrics["mean_r_att"] = sum(p["r_att"] for p in predictions) / len(predictions)
        metrics["mean_r_att_parsed"] = sum(p["r_att"] for p in parsed) / len(parsed) if parsed else None
    try:
        auc = stats.auc_bootstrap(labels, [p["probability"] for p in predictions], n_resamples, seed)
        metrics.update({k: auc[k] for k in ("auroc", "auroc_mean", "auroc_sd", "auprc", "auprc_mean", "auprc_sd",
                                            "n_resamples", "n_valid")})
    except ValueError as exc:   # one class only: no AUC
        metrics.update(auroc=None, auprc=None, auc_error=str(exc))
    return metrics
