"""Structured-EHR prediction (EAG-RL's tasks): TJH in-hospital mortality, MIMIC-IV in-hospital
mortality and MIMIC-IV 30-day readmission (or death), from a patient's multi-visit record.

One example per patient: the record up to its last visit serialized within a token budget
(`serialize.py`); the model states the probability of the positive outcome. Data: the
embedded synthetic cohorts (default), the raw TJH release (`tjh_xlsx`) or a formatted-EHR
table (`formatted`); see `cohort.py` for the data keys and the split, `formats.py` for the
files, `synthetic.py` for the generator.

Example:  fields = {"record": <serialized text>}
          gold = {"label": 0|1, "patient_id": str, "features": [feature lines of the record, in order]}
          category = the gold class's name (e.g. "died"), answer JSON {"probability": p}
Score:    correct when (p >= 0.5) == label; `value` is the predicted class (1 when p >= 0.5),
          `probability` the stated p (AUROC/AUPRC are computed from it).
SFT target: a rationale naming the record's most abnormal last values (reference ranges from
features.py; a rule that reads only the record, so it applies to real data) and the outcome,
with {"probability": 0.9} or {"probability": 0.1}: 0 or 1 exactly would teach the model to
state certainty, which the probability is meant to grade.

Further data_cfg keys (besides cohort.py's):
  token_budget          record tokens, ceil(chars/4) per line (default: embedded 220, files 1000).
                        SmolLM2's tokenizer splits digits, so a record takes about 2.0-2.4 times as
                        many real tokens. Measured on the embedded splits (seed 0): records up to 535
                        SmolLM2 tokens (median ~400); with EHRMind's system prompt, the question and
                        the chat template, whole prompts up to 604 (median ~470). Longer records keep
                        their last visits (2-4 of the TJH-like ones).
  shuffle_fraction      share of the features whose order is permuted per patient (EAG-RL's
                        robustness experiment: 0.2, 0.4, 0.6, 1.0); default 0, the table's order
  train_examples        training examples (null = all); seeded
  test_examples         test examples (null = all); seeded, the label rate kept
  balance_train_labels  true (default): train holds as many positives as negatives where possible

Prompt for the EHRMind stages: EHRMind published none for these tasks; PROMPT has the shape of
its other prompts (system sentence, task prompt with the record in a fenced block, the format
instruction with its answer example, the same prefill) and is this suite's wording. EAG-RL's own
prompt and answer format are in ehrmind/methods/eagrl/format.py.
"""
from __future__ import annotations

import math
from random import Random
from typing import Any

from ehrmind.methods.ehrmind.prompts import FORMAT_HEAD, PromptTemplate
from ehrmind.tasks.base import DataError, Example, Score
from ehrmind.tasks.ehr import cohort
from ehrmind.tasks.ehr.cohort import SPECS, Spec
from ehrmind.tasks.ehr.features import describe
from ehrmind.tasks.ehr.formats import Record
from ehrmind.tasks.ehr.serialize import Serialized, number, serialize_record

EMBEDDED_TOKEN_BUDGET = 220
DEFAULT_TOKEN_BUDGET = 1000
SFT_PROBABILITY = (0.1, 0.9)
RATIONALE_FEATURES = 4
_FORMAT = (FORMAT_HEAD + "<think>\n[entire reasoning process here]\n</think>\n<answer>\n{\n"
           "    \"probability\": float(probability_that_the_answer_is_yes_from_0_to_1)\n}\n</answer>.")
PROMPT = PromptTemplate(
    task_prompt=("You are a helpful assistant for clinical prediction from a patient's electronic health record. "
                 "Please think step-by-step about the record and then give the probability that the answer to "
                 "the question is yes.\nHere is the patient record:\n```{record}```\n\n"
                 "Here is the question:\n```{question}```"),
    format_instruction=_FORMAT, sft_format_instruction=_FORMAT, record_fields=("record",), clean_tail=True,
    source="this suite, in the shape of EHRMind's prompts (EHRMind has none for these tasks)")
OUTCOMES = {"outcome": ("survived to discharge", "died in hospital"),
            "readmission": ("was neither readmitted nor died within 30 days of discharge",
                            "was readmitted or died within 30 days of discharge")}


def _deviation(name: str, x: float) -> float:
    """How far `x` lies outside the feature's reference range, in range widths (0 inside or unknown)."""
    f = describe(name)
    if f.low is None or f.high is None or math.isnan(x):
        return 0.0
    width = max(f.high - f.low, abs(f.high) * 0.1, 1e-9)
    return max(f.low - x, x - f.high, 0.0) / width


def rationale(record: Record, shown: Serialized, target: str, label: int) -> str:
    last = {}
    for name in shown.features:
        j = record.features.index(name)
        values = [v[j] for v in record.values[-shown.visits:] if not math.isnan(v[j])]
        last[name] = values[-1]
    abnormal = sorted((n for n in last if _deviation(n, last[n]) > 0), key=lambda n: -_deviation(n, last[n]))
    parts = []
    for name in abnormal[:RATIONALE_FEATURES]:
        f = describe(name)
        side = "above" if last[name] > f.high else "below"
        unit = f" {f.unit}" if f.unit and not f.unit.startswith(("score", "0 normal")) else ""
        parts.append(f"{name} {number(last[name])}{unit} ({side} {f.normal()})")
    seen = ("The most abnormal last values are " + "; ".join(parts) + "." if parts
            else "The last values lie within their reference ranges.")
    level = "high" if label else "low"
    return f"{seen} The patient {OUTCOMES[target][label]}, so the probability is {level}."


def _example(spec: Spec, record: Record, token_budget: int, shuffle_fraction: float, seed: int) -> Example:
    shown = serialize_record(record, token_budget, shuffle_fraction, seed)
    label = record.label(spec.target)
    return Example(
        id=f"{spec.name}-{record.patient_id}", category=spec.classes[label], task=spec.name,
        fields={"record": shown.text, "question": spec.question},
        gold={"label": label, "patient_id": record.patient_id, "features": list(shown.features)},
        reasoning=rationale(record, shown, spec.target, label),
        answer={"probability": SFT_PROBABILITY[label]})


def _count(cfg: dict[str, Any], key: str, name: str) -> int | None:
    n = cfg.get(key)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"{name}: {key} must be a positive integer or null, got {n!r}")
    return n


def subsample(examples: list[Example], n: int | None, seed: str, balance: bool) -> list[Example]:
    """`balance`: as many positives as negatives where possible (n = None: all of the smaller
    class); else the label rate kept (round(n * rate) positives). Order kept."""
    pos = [ex for ex in examples if ex.gold["label"] == 1]
    neg = [ex for ex in examples if ex.gold["label"] == 0]
    rng = Random(seed)
    if balance and pos and neg:
        total = 2 * min(len(pos), len(neg)) if n is None else n
        n_pos = min(len(pos), total // 2)
        n_neg = min(len(neg), total - n_pos)
        n_pos = min(len(pos), total - n_neg)           # a short class is filled from the other one
    elif n is None or n >= len(examples):
        return examples
    else:
        n_pos = min(len(pos), round(n * len(pos) / len(examples)))
        n_neg = min(len(neg), n - n_pos)
    keep = {ex.id for ex in rng.sample(pos, n_pos) + rng.sample(neg, n_neg)}
    return [ex for ex in examples if ex.id in keep]


class EhrTask:
    """One of the structured-EHR tasks (a ClassificationTask over two classes)."""
    label_key = "probability"     # the answer JSON key; holds a probability, not a class index
    prompt = PROMPT
    answer_keys = ("probability",)
    headline = "auroc"   # EAG-RL's (with AUPRC), from the stated probability

    def __init__(self, name: str):
        self.spec = SPECS[name]
        self.name = name
        self.labels = self.spec.classes
        self.question = self.spec.question

    def load_split(self, split: str, data_cfg: dict[str, Any], seed: int) -> list[Example]:
        cfg = dict(data_cfg or {})
        embedded = str(cfg.get("source") or "embedded") == "embedded"
        budget = cfg.get("token_budget") or (EMBEDDED_TOKEN_BUDGET if embedded else DEFAULT_TOKEN_BUDGET)
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 16:
            raise ValueError(f"{self.name}: token_budget must be an integer >= 16, got {budget!r}")
        fraction = cfg.get("shuffle_fraction") or 0.0
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ValueError(f"{self.name}: shuffle_fraction must be a number in [0, 1], got {fraction!r}")
        n = _count(cfg, f"{split}_examples", self.name) if split in cohort.SPLITS else None
        records = cohort.records_for(self.spec, split, cfg, seed)
        examples = [_example(self.spec, r, budget, fraction, seed) for r in records]
        balance = split == "train" and bool(cfg.get("balance_train_labels", True))
        return subsample(examples, n, f"{self.name}-{split}-{seed}", balance)

    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> Score:
        try:
            if not isinstance(answer, dict):
                return Score(False, "answer JSON is not an object")
            p = answer.get("probability")
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
                return Score(False, f"'probability' must be a number from 0 to 1, got {p!r}"[:200])
            predicted = int(p >= 0.5)
            return Score(predicted == int(gold["label"]), None, predicted, float(p))
        except Exception as exc:  # malformed gold: report, never crash a run
            return Score(False, f"cannot score: {type(exc).__name__}: {exc}"[:200])


__all__ = ["DataError", "EhrTask", "PROMPT", "SPECS", "rationale", "subsample"]
