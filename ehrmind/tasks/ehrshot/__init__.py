"""EHRSHOT: binary prediction (new diagnosis, readmission, long stay) from a patient timeline.

Each label (patient, prediction time) becomes one example: the timeline before
the prediction time serialized within a token budget (`serialize.py`), then the
subtask's question. Data: the embedded synthetic cohort (default; MEDS-shaped,
through the same serializer), a MEDS dataset root, or the EHRSHOT FEMR CSV release.
Patients are split, never labels: the dataset's split file when there is one
(train -> train, held_out/test -> test, tuning/val unused), else a seeded split.

data_cfg keys:
  source                "embedded" (default) | "meds" | "femr_csv"
  path                  meds: dataset root; femr_csv: the event CSV (data/ehrshot.csv)
  labels_path           femr_csv: folder of <subtask>/labeled_patients.csv (the release's benchmark/)
  codes_path            femr_csv, optional: code -> description table (CSV or parquet: code, description)
  splits_path           femr_csv, optional: splits/person_id_map.csv (omop_person_id, split)
  subtasks              list, default all of SUBTASKS
  train_per_category    examples per subtask in train (null = all); seeded
  test_per_category     examples per subtask in test (null = all); seeded, label rate kept
  balance_train_labels  true (default): train holds as many positives as negatives where possible
  heldout_fraction      test share of patients when there is no split file (default 0.2)
  token_budget          timeline tokens, ceil(chars/4) per line (default 512; embedded 192)
  n_patients            embedded: generated patients (default 300)
  base_rates            embedded: subtask -> positive rate (defaults in synthetic.DEFAULT_BASE_RATES)
"""
from __future__ import annotations

from random import Random
from typing import Any

from ehrmind.methods.ehrmind.prompts import FORMAT_HEAD, PromptTemplate
from ehrmind.tasks.base import DataError, Example, Score
from ehrmind.tasks.ehrshot.formats import Dataset, Label, read_femr_csv, read_meds
from ehrmind.tasks.ehrshot.serialize import serialize_timeline
from ehrmind.tasks.ehrshot.synthetic import DEFAULT_BASE_RATES, SCREENED, SUBTASKS, generate, risk_factors

SPLITS = ("train", "test")
SOURCES = ("embedded", "meds", "femr_csv")
DEFAULT_TOKEN_BUDGET = 512
EMBEDDED_TOKEN_BUDGET = 192   # synthetic timelines fit whole (at most ~190 tokens); prompt <= ~215
QUESTIONS = {
    "new_acutemi": "Will this patient be newly diagnosed with an acute myocardial infarction within the next year?",
    "new_hyperlipidemia": "Will this patient be newly diagnosed with hyperlipidemia within the next year?",
    "new_hypertension": "Will this patient be newly diagnosed with hypertension within the next year?",
    "new_pancan": "Will this patient be newly diagnosed with pancreatic cancer within the next year?",
    "guo_readmission": "Will this patient be readmitted to the hospital within 30 days of this discharge?",
    "guo_los": "Will this hospital stay, which began on the prediction date, last 7 days or longer?",
}
TARGETS = {"new_acutemi": "acute myocardial infarction", "new_hyperlipidemia": "hyperlipidemia",
           "new_hypertension": "hypertension", "new_pancan": "pancreatic cancer",
           "guo_readmission": "readmission", "guo_los": "a long hospital stay"}
# Class names in the answer JSON, per subtask: (label 0, label 1). EHRMind's reward compares the
# "prediction" string with the gold label's name; its release has no names for these subtasks
# except "no readmission", so these follow that pattern.
SHORT = {"new_acutemi": "acute MI", "new_hyperlipidemia": "hyperlipidemia", "new_hypertension": "hypertension",
         "new_pancan": "pancreatic cancer", "guo_readmission": "readmission", "guo_los": "long stay"}
LABEL_NAMES = {s: (f"no {short}", short) for s, short in SHORT.items()}

# EHRMind's EHRSHOT prompt builder is not in its release; this one has the shape of its other
# prompts (system sentence, task prompt with the record in a fenced block, the format
# instruction with its answer example, the same prefill) and is this suite's own wording.
_FORMAT = (FORMAT_HEAD + "<think>\n[entire reasoning process here]\n</think>\n<answer>\n{\n"
           "    \"prediction\": str(label_name),\n    \"label\": int(0_or_1)\n}\n</answer>.")
PROMPT = PromptTemplate(
    task_prompt=("You are a helpful assistant for clinical prediction from electronic health records. Please "
                 "think step-by-step about the patient's record before the prediction time and then answer "
                 "the question.\nHere is the patient record:\n```{timeline}```\n\nHere is the question:\n"
                 "```{question}```\nAnswer label 1 (\"{positive}\") for yes and label 0 (\"{negative}\") for no."),
    format_instruction=_FORMAT, sft_format_instruction=_FORMAT, record_fields=("timeline",), clean_tail=True,
    source="this suite (EHRMind's EHRSHOT prompt is not published); reward as verl/utils/reward_score/ehrshot.py")

OUTCOMES = {  # subtask -> (outcome when label 0, when label 1)
    **{s: (f"was not newly diagnosed with {TARGETS[s]} within the year",
           f"was newly diagnosed with {TARGETS[s]} within the year") for s in SUBTASKS[:4]},
    "guo_readmission": ("was not readmitted within 30 days", "was readmitted within 30 days"),
    "guo_los": ("stayed in hospital less than 7 days", "stayed in hospital 7 days or longer"),
}


def rationale(subtask: str, factors: list[str], label: int) -> str:
    """Two sentences: the screened risk factors the prompt shows (or their absence), then the outcome."""
    if factors:
        noun = "a risk factor" if len(factors) == 1 else "risk factors"
        seen = f"Before the prediction time the record shows {', '.join(factors)}, {noun} for {TARGETS[subtask]}."
    else:
        seen = (f"Before the prediction time the record shows none of the screened risk factors for "
                f"{TARGETS[subtask]} ({SCREENED[subtask]}).")
    against = " nevertheless" if bool(factors) != bool(label) else ""
    return f"{seen} The patient{against} {OUTCOMES[subtask][label]}, so the answer is {LABEL_NAMES[subtask][label]}."


def _optional_count(cfg: dict[str, Any], key: str) -> int | None:
    n = cfg.get(key)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ValueError(f"ehrshot: {key} must be a non-negative integer or null, got {n!r}")
    return n


def _subtasks(cfg: dict[str, Any]) -> tuple[str, ...]:
    chosen = cfg.get("subtasks") or SUBTASKS
    if isinstance(chosen, str):
        raise ValueError(f"ehrshot: subtasks must be a list, got {chosen!r}")
    for s in chosen:
        if s not in SUBTASKS:
            raise ValueError(f"ehrshot: unknown subtask {s!r}; expected some of {', '.join(SUBTASKS)}")
    return tuple(dict.fromkeys(chosen))


def _number(cfg: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    x = default if cfg.get(key) is None else cfg[key]
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not low < x < high:
        raise ValueError(f"ehrshot: {key} must be a number in ({low}, {high}), got {x!r}")
    return x


def load_dataset(cfg: dict[str, Any], subtasks: tuple[str, ...], seed: int) -> Dataset:
    source = str(cfg.get("source") or "embedded")
    if source == "embedded":
        rates = cfg.get("base_rates") or {}
        for s, rate in rates.items():
            if s not in SUBTASKS:
                raise ValueError(f"ehrshot: base_rates names unknown subtask {s!r}")
            _number(rates, s, 0, 0, 1)
        n = _optional_count(cfg, "n_patients")
        return generate(300 if n is None else n, seed, rates)
    if source not in SOURCES:
        raise ValueError(f"ehrshot: unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    needed = ("path",) if source == "meds" else ("path", "labels_path")
    for key in needed:
        if not cfg.get(key):
            raise ValueError(f"ehrshot: source {source!r} needs data_cfg key {key!r}")
    if source == "meds":
        return read_meds(cfg["path"], subtasks)
    return read_femr_csv(cfg["path"], cfg["labels_path"], subtasks, cfg.get("codes_path"), cfg.get("splits_path"))


def patient_split(dataset: Dataset, heldout_fraction: float, seed: int) -> dict[int, str]:
    """subject_id -> "train" | "test" for the labelled patients. Without a split file each
    patient's side is drawn from (seed, subject_id) alone, so it does not depend on which
    subtasks or other patients are loaded."""
    if dataset.splits is not None:
        named = {"train": "train", "held_out": "test"}
        return {sid: named[s] for sid, s in dataset.splits.items() if s in named}
    ids = {lab.subject_id for labs in dataset.labels.values() for lab in labs}
    return {sid: "test" if Random(f"ehrshot-split-{seed}-{sid}").random() < heldout_fraction else "train"
            for sid in ids}


def to_example(subtask: str, label: Label, dataset: Dataset, token_budget: int) -> Example:
    timeline = serialize_timeline(dataset.events[label.subject_id], label.prediction_time, dataset.codes, token_budget)
    y = int(label.value)
    when = label.prediction_time.isoformat()
    return Example(
        id=f"ehrshot-{subtask}-{label.subject_id}-{when}", category=subtask, task="ehrshot",
        fields={"timeline": timeline.text, "question": QUESTIONS[subtask], "negative": LABEL_NAMES[subtask][0],
                "positive": LABEL_NAMES[subtask][1]},
        gold={"label": y, "subtask": subtask, "subject_id": label.subject_id, "prediction_time": when,
              "label_names": list(LABEL_NAMES[subtask])},
        reasoning=rationale(subtask, risk_factors(subtask, timeline.shown, timeline.age), y),
        answer={"prediction": LABEL_NAMES[subtask][y], "label": y})


def _take(items: list[Example], n: int, rng: Random) -> list[Example]:
    return rng.sample(items, min(n, len(items)))


def subsample(examples: list[Example], n: int | None, seed: str, balance: bool, stratify: bool) -> list[Example]:
    """Per category: `balance` -> as many positives as negatives where possible (with n = None,
    all of the smaller class); `stratify` -> the label rate kept; else a plain draw. Order kept."""
    keep: set[str] = set()
    for category in dict.fromkeys(ex.category for ex in examples):
        rng = Random(f"{seed}-{category}")
        items = [ex for ex in examples if ex.category == category]
        pos = [ex for ex in items if ex.gold["label"] == 1]
        neg = [ex for ex in items if ex.gold["label"] == 0]
        if n is None and not (balance and pos and neg):
            chosen = items
        elif balance:
            if n is None:
                n_pos = n_neg = min(len(pos), len(neg))
            else:   # half each; a short class is filled from the other one
                n_neg = min(len(neg), n - min(len(pos), n // 2))
                n_pos = min(len(pos), n - n_neg)
            chosen = _take(pos, n_pos, rng) + _take(neg, n_neg, rng)
        elif stratify and n < len(items):
            n_pos = min(len(pos), round(n * len(pos) / len(items)))
            chosen = _take(pos, n_pos, rng) + _take(neg, n - n_pos, rng)
        else:
            chosen = _take(items, n, rng)
        keep.update(ex.id for ex in chosen)
    return [ex for ex in examples if ex.id in keep]


class EhrshotTask:
    name = "ehrshot"
    labels = ("negative", "positive")   # class 0 / class 1; each subtask names them (LABEL_NAMES)
    label_key = "label"
    prompt = PROMPT
    answer_keys = ("prediction", "label")
    # EHRMind's test score weights a correct answer by inverse class frequency: balanced accuracy
    headline = "balanced_accuracy"

    def load_split(self, split: str, data_cfg: dict[str, Any], seed: int) -> list[Example]:
        if split not in SPLITS:
            raise ValueError(f"ehrshot: unknown split {split!r}; expected one of {SPLITS}")
        cfg = dict(data_cfg or {})
        subtasks = _subtasks(cfg)
        embedded = str(cfg.get("source") or "embedded") == "embedded"
        budget = cfg.get("token_budget") or (EMBEDDED_TOKEN_BUDGET if embedded else DEFAULT_TOKEN_BUDGET)
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"ehrshot: token_budget must be a positive integer, got {budget!r}")
        heldout = _number(cfg, "heldout_fraction", 0.2, 0, 1)
        n = _optional_count(cfg, f"{split}_per_category")
        dataset = load_dataset(cfg, subtasks, seed)
        side = patient_split(dataset, heldout, seed)
        examples, seen = [], {}
        for subtask in subtasks:
            for label in sorted(dataset.labels.get(subtask, ()), key=lambda lab: (lab.subject_id, lab.prediction_time)):
                if side.get(label.subject_id) != split:
                    continue
                key = (subtask, label.subject_id, label.prediction_time)
                if key in seen:   # exact repeats are dropped; contradicting ones are an error
                    if seen[key] != label.value:
                        raise DataError(f"ehrshot: {subtask} labels subject {label.subject_id} at "
                                        f"{label.prediction_time.isoformat()} both true and false")
                    continue
                seen[key] = label.value
                examples.append(to_example(subtask, label, dataset, budget))
        balance = split == "train" and bool(cfg.get("balance_train_labels", True))
        return subsample(examples, n, f"ehrshot-{split}-{seed}", balance, stratify=split == "test")

    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> Score:
        """EHRMind's EHRSHOT rule: correct iff str(label) is the gold label and the prediction is
        its name. The predicted class, for the metrics, is the class both fields name (None when
        they disagree). At test time EHRMind weights a correct answer by inverse class frequency;
        here that is the balanced accuracy of the evaluation, not part of the score."""
        try:
            names = gold["label_names"]
            label, name = str(answer["label"]), str(answer["prediction"])
            predicted = int(label) if label in ("0", "1") and name == names[int(label)] else None
            if predicted is None:
                return Score(False, f"label {label!r} and prediction {name!r} name no single class of "
                                    f"0 {names[0]!r}, 1 {names[1]!r}"[:200])
            return Score(predicted == int(gold["label"]), None, predicted)
        except Exception as exc:  # malformed gold: report, never crash a run
            return Score(False, f"cannot score: {type(exc).__name__}: {exc}"[:200])


__all__ = ["DataError", "EhrshotTask", "LABEL_NAMES", "PROMPT", "QUESTIONS", "SUBTASKS", "DEFAULT_BASE_RATES", "load_dataset",
           "patient_split", "rationale", "subsample", "to_example"]
