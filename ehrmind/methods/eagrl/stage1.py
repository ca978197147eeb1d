"""`ehrmind mcts`: EAG-RL stage 1 on a task's training split, served by a generation backend.

Class-balanced patients (`patients_per_class`), one MCTS tree each (mcts.py, all trees in
lockstep), the expert's ranking from ranked_features.jsonl for R_att. Writes, each atomically:
  trajectories.jsonl  the kept trajectories, the rows `ehrmind sft --trajectories` trains on:
                      id, patient_id, label, prompt (system + user messages), completion (one
                      assistant message), steps, and the reward's parts (reward, r_cls, r_att,
                      probability, correct, features, matched, error)
  mcts.json           what the search cost and found: patients (per class), generate calls,
                      completions and generated tokens (in all and per patient), distinct complete
                      candidates and how many parsed (the format rate), kept rows (per class),
                      parse-failure reasons and a few unparseable candidates quoted, wall time,
                      settings, reward config, seed, provenance

Settings: MCTSConfig's keys (mcts.py). The paper publishes none of them; the defaults are
choices, not tuned, and cost scales with them (at most 2 generate calls per iteration, at most
iterations x branching x (1 + rollouts) completions per patient: 48 by default):
  iterations 8        simulations per patient: enough for UCT to revisit the better first steps
                      of a 3-wide root a few times, at a bounded cost
  max_depth 3         subquestion/answer steps before the final block is forced: short
                      trajectories that fit the SFT max_length with a full record
  branching 3         candidates per expansion: the smallest breadth with a choice beyond a pair
  rollouts 1          rollouts per new child (one-step rollouts to a final answer, as in the paper)
  c_uct 1.0           rewards span about [-2.8, 0.6]: exploration of the same order
  keep 2              trajectories per patient: more patients rather than near-copies of one tree
  min_confidence 0.1, min_att 0.2, correct_only true   the kept-trajectory filters (mcts.py)
  step / rollout      {max_new_tokens 256, temperature 0.7, top_p 0.95, stop ...}: a step or a
                      final block is far shorter than 256 tokens, which caps runaway text;
                      0.7 gives some diversity among a node's candidates (EHRMind rolls out at 0.6)
and the run's own:
  patients_per_class  patients drawn per label, seeded (null: as many as the smaller class has;
                      the paper builds trajectories for class-balanced patients)
  batch_size 32       sequences decoded at once (generation backend)
  backend auto        auto | hf | vllm (the precision is the verb's --precision)
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from ehrmind import generation, provenance
from ehrmind.io import write_json, write_jsonl
from ehrmind.methods.eagrl import mcts
from ehrmind.methods.eagrl.mcts import MCTSConfig, Patient
from ehrmind.methods.eagrl.reward import RewardConfig, Tally, read_experts
from ehrmind.methods.eagrl.sampler import BackendSampler
from ehrmind.tasks import Example
from ehrmind.tasks.base import DataError

log = logging.getLogger(__name__)

EXAMPLES = 3   # unparseable candidates quoted in mcts.json (their first 300 characters)
RUN_DEFAULTS: dict[str, Any] = {"patients_per_class": None, "batch_size": 32, "backend": "auto"}


def split_settings(settings: Mapping[str, Any] | None) -> tuple[MCTSConfig, dict[str, Any]]:
    """(the search's MCTSConfig, the run's own keys with their defaults)."""
    settings = dict(settings or {})
    run = {k: settings.pop(k, v) for k, v in RUN_DEFAULTS.items()}
    try:
        return MCTSConfig.from_dict(settings), run
    except (TypeError, ValueError) as exc:
        raise ValueError(f"mcts settings: {exc}") from None


def question_of(examples: list[Example]) -> str:
    questions = {ex.fields.get("question") for ex in examples}
    if len(questions) != 1 or None in questions:
        raise DataError(f"mcts: the training examples must share one question (fields.question), "
                        f"found {sorted(map(str, questions))[:3]}")
    return questions.pop()


def run(model: str, examples: list[Example], experts_path: str | Path, settings: Mapping[str, Any] | None,
        reward: Mapping[str, Any] | None, seed: int, out_dir: Path, trust_remote_code: bool = False,
        precision: str = "auto") -> dict[str, Any]:
    cfg, run_cfg = split_settings(settings)
    reward_cfg = RewardConfig.from_dict(reward)
    if not examples:
        raise DataError("mcts: the training split is empty")
    question = question_of(examples)
    experts = read_experts(experts_path)
    patients = mcts.balanced_patients([Patient.from_example(ex) for ex in examples],
                                      run_cfg["patients_per_class"], seed)
    missing = [p.id for p in patients if p.id not in experts]
    if missing:
        raise DataError(f"{experts_path}: no ranking for patient(s) {missing[:3]} of the training split "
                        f"({len(missing)} missing); was the expert run on this split?")
    started = time.perf_counter()
    backend = generation.load(model, run_cfg["backend"], precision=precision, trust_remote_code=trust_remote_code,
                              batch_size=run_cfg["batch_size"])
    sampler = BackendSampler(backend, seed)
    trees, calls = mcts.search(patients, experts, sampler, question, cfg, reward_cfg, sampler.render)
    rows = mcts.sft_rows(trees, cfg)
    wall = time.perf_counter() - started
    summary = report(trees, calls, cfg, rows)
    summary.update(sampler.stats(), wall_time_s=round(wall, 2),
                   seconds_per_patient=round(wall / max(len(trees), 1), 2), backend=backend.name,
                   settings={**dataclasses.asdict(cfg), **run_cfg}, reward_config=dataclasses.asdict(reward_cfg),
                   seed=seed, model=str(model), question=question, provenance=provenance.collect())
    if summary["generated_tokens"] is not None:
        summary["generated_tokens_per_patient"] = round(summary["generated_tokens"] / max(len(trees), 1), 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "trajectories.jsonl", rows)
    write_json(out_dir / "mcts.json", summary)
    log.info("mcts: %d patients, %d generate calls, %d completions, %d of %d candidates parse, %d rows kept, "
             "%.0f s -> %s", summary["patients"], calls, summary["completions"], summary["parseable_candidates"],
             summary["candidates"], len(rows), wall, out_dir)
    return summary


def report(trees: list[mcts.Tree], calls: int, cfg: MCTSConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """mcts.stats plus counts per class, the candidates' format rate and parse-failure reasons."""
    base = mcts.stats(trees, calls, cfg)
    tally, unparseable = Tally(), []
    for tree in trees:
        for text, (scored, _) in tree.candidates.items():
            tally.add(scored)
            if not scored.parsed.ok and len(unparseable) < EXAMPLES:
                unparseable.append(text[:300])
    n = max(len(trees), 1)
    per_class = Counter(str(t.patient.label) for t in trees)
    kept_class = Counter(str(r["label"]) for r in rows)
    return {**base, "per_class": dict(sorted(per_class.items())),
            "completions_per_patient": round(base["completions"] / n, 2),
            "candidates": tally.scored, "parseable_candidates": tally.scored - tally.unparseable,
            "format_rate": (tally.scored - tally.unparseable) / tally.scored if tally.scored else None,
            "parse_failure_reasons": dict(tally.reasons.most_common()), "unparseable_examples": unparseable,
            "kept": len(rows), "kept_per_class": dict(sorted(kept_class.items())),
            "patients_with_kept": sum(1 for t in trees if base["per_patient"][t.patient.id]["kept"])}
