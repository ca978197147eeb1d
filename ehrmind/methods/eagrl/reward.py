"""EAG-RL's reward: prediction quality plus agreement with the expert model's salient features.

Paper (arXiv 2508.13579), preset `paper`:
    R     = λ·R_cls + (1−λ)·R_att,  λ = 0.6
    R_cls = log(y·ŷ + (1−y)·(1−ŷ)) + Δ,  Δ = β(ŷ−0.5) for a correct positive (ŷ > 0.5),
            β(0.5−ŷ) for a correct negative (ŷ < 0.5), else 0
    R_att = |C ∩ C_exp| / |C ∪ C_exp|  (Jaccard of the stated <Important Features> C and the
            expert's (ConCare's) top-k features C_exp for the patient)
The authors' code is reported to weigh log-likelihood ×1.0 + separation bonus ×0.5 + IoU ×0.1
instead: preset `code`, R = w_loglik·log(…) + w_sep·|ŷ−0.5|·[correct] + w_att·R_att.

Unpublished, so each is a key here, with this suite's choice and its reason:
- beta = 0.5: the code weighs the separation bonus at half the log-likelihood; β = 0.5 keeps that
  ratio inside R_cls.
- clip_eps = 0.01: ŷ is clipped to [ε, 1−ε] before anything else (so log stays finite). Models
  write probabilities to two decimals, so "0.00"/"1.00" are read at that resolution; a smaller ε
  would let one confidently wrong answer (log 1e-4 = −9.2) dominate a group's advantages.
- top_k = 5: the expert's ranked features are cut to the top 5, few enough to be the expert's
  salient core (Yan et al. found 3 decisive TJH labs), enough that Jaccard is graded rather than
  all-or-nothing; it is 5 of MIMIC-IV's 17 features.
- unparseable = None: an unparseable completion gets the lowest reward a parseable one can get
  (log ε weighted, no bonus, R_att = 0), so garbage is never better than any answer, and a
  confidently wrong answer is not punished below garbage. Every unparseable output is counted.
- unmatched_count = True: C is every distinct name the model states, so naming things that are not
  features enlarges the union and costs reward (otherwise padding the list would be free).
  Both empty C and empty C_exp give R_att = 0.
- ŷ exactly 0.5 is correct for neither class (no Δ).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ehrmind.methods.eagrl.format import Parsed, feature_key, parse_completion

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"lam": 0.6, "beta": 0.5},
    "code": {"w_loglik": 1.0, "w_sep": 0.5, "w_att": 0.1},
}


@dataclass(frozen=True)
class RewardConfig:
    preset: str = "paper"
    lam: float = 0.6               # paper: weight of R_cls
    beta: float = 0.5              # paper: margin bonus scale (unpublished)
    w_loglik: float = 1.0          # code: weight of the log-likelihood
    w_sep: float = 0.5             # code: weight of the separation bonus |ŷ−0.5|·[correct]
    w_att: float = 0.1             # code: weight of the IoU
    clip_eps: float = 0.01         # ŷ clipped to [ε, 1−ε] (unpublished)
    top_k: int = 5                 # expert features kept (unpublished)
    unparseable: float | None = None   # None: the lowest parseable reward (unpublished)
    unmatched_count: bool = True   # stated names that are not features count in C

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown reward preset {self.preset!r}; known: {', '.join(PRESETS)}")
        if not 0.0 < self.clip_eps < 0.5:
            raise ValueError("clip_eps must lie in (0, 0.5)")
        if self.top_k < 1:
            raise ValueError("top_k must be at least 1")

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any] | None = None) -> "RewardConfig":
        """A config block: `preset` picks the preset's constants, other keys override them."""
        cfg = dict(cfg or {})
        unknown = set(cfg) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown reward keys: {sorted(unknown)}")
        preset = cfg.get("preset", "paper")
        return cls(**{**PRESETS.get(preset, {}), **cfg})

    @property
    def floor(self) -> float:
        """The lowest reward a parseable completion can get."""
        log_eps = math.log(self.clip_eps)
        return self.lam * log_eps if self.preset == "paper" else self.w_loglik * log_eps

    @property
    def unparseable_reward(self) -> float:
        return self.floor if self.unparseable is None else float(self.unparseable)


@dataclass(frozen=True)
class Scored:
    reward: float
    parsed: Parsed
    probability: float | None = None   # ŷ after clipping
    correct: bool = False
    log_lik: float = 0.0
    separation: float = 0.0           # |ŷ−0.5| when correct, else 0 (Δ = β·separation)
    r_cls: float = 0.0                # paper: log_lik + β·separation
    r_att: float = 0.0

    @property
    def error(self) -> str | None:
        return self.parsed.error

    def parts(self) -> dict[str, Any]:
        return {"reward": self.reward, "r_cls": self.r_cls, "r_att": self.r_att, "log_lik": self.log_lik,
                "separation": self.separation, "probability": self.probability, "correct": self.correct,
                "features": list(self.parsed.features), "matched": list(self.parsed.matched),
                "error": self.error}


def jaccard(stated: Sequence[str], expert: Sequence[str]) -> float:
    a, b = {feature_key(s) for s in stated}, {feature_key(e) for e in expert}
    return len(a & b) / len(a | b) if a | b else 0.0


def expert_top(ranked: Sequence[str], top_k: int) -> list[str]:
    """The expert's first `top_k` distinct features (ranked best first)."""
    out, seen = [], set()
    for name in ranked:
        if feature_key(name) not in seen:
            seen.add(feature_key(name))
            out.append(name)
    return out[:top_k]


def score(parsed: Parsed, label: int, expert_ranked: Sequence[str], cfg: RewardConfig) -> Scored:
    if not parsed.ok:
        return Scored(cfg.unparseable_reward, parsed)
    y = int(label)
    p = min(max(parsed.probability, cfg.clip_eps), 1.0 - cfg.clip_eps)
    log_lik = math.log(p if y == 1 else 1.0 - p)
    correct = (y == 1 and p > 0.5) or (y == 0 and p < 0.5)
    separation = abs(p - 0.5) if correct else 0.0
    stated = parsed.features if cfg.unmatched_count else parsed.matched
    r_att = jaccard(stated, expert_top(expert_ranked, cfg.top_k))
    if cfg.preset == "paper":
        r_cls = log_lik + cfg.beta * separation
        reward = cfg.lam * r_cls + (1.0 - cfg.lam) * r_att
    else:
        r_cls = log_lik
        reward = cfg.w_loglik * log_lik + cfg.w_sep * separation + cfg.w_att * r_att
    return Scored(reward, parsed, p, correct, log_lik, separation, r_cls, r_att)


def judge(completion: str, label: int, features: Sequence[str], expert_ranked: Sequence[str],
          cfg: RewardConfig) -> Scored:
    """Parse and score one completion. `features`: the patient's feature names; `expert_ranked`:
    the expert's features for this patient, best first."""
    return score(parse_completion(completion, features), label, expert_ranked, cfg)


@dataclass
class Tally:
    """Counts of scored and unparseable completions, and the parse-failure reasons."""
    scored: int = 0
    unparseable: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, s: Scored) -> Scored:
        self.scored += 1
        if not s.parsed.ok:
            self.unparseable += 1
            self.reasons[re.split(r"[:'\"]", s.error)[0].strip()] += 1   # the reason, without the text quoted
        return s


def read_experts(path) -> dict[str, list[str]]:
    """Each patient's features ranked by the expert, best first, from the ranked_features.jsonl
    that `ehrmind expert` writes (one row per patient: patient_id, ranked = [[feature, attention], ...])."""
    from ehrmind.io import read_jsonl
    from ehrmind.tasks.base import DataError
    out: dict[str, list[str]] = {}
    for i, row in enumerate(read_jsonl(path), start=1):
        try:
            pid, ranked = str(row["patient_id"]), [str(f) for f, _ in row["ranked"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: row {i}: expected fields 'patient_id' and 'ranked' "
                            f"([[feature, attention], ...]) ({type(exc).__name__}: {exc})") from None
        if pid in out:
            raise DataError(f"{path}: row {i}: patient {pid!r} appears twice")
        out[pid] = ranked
    return out


def trl_reward(cfg: RewardConfig, experts: Mapping[str, Sequence[str]]):
    """A TRL reward function (and its Tally) for a dataset with columns `patient_id` and `gold`
    (JSON with "label" and "features"), as the suite's GRPO stage passes dataset columns."""
    tally = Tally()

    def eagrl_reward(completions, patient_id, gold, **_) -> list[float]:
        out = []
        for c, pid, g in zip(completions, patient_id, gold):
            text = c[-1]["content"] if isinstance(c, list) else c
            g = json.loads(g) if isinstance(g, str) else g
            if pid not in experts:
                raise KeyError(f"no expert features for patient {pid!r}")
            out.append(tally.add(judge(text, g["label"], g["features"], experts[pid], cfg)).reward)
        return out

    return eagrl_reward, tally
