"""MedCalc-Bench: compute a clinical score, value or date from a patient note.

Data: the embedded synthetic generator (default), a Hugging Face dataset id
(`ncbi/MedCalc-Bench-v1.0`, pinned v1.0 labels) or a local CSV/parquet file in
the same 14 columns. Scoring follows the official rules without `eval`.

data_cfg keys:
  source              "embedded" (default) | hub id | path (may contain "{split}")
  train_path/test_path  per-split local files (take precedence over source)
  revision            hub revision (optional)
  train_per_category / test_per_category
                      embedded: rows generated per category (defaults 100 / 20);
                      real data: seeded category-balanced subsample (None = all)
"""
from __future__ import annotations

from typing import Any

from ehrmind.methods.ehrmind.prompts import FORMAT_HEAD, PromptTemplate
from ehrmind.tasks.base import DataError, Example, Score
from ehrmind.tasks.base import balanced_subsample as _balanced
from ehrmind.tasks.medcalc.scoring import CALCULATORS, rule_for, score_value
from ehrmind.tasks.medcalc.source import (COLUMNS, DEFAULT_HUB_ID, is_local, read_rows, validate_rows,
                                          write_csv)

# EHRMind's MedCalc prompt (src/dataset/medcalc/rl/data_process.py; SFT: sft/data_preprocess.py)
_FORMAT = (FORMAT_HEAD + '<think>\n[entire reasoning process here]\n</think>\n<answer>\n{\n'
           '    "answer": str(short_and_direct_answer_of_the_question),\n} \n</answer>.')
PROMPT = PromptTemplate(
    task_prompt=("You are a helpful assistant for calculating a score for a given patient note. Please think "
                 "step-by-step to solve the question and then generate the required score.\n"
                 "Here is the patient note:\n```{note}```\n\nHere is the task:\n```{question}```"),
    format_instruction=_FORMAT + "\n\nDo not output anything after the </answer> tag.",
    sft_format_instruction=_FORMAT,
    record_fields=("note",), clean_tail=False,   # the release comments the tail check out for MedCalc
    source="EHRMind src/dataset/medcalc/rl/data_process.py, sft/data_preprocess.py")

SPLITS = ("train", "test")
DEFAULT_PER_CATEGORY = {"train": 100, "test": 20}
TEST_ROW_OFFSET = 1_000_000  # embedded test Row Numbers start at 1,000,001, train at 1


def model_answer(row: dict[str, str]) -> str:
    """The ground truth as EHRMind's SFT target writes it: {"answer": "<Ground Truth Answer>"}."""
    return row["Ground Truth Answer"].strip()


def rows_to_examples(rows: list[dict[str, str]], split: str) -> list[Example]:
    """Validated rows -> Examples (ids medcalc-<split>-<Row Number>)."""
    out = []
    for row in rows:
        gold = {"calculator_id": int(row["Calculator ID"]), "output_type": row["Output Type"].strip(),
                "ground_truth": row["Ground Truth Answer"], "lower": row["Lower Limit"], "upper": row["Upper Limit"]}
        out.append(Example(id=f"medcalc-{split}-{row['Row Number'].strip()}", category=row["Category"].strip(),
                           fields={"note": row["Patient Note"], "question": row["Question"]},   # as EHRMind: unstripped
                           gold=gold, reasoning=row["Ground Truth Explanation"].strip(),
                           answer={"answer": model_answer(row)}))
    return out


def balanced_subsample(rows: list[dict[str, str]], per_category: int | None, seed: int) -> list[dict[str, str]]:
    """Up to `per_category` rows of each category, seeded; original order kept."""
    return _balanced(rows, per_category, seed, category=lambda row: row["Category"].strip())


def _per_category(cfg: dict[str, Any], split: str, embedded: bool) -> int | None:
    n = cfg.get(f"{split}_per_category")
    if n is None:
        return DEFAULT_PER_CATEGORY[split] if embedded else None
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"medcalc: {split}_per_category must be a non-negative integer or null, got {n!r}")
    return n


class MedCalcTask:
    name = "medcalc"
    prompt = PROMPT
    answer_keys = ("answer",)
    headline = "accuracy"

    def load_split(self, split: str, data_cfg: dict[str, Any], seed: int) -> list[Example]:
        if split not in SPLITS:
            raise ValueError(f"medcalc: unknown split {split!r}; expected one of {SPLITS}")
        cfg = dict(data_cfg or {})
        source = str(cfg.get("source") or "embedded")
        if source == "embedded" and not cfg.get(f"{split}_path"):
            rows = self._embedded_rows(split, cfg, seed)
        else:
            rows = self._real_rows(split, cfg, source, seed)
        return rows_to_examples(rows, split)

    @staticmethod
    def _embedded_rows(split: str, cfg: dict[str, Any], seed: int) -> list[dict[str, str]]:
        from ehrmind.tasks.medcalc.synthetic import generate_rows
        # Derived seeds keep train and test apart; exact repeats of a test item are
        # then also dropped from train, so the splits are disjoint.
        test = generate_rows(_per_category(cfg, "test", True), seed * 2 + 1, first_row=TEST_ROW_OFFSET + 1)
        if split == "test":
            rows = test
        else:
            taken = {(r["Patient Note"], r["Question"]) for r in test}
            rows = [r for r in generate_rows(_per_category(cfg, "train", True), seed * 2)
                    if (r["Patient Note"], r["Question"]) not in taken]
        validate_rows(rows, f"embedded generator (seed {seed}, {split})")
        return rows

    @staticmethod
    def _real_rows(split: str, cfg: dict[str, Any], source: str, seed: int) -> list[dict[str, str]]:
        where = cfg.get(f"{split}_path") or source
        where = str(where).replace("{split}", split)
        revision = cfg.get("revision")
        origin = where if is_local(where) else f"{where}@{revision or 'default'} split {split}"
        rows = read_rows(where, split, revision)
        validate_rows(rows, origin)
        return balanced_subsample(rows, _per_category(cfg, split, False), seed * 2 + (split == "test"))

    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> Score:
        try:
            if not isinstance(answer, dict):
                return Score(False, "answer JSON is not an object")
            if "answer" not in answer:
                return Score(False, "missing key 'answer'")
            cid = int(gold["calculator_id"])
            rule = rule_for(cid) if cid in CALCULATORS else str(gold.get("output_type"))
            return score_value(answer["answer"], rule, str(gold["ground_truth"]), str(gold.get("lower", "")),
                               str(gold.get("upper", "")))
        except Exception as exc:  # malformed gold: report, never crash a run
            return Score(False, f"cannot score: {type(exc).__name__}: {exc}"[:200])


__all__ = ["COLUMNS", "DEFAULT_HUB_ID", "DataError", "MedCalcTask", "balanced_subsample", "model_answer",
           "read_rows", "rows_to_examples", "validate_rows", "write_csv"]
