"""TREC Clinical Trials: is a patient eligible for, excluded from, or not relevant to a trial?

Labels (one mapping for prompt, reward and metrics, the qrels one, with EHRMind's names):
0 Irrelevant, 1 Excluded, 2 Eligible. EHRMind's RL prompt uses this order; its SFT prompt and
its public reward code swap 0 and 1, which this suite does not follow.
Splits by patient: a seeded `heldout_fraction` of topics is unseen (inductive test); of the
seen topics' pairs a seeded, label-stratified `transductive_fraction` is the transductive test
and the rest the training pool, from which train takes `train_per_label` pairs per label.

data_cfg keys:
  source                "embedded" (default) | "ir_datasets" | "files"
  dataset_id            ir_datasets id (default "clinicaltrials/2021/trec-ct-2021")
  topics, qrels, trials files source: topics XML, qrels file, trials directory or .jsonl file
  n_patients            embedded: number of patients (default 40)
  trials_per_patient    embedded: judged trials per patient (default 6)
  heldout_fraction      fraction of patients held out for the inductive test (default 0.2)
  transductive_fraction fraction of seen patients' pairs held out as transductive test (default 0.2)
  train_per_label       training pairs per label (default None: the smallest class's count)
  test_per_category     pairs per test kind, label-stratified (default None: all)
"""
from __future__ import annotations

import os
from random import Random
from typing import Any, NamedTuple

from ehrmind.methods.ehrmind.prompts import FORMAT_HEAD, PromptTemplate
from ehrmind.tasks.base import DataError, Example, Score, balanced_subsample
from ehrmind.tasks.trec_ct.formats import QrelRows, TrialLookup, read_files, read_ir_dataset

LABELS = ("Irrelevant", "Excluded", "Eligible")   # position = class index = qrels label

# EHRMind's trial-matching prompt (src/dataset/matching/rl/inst.py: PROMPT, get_trial_text, make_prefix),
# "clinial" and the trailing spaces as published.
_FORMAT = (FORMAT_HEAD + "<think>\n[entire reasoning process here, you should analyze each criterion one by one]\n"
           "</think>\n<answer>\n{\n    \"prediction\": str(one_of_[\"Irrelevant\", \"Excluded\", \"Eligible\"]),\n"
           "    \"idx\": int(matching_index_of_this_data_point)\n}\n</answer>.")
# EHRMind's SFT prompt for this task (sft/sft_data.py) lists the labels in another order; the suite
# trains with the RL prompt so that one label order holds everywhere.
PROMPT = PromptTemplate(
    task_prompt=(
        "You are a helpful assistant for clinical trial recruitment. Your task is to compare a given patient note "
        "and the eligibility criteria of a clinical trial to determine the patient's eligibility.\n\n"
        "The assessment of eligibility has a three-point scale: \n"
        "0) Irrelevant (patient does not have sufficient information to qualify for the trial); \n"
        "1) Excluded (patient meets inclusion criteria, but is excluded on the grounds of the trial's exclusion "
        "criteria); and \n"
        "2) Eligible (patient meets inclusion criteria and exclusion criteria do not apply).\n"
        "You should make a trial-level eligibility on each patient for the clinical trial, i.e., output the scale "
        "for the assessment of eligibility. \n\n"
        "Here is the patient note:\n{note}\n\n"
        "Here is the clinial trial:\n"
        "Title: {title}\nInclusion Criteria: \n```\n{inclusion}\n```\nExclusion Criteria: \n```\n{exclusion}\n```\n"
        "-----------------"),
    format_instruction=_FORMAT, sft_format_instruction=_FORMAT,
    record_fields=("note", "inclusion", "exclusion"), clean_tail=True,
    source="EHRMind src/dataset/matching/rl/inst.py")
SPLITS = ("train", "test")
SOURCES = ("embedded", "ir_datasets", "files")
DEFAULT_DATASET_ID = "clinicaltrials/2021/trec-ct-2021"
# SFT rationale for real data, which has none: states the label and invents no facts
VERDICT = ("this trial is not relevant to the patient", "the patient is excluded from this trial",
           "the patient is eligible for this trial")
DEFAULTS: dict[str, Any] = {
    "source": "embedded", "dataset_id": DEFAULT_DATASET_ID, "n_patients": 40, "trials_per_patient": 6,
    "heldout_fraction": 0.2, "transductive_fraction": 0.2, "train_per_label": None,
    "test_per_category": None,
}

Pair = tuple[str, str, int]   # (topic, trial, label)


class Corpus(NamedTuple):
    topics: dict[str, str]
    qrels: QrelRows
    trials: TrialLookup
    rationales: dict[tuple[str, str], str]
    origin: str               # names the data in error messages


def _options(data_cfg: dict[str, Any] | None) -> dict[str, Any]:
    cfg = {**DEFAULTS, **{k: v for k, v in (data_cfg or {}).items() if v is not None}}
    if cfg["source"] not in SOURCES:
        raise ValueError(f"trec_ct: source must be one of {SOURCES}, got {cfg['source']!r}")
    for key in ("heldout_fraction", "transductive_fraction"):
        x = cfg[key]
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x < 1:
            raise ValueError(f"trec_ct: {key} must be a number in [0, 1), got {x!r}")
    for key, low in (("n_patients", 1), ("trials_per_patient", 1), ("train_per_label", 0),
                     ("test_per_category", 0)):
        x = cfg[key]
        if x is not None and (isinstance(x, bool) or not isinstance(x, int) or x < low):
            raise ValueError(f"trec_ct: {key} must be an integer >= {low}"
                             f"{' or null' if key in ('train_per_label', 'test_per_category') else ''}, got {x!r}")
    if cfg["source"] == "files":
        for key in ("topics", "qrels", "trials"):
            if not isinstance(cfg.get(key), (str, os.PathLike)) or not str(cfg[key]):
                raise ValueError(f"trec_ct: source 'files' needs {key!r}, a path; got {cfg.get(key)!r}")
    return cfg


def load_corpus(cfg: dict[str, Any], seed: int) -> Corpus:
    if cfg["source"] == "embedded":
        from ehrmind.tasks.trec_ct.synthetic import generate
        data = generate(cfg["n_patients"], cfg["trials_per_patient"], seed)
        return Corpus(data.topics, data.qrels, data.trials, data.rationales, f"embedded generator (seed {seed})")
    if cfg["source"] == "files":
        topics, qrels, trials = read_files(cfg["topics"], cfg["qrels"], cfg["trials"])
        return Corpus(topics, qrels, trials, {}, str(cfg["qrels"]))
    try:
        import ir_datasets
    except ImportError:
        raise ImportError("trec_ct: source 'ir_datasets' needs the ir_datasets package: "
                          "pip install ir_datasets==0.6.3") from None
    topics, qrels, trials = read_ir_dataset(ir_datasets.load(cfg["dataset_id"]), cfg["dataset_id"])
    return Corpus(topics, qrels, trials, {}, cfg["dataset_id"])


def _topic_key(qid: str) -> tuple[int, int, str]:
    return (0, int(qid), "") if qid.isdigit() else (1, 0, qid)


def _share(n: int, fraction: float) -> int:
    return int(n * fraction + 0.5)   # halves round up, unlike round()


def _stratified(pairs: list[Pair], n: int, rng: Random) -> list[Pair]:
    """n pairs drawn with label proportions kept; original order kept."""
    if n >= len(pairs):
        return pairs
    rank: dict[Pair, tuple[float, int]] = {}
    for label in range(len(LABELS)):
        group = [p for p in pairs if p[2] == label]
        rng.shuffle(group)
        rank.update({p: ((i + 0.5) / len(group), label) for i, p in enumerate(group)})
    keep = set(sorted(pairs, key=rank.__getitem__)[:n])
    return [p for p in pairs if p in keep]


def split_pairs(qrels: QrelRows, seed: int, cfg: dict[str, Any]) -> dict[str, list[Pair]]:
    """{"train", "transductive", "inductive"} pairs; each list sorted by (topic, trial)."""
    pairs = sorted(qrels, key=lambda p: (_topic_key(p[0]), p[1]))
    topics = sorted({p[0] for p in pairs}, key=_topic_key)
    Random(f"trec_ct-topics-{seed}").shuffle(topics)
    heldout = set(topics[:_share(len(topics), cfg["heldout_fraction"])])
    seen = [p for p in pairs if p[0] not in heldout]
    inductive = [p for p in pairs if p[0] in heldout]
    transductive = _stratified(seen, _share(len(seen), cfg["transductive_fraction"]),
                               Random(f"trec_ct-transductive-{seed}"))
    taken = set(transductive)
    pool = [p for p in seen if p not in taken]
    per_label = cfg["train_per_label"]
    if per_label is None:
        counts = [c for c in (sum(p[2] == k for p in pool) for k in range(len(LABELS))) if c]
        per_label = min(counts, default=0)   # the smallest class present
    train = balanced_subsample(pool, per_label, seed, category=lambda p: str(p[2]))
    n_test = cfg["test_per_category"]
    if n_test is not None:
        transductive = _stratified(transductive, n_test, Random(f"trec_ct-test-transductive-{seed}"))
        inductive = _stratified(inductive, n_test, Random(f"trec_ct-test-inductive-{seed}"))
    return {"train": train, "transductive": transductive, "inductive": inductive}


def make_example(corpus: Corpus, pair: Pair, kind: str) -> Example:
    qid, docid, label = pair
    try:
        trial = corpus.trials[docid]
    except KeyError:
        raise DataError(f"{corpus.origin}: topic {qid}, trial {docid}: field 'trial': no trial document") from None
    if qid not in corpus.topics:
        raise DataError(f"{corpus.origin}: topic {qid}, trial {docid}: field 'topic': no topic text")
    fields = {"note": corpus.topics[qid], "title": trial.title.strip(), "inclusion": trial.inclusion.strip(),
              "exclusion": trial.exclusion.strip()}
    reasoning = corpus.rationales.get((qid, docid)) or f"Comparing the patient with the trial's criteria, {VERDICT[label]}."
    return Example(id=f"trec_ct-{qid}-{docid}", category=LABELS[label] if kind == "train" else kind,
                   fields=fields, gold={"label": label, "kind": kind, "topic": qid, "trial": docid},
                   reasoning=reasoning, answer={"prediction": LABELS[label], "idx": label}, task="trec_ct")


class TrecCTTask:
    name = "trec_ct"
    labels = LABELS
    label_key = "idx"
    prompt = PROMPT
    answer_keys = ("prediction", "idx")
    headline = "accuracy"   # EHRMind's; macro-F1 and kappa beside it in the classification table

    def load_split(self, split: str, data_cfg: dict[str, Any], seed: int) -> list[Example]:
        if split not in SPLITS:
            raise ValueError(f"trec_ct: unknown split {split!r}; expected one of {SPLITS}")
        cfg = _options(data_cfg)
        corpus = load_corpus(cfg, seed)
        parts = split_pairs(corpus.qrels, seed, cfg)
        kinds = ("train",) if split == "train" else ("transductive", "inductive")
        return [make_example(corpus, pair, kind) for kind in kinds for pair in parts[kind]]

    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> Score:
        """EHRMind's matching rule: correct iff str(prediction) is the gold label's name and
        str(idx) its index ("2" and 2 both read as 2). The predicted class, for the metrics,
        is the class both fields name; None when they disagree or name none."""
        try:
            name, idx = str(answer["prediction"]), str(answer["idx"])
            predicted = LABELS.index(name) if name in LABELS and idx == str(LABELS.index(name)) else None
            if predicted is None:
                return Score(False, f"prediction {name!r} and idx {idx!r} name no single class of "
                                    f"{', '.join(f'{i} {n}' for i, n in enumerate(LABELS))}"[:200])
            return Score(predicted == int(gold["label"]), None, predicted)
        except Exception as exc:  # malformed gold: report, never crash a run
            return Score(False, f"cannot score: {type(exc).__name__}: {exc}"[:200])


__all__ = ["LABELS", "PROMPT", "Corpus", "DataError", "TrecCTTask", "load_corpus", "make_example", "split_pairs"]
