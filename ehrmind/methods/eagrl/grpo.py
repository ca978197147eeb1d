"""EAG-RL stage 2 and its RL baselines as `training.GRPOMethod`s (`ehrmind grpo --method ...`).

All three prompt in EAG-RL's format (format.py: system + user message, the record shortened
inside itself to max_prompt_length) and optimize the EAG reward (reward.py: `paper` preset by
default, R_att = Jaccard of the stated features and the patient's expert top-k from
ranked_features.jsonl). Each step also logs, as weight-0 reward functions, the rollouts' mean
R_att (0 for an unparseable one: no features stated), mean R_cls (over the parseable ones only;
NaN in a step where none parsed) and parse-failure rate: rewards/r_att/mean,
rewards/r_cls/mean, rewards/parse_failure/mean in train_log.jsonl and the curves.

  eagrl          EAG-RL: `EntropyClipGRPOTrainer` (clip.py), the entropy-aware adaptive upper
                 clip ε_high(τ) ∈ [eps_min_high, eps_max_high] = [0.2, 0.4] (paper), lower clip
                 the grpo block's epsilon; loss aggregation the grpo block's loss_type.
                 adaptive_clip: false is the "without adaptive clip" ablation: TRL's GRPOTrainer,
                 symmetric fixed clip epsilon, all else equal.
  grpo_baseline  plain GRPO with the EAG reward: TRL's GRPOTrainer, fixed symmetric clip,
                 loss_type "grpo" (per-sequence mean, the original GRPO objective).
  dapo           DAPO as TRL 1.16 offers it: loss_type "dapo" (token-level mean over the step),
                 clip-higher epsilon_high 0.28 (DAPO's; lower clip the grpo block's 0.2),
                 mask_truncated_completions (DAPO's overlong filtering) and beta 0 (DAPO drops
                 the KL term). Not included: DAPO's dynamic sampling (TRL 1.16's GRPOTrainer has no
                 option to drop groups whose rewards are all equal and resample), nor its soft
                 overlong punishment (overlong filtering is used instead, as DAPO allows).

The "without R_att" ablation is a reward setting, not a method: --reward '{"lam": 1.0}' (paper
preset; code preset: '{"preset": "code", "w_att": 0}').

Updates per generation round (`updates_per_generation`, this suite's choice, 2 for all three):
with the suite's EHRMind setting of one optimizer step per round, every update is on-policy (TRL
sets the old log-probabilities to the current ones, ratio 1) and no clip bound ever binds, so
EAG-RL's adaptive clip, DAPO's clip-higher and the fixed clip would be the same objective. Two
mini-batches per round (verl's ppo_mini_batch_size, on which the authors' code builds) is the
fewest at which the bounds act on the second update; the paper does not publish its value.
`max_steps` counts rounds; train_log.jsonl has one line per optimizer step (2 per round), the
rollout metrics on the round's first.

Method settings (--method-settings; each overrides the method's default, unknown keys refused):
  adaptive_clip, eps_min_high, eps_max_high, eps_no_features   eagrl only (clip.py says why)
  loss_type, epsilon, epsilon_high, beta, mask_truncated_completions, updates_per_generation
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Mapping, Sequence

from ehrmind.methods.eagrl import format as fmt
from ehrmind.methods.eagrl.clip import EntropyClipGRPOTrainer
from ehrmind.methods.eagrl.reward import RewardConfig, Scored, judge, trl_reward
from ehrmind.tasks import Example
from ehrmind.tasks.base import DataError

CLIP_KEYS = {"adaptive_clip": True, "eps_min_high": 0.2, "eps_max_high": 0.4, "eps_no_features": None}
GRPO_KEYS = ("loss_type", "epsilon", "epsilon_high", "beta", "mask_truncated_completions", "updates_per_generation")
UPDATES = {"updates_per_generation": 2}
DEFAULTS: dict[str, dict[str, Any]] = {
    "eagrl": {**CLIP_KEYS, **UPDATES},
    "grpo_baseline": {"loss_type": "grpo", **UPDATES},
    "dapo": {"loss_type": "dapo", "epsilon_high": 0.28, "mask_truncated_completions": True, "beta": 0.0, **UPDATES},
}
METHODS = tuple(DEFAULTS)
PLOT_KEYS = ["reward", "rewards/r_att/mean", "rewards/r_cls/mean", "rewards/parse_failure/mean",
             "eagrl/eps_high/mean", "frac_reward_zero_std", "entropy"]


def settings_for(name: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The method's settings: its defaults, overridden by `given`."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown GRPO method {name!r}; known: ehrmind, {', '.join(METHODS)}")
    given = dict(given or {})
    allowed = set(GRPO_KEYS) | (set(CLIP_KEYS) if name == "eagrl" else set())
    unknown = set(given) - allowed
    if unknown:
        raise ValueError(f"method {name}: unknown method settings {sorted(unknown)}; allowed: {sorted(allowed)}")
    out = {**DEFAULTS[name], **given}
    if name == "eagrl" and out["adaptive_clip"] and out.get("epsilon_high") is not None:
        raise ValueError("method eagrl: epsilon_high is set per sequence by the adaptive clip; "
                         "set eps_min_high/eps_max_high, or adaptive_clip: false")
    return out


def check_experts(examples: Sequence[Example], experts: Mapping[str, Sequence[str]], where: str) -> None:
    missing = [str(ex.gold["patient_id"]) for ex in examples if str(ex.gold["patient_id"]) not in experts]
    if missing:
        raise DataError(f"{where}: no expert ranking for patient(s) {missing[:3]} ({len(missing)} missing); "
                        f"was the expert run on this split?")


def logged_rewards(cfg: RewardConfig, experts: Mapping[str, Sequence[str]]):
    """Weight-0 reward functions: the rollouts' R_att, R_cls (None when unparseable) and parse failures."""
    def judged(completions, patient_id, gold) -> list[Scored]:
        out = []
        for c, pid, g in zip(completions, patient_id, gold):
            g = json.loads(g) if isinstance(g, str) else g
            out.append(judge(c[-1]["content"] if isinstance(c, list) else c, g["label"], g["features"],
                             experts[pid], cfg))
        return out

    def r_att(completions, patient_id, gold, **_) -> list[float]:
        return [s.r_att for s in judged(completions, patient_id, gold)]

    def r_cls(completions, patient_id, gold, **_) -> list[float | None]:
        return [s.r_cls if s.parsed.ok else None for s in judged(completions, patient_id, gold)]

    def parse_failure(completions, patient_id, gold, **_) -> list[float]:
        return [float(not s.parsed.ok) for s in judged(completions, patient_id, gold)]

    return [r_att, r_cls, parse_failure]


def method(name: str, experts: Mapping[str, Sequence[str]], reward: Mapping[str, Any] | None,
           settings: Mapping[str, Any] | None, max_prompt_length: int | None):
    """The GRPOMethod of `name` (eagrl, grpo_baseline, dapo)."""
    from ehrmind.training import GRPOMethod
    chosen = settings_for(name, settings)
    cfg = RewardConfig.from_dict(reward)
    main, tally = trl_reward(cfg, experts)
    overrides = {k: chosen[k] for k in ("loss_type", "epsilon", "beta", "updates_per_generation") if k in chosen}
    config = {k: chosen[k] for k in ("epsilon_high", "mask_truncated_completions") if k in chosen}
    adaptive = name == "eagrl" and chosen["adaptive_clip"]

    def summary(history: list[dict[str, Any]]) -> dict[str, Any]:
        steps = [h for h in history if "rewards/r_att/mean" in h]
        return {"method_settings": chosen, "reward_config": asdict(cfg), "adaptive_clip": adaptive,
                "dynamic_sampling": False, "scored_rollouts": tally.scored, "unparseable_rollouts": tally.unparseable,
                "parse_failure_reasons": dict(tally.reasons.most_common()),
                "r_att_first_step": steps[0]["rewards/r_att/mean"] if steps else None,
                "r_att_last_step": steps[-1]["rewards/r_att/mean"] if steps else None}

    return GRPOMethod(
        name, lambda tok, ex: fmt.encode(tok, ex, max_prompt_length)[0],
        lambda ex: {"patient_id": str(ex.gold["patient_id"]), "gold": json.dumps(ex.gold)},
        [main, *logged_rewards(cfg, experts)], overrides=overrides, config=config,
        trainer_class=EntropyClipGRPOTrainer if adaptive else None,
        trainer_kwargs={k: chosen[k] for k in ("eps_min_high", "eps_max_high", "eps_no_features")} if adaptive else {},
        plot_keys=PLOT_KEYS, summary=summary)
