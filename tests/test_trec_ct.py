"""TREC Clinical Trials task: label mapping, scorer, splits, file formats, ir_datasets adapter."""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from ehrmind.methods.ehrmind.answer import judge
from ehrmind.methods.ehrmind.prompts import sft_target
from ehrmind.tasks.base import DataError
from ehrmind.tasks.trec_ct import LABELS, VERDICT, TrecCTTask, split_pairs
from ehrmind.tasks.trec_ct.formats import (Trial, read_files, split_criteria, read_ir_dataset, read_qrels, read_topics,
                                           read_trial_xml, write_qrels, write_topics_xml, write_trial_xml,
                                           write_trials_jsonl)
from ehrmind.tasks.trec_ct.synthetic import generate

TASK = TrecCTTask()
GOLD = {"label": 2, "kind": "transductive", "topic": "1", "trial": "NCT00000001"}
REWARD = {"format_ok": 0.1, "format_bad": -2.0, "correct": 1.0, "wrong": 0.0}


@pytest.fixture(scope="module")
def embedded() -> dict[str, list]:
    return {split: TASK.load_split(split, {}, seed=3) for split in ("train", "test")}


def write_official(data, root: Path, jsonl: bool = False) -> dict[str, str]:
    """Embedded data as official files; returns the matching data_cfg."""
    write_topics_xml(data.topics, root / "topics.xml")
    write_qrels(data.qrels, root / "qrels.txt")
    if jsonl:
        trials = root / "trials.jsonl"
        write_trials_jsonl(data.trials.values(), trials)
    else:
        trials = root / "trials"
        trials.mkdir()
        for docid, trial in data.trials.items():
            write_trial_xml(trial, trials / f"{docid}.xml")
    return {"source": "files", "topics": str(root / "topics.xml"), "qrels": str(root / "qrels.txt"),
            "trials": str(trials)}


# ---------------------------------------------------------------- label mapping (pinned)
def test_label_mapping_is_pinned_across_prompt_scorer_and_sft(embedded):
    # the qrels order with EHRMind's names; its public reward code swapped 0 and 1 against its
    # RL prompt, and its SFT prompt lists them in yet another order: ours must not
    assert LABELS == ("Irrelevant", "Excluded", "Eligible")
    for i, name in enumerate(LABELS):
        assert f"{i}) {name} (" in TASK.prompt.task_prompt and f'"{name}"' in TASK.prompt.format_instruction
    assert TASK.prompt.sft_format_instruction == TASK.prompt.format_instruction
    assert TASK.score({"prediction": "Eligible", "idx": 2}, GOLD).correct
    assert TASK.score({"prediction": "Excluded", "idx": 1}, {**GOLD, "label": 1}).correct
    assert not TASK.score({"prediction": "Excluded", "idx": 1}, {**GOLD, "label": 0}).correct
    for ex in embedded["train"] + embedded["test"]:
        assert ex.answer == {"prediction": LABELS[ex.gold["label"]], "idx": ex.gold["label"]}
        assert TASK.score(ex.answer, ex.gold).correct
    ex = embedded["train"][0]
    assert judge(TASK, sft_target(ex.reasoning, ex.answer), ex.gold, REWARD).reward == pytest.approx(1.1)


# ---------------------------------------------------------------- scorer
@pytest.mark.parametrize("answer, correct, value, error", [
    # EHRMind's rule: str(prediction) is the label's name and str(idx) its index
    ({"prediction": "Eligible", "idx": 2}, True, 2, None),
    ({"prediction": "Eligible", "idx": "2"}, True, 2, None),          # str("2") == str(2)
    ({"prediction": "Excluded", "idx": 1}, False, 1, None),           # wrong class
    ({"prediction": "Irrelevant", "idx": 0, "extra": 1}, False, 0, None),
    ({"prediction": "eligible", "idx": 2}, False, None, "name no single class"),    # names are exact
    ({"prediction": " Eligible ", "idx": 2}, False, None, "name no single class"),
    ({"prediction": "Eligible", "idx": 1}, False, None, "name no single class"),
    ({"prediction": "Eligible", "idx": True}, False, None, "name no single class"),
    ({"prediction": "Eligible", "idx": 2.0}, False, None, "name no single class"),  # str(2.0) == "2.0"
    ({"prediction": "Eligible", "idx": 3}, False, None, "name no single class"),
    ({"prediction": "Eligible", "idx": [2]}, False, None, "name no single class"),
    ({"prediction": "maybe", "idx": 2}, False, None, "name no single class"),
    ({"prediction": 2, "idx": 2}, False, None, "name no single class"),
    ({"prediction": None, "idx": None}, False, None, "name no single class"),
])
def test_score(answer, correct, value, error):
    s = TASK.score(answer, GOLD)
    assert (s.correct, s.value) == (correct, value)
    assert (s.error is None) if error is None else (error in s.error)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                           max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["prediction", "idx", "label", "x"]) | st.text(max_size=5), json_values,
                       max_size=4), json_values)
def test_score_never_raises(answer, gold_label):
    s = TASK.score(answer, {"label": gold_label})
    assert isinstance(s.correct, bool) and s.value in (None, 0, 1, 2)
    assert TASK.score("not a dict", GOLD).error   # type: ignore[arg-type]


# ---------------------------------------------------------------- generator and splits
def test_generator_is_seeded_rule_based_and_balanced():
    data = generate(40, 6, seed=1)
    assert data == generate(40, 6, seed=1) and data != generate(40, 6, seed=2)
    assert Counter(label for *_, label in data.qrels) == {0: 80, 1: 80, 2: 80}
    assert len(data.trials) < len(data.qrels)   # trials are shared between patients
    assert set(data.rationales) == {(q, d) for q, d, _ in data.qrels}
    for q, d, label in data.qrels:
        trial, rationale = data.trials[d], data.rationales[q, d]
        assert trial.conditions[0] in rationale
        assert (trial.conditions[0] in data.topics[q]) == (label > 0)
        assert ("not relevant" in rationale, "excluded" in rationale, "eligible" in rationale)[label]
        assert (f"Age under {trial.minimum_age.split()[0]} or over {trial.maximum_age.split()[0]} years"
                in trial.exclusion)   # the age window is shown: EHRMind's prompt has no structured ages


def test_examples_are_compact_and_well_formed(embedded):
    examples = embedded["train"] + embedded["test"]
    assert len({ex.id for ex in examples}) == len(examples)
    for ex in examples:
        assert ex.task == "trec_ct" and ex.id == f"trec_ct-{ex.gold['topic']}-{ex.gold['trial']}"
        assert set(ex.fields) == {"note", "title", "inclusion", "exclusion"}
        assert ex.fields["inclusion"].startswith("- ") and ex.fields["exclusion"].startswith("- Age under")
        assert len("".join(ex.fields.values())) < 800 and ex.reasoning.count(".") <= 3
    assert {ex.category for ex in embedded["train"]} == set(LABELS)
    assert {ex.category for ex in embedded["test"]} == {"transductive", "inductive"}
    assert all(ex.gold["kind"] == ex.category for ex in embedded["test"])


def test_split_properties(embedded):
    again = {split: TASK.load_split(split, {}, seed=3) for split in ("train", "test")}
    assert again == embedded
    assert TASK.load_split("train", {}, seed=4) != embedded["train"]
    train, test = embedded["train"], embedded["test"]
    pairs = lambda exs: {(ex.gold["topic"], ex.gold["trial"]) for ex in exs}   # noqa: E731
    assert not pairs(train) & pairs(test)
    train_topics = {ex.gold["topic"] for ex in train}
    inductive = [ex for ex in test if ex.category == "inductive"]
    transductive = [ex for ex in test if ex.category == "transductive"]
    assert inductive and transductive
    assert not {ex.gold["topic"] for ex in inductive} & train_topics
    assert not {ex.gold["topic"] for ex in transductive} & {ex.gold["topic"] for ex in inductive}
    assert len({ex.gold["topic"] for ex in inductive}) == 8   # 20 % of 40 patients
    counts = Counter(ex.gold["label"] for ex in train)
    assert set(counts) == {0, 1, 2} and len(set(counts.values())) == 1


def test_split_sizes_follow_the_config():
    cfg = {"train_per_label": 5, "test_per_category": 6, "n_patients": 20}
    train, test = (TASK.load_split(s, cfg, seed=0) for s in ("train", "test"))
    assert Counter(ex.category for ex in train) == {name: 5 for name in LABELS}
    assert Counter(ex.category for ex in test) == {"transductive": 6, "inductive": 6}
    assert Counter(ex.gold["label"] for ex in test if ex.category == "inductive") == {0: 2, 1: 2, 2: 2}
    # transductive pairs come only from patients that are not held out
    data = generate(20, 6, seed=0)
    base = {"heldout_fraction": 0.5, "transductive_fraction": 0.0, "train_per_label": None, "test_per_category": None}
    parts = split_pairs(data.qrels, 0, base)
    assert parts["transductive"] == [] and len({q for q, _, _ in parts["inductive"]}) == 10


@pytest.mark.parametrize("cfg, key", [({"heldout_fraction": -0.1}, "heldout_fraction"),
                                      ({"transductive_fraction": 1.0}, "transductive_fraction"),
                                      ({"train_per_label": -1}, "train_per_label"),
                                      ({"n_patients": True}, "n_patients"),
                                      ({"source": "web"}, "source"),
                                      ({"source": "files", "topics": "t.xml"}, "qrels")])
def test_bad_config_values(cfg, key):
    with pytest.raises(ValueError, match=key):
        TASK.load_split("train", cfg, seed=0)
    with pytest.raises(ValueError, match="split"):
        TASK.load_split("validation", {}, seed=0)


def test_criteria_are_split_into_inclusion_and_exclusion():
    text = "  inclusion criteria:\n- Adults\n- Asthma\nEXCLUSION CRITERIA\n- Pregnancy\nInclusion Criteria:\n- Consent"
    assert split_criteria(text) == ("- Adults\n- Asthma\n- Consent", "- Pregnancy")   # any case, blocks joined
    assert split_criteria("Inclusion Criteria:\n- A\nExclusion Criteria:\n- B") == ("- A", "- B")
    assert split_criteria("- A only, no headings") == ("- A only, no headings", "")
    assert split_criteria("Exclusion Criteria:\n- B") == ("", "- B")
    assert split_criteria("Preamble\nExclusion Criteria:\n- B") == ("Preamble", "- B")


# ---------------------------------------------------------------- official formats
@pytest.mark.parametrize("jsonl", [False, True])
def test_round_trip_embedded_to_official_files(tmp_path, embedded, jsonl):
    data = generate(40, 6, seed=3)
    cfg = write_official(data, tmp_path, jsonl)
    assert read_topics(cfg["topics"]) == data.topics and read_qrels(cfg["qrels"]) == data.qrels
    for split in ("train", "test"):
        from_files = TASK.load_split(split, cfg, seed=3)
        strip = lambda exs: [dataclasses.replace(ex, reasoning="") for ex in exs]   # noqa: E731
        assert strip(from_files) == strip(embedded[split])
        # real data has no rationale: an honest template naming the label
        assert all(VERDICT[ex.gold["label"]] in ex.reasoning for ex in from_files)


CT_GOV_XML = """<?xml version="1.0" encoding="UTF-8"?>
<clinical_study rank="1">
  <required_header><url>https://clinicaltrials.gov/show/NCT00000102</url></required_header>
  <id_info><org_study_id>NCRR-M01RR01070-0308</org_study_id><nct_id>NCT00000102</nct_id></id_info>
  <brief_title>Congenital Adrenal Hyperplasia: Calcium Channels as Therapeutic Targets</brief_title>
  <official_title>Official title that is not used</official_title>
  <condition>Congenital Adrenal Hyperplasia</condition>
  <condition>Hyperandrogenism</condition>
  <eligibility>
    <criteria>
      <textblock>
        Inclusion Criteria:

          -  Children with classic CAH

        Exclusion Criteria:

          -  Pregnancy
      </textblock>
    </criteria>
    <gender>All</gender>
    <minimum_age>14 Years</minimum_age>
    <maximum_age>35 Years</maximum_age>
    <healthy_volunteers>No</healthy_volunteers>
  </eligibility>
</clinical_study>
"""


def test_clinicaltrials_gov_xml_is_parsed(tmp_path):
    path = tmp_path / "NCT00000102.xml"
    path.write_text(CT_GOV_XML)
    trial = read_trial_xml(path)
    assert trial == Trial("NCT00000102", "Congenital Adrenal Hyperplasia: Calcium Channels as Therapeutic Targets",
                          ("Congenital Adrenal Hyperplasia", "Hyperandrogenism"),
                          "Inclusion Criteria:\n-  Children with classic CAH\nExclusion Criteria:\n-  Pregnancy",
                          gender="All", minimum_age="14 Years", maximum_age="35 Years")
    assert (trial.inclusion, trial.exclusion) == ("-  Children with classic CAH", "-  Pregnancy")
    # nested layout (NCT0000xxxx/NCT00000102.xml) and a question built from it
    (tmp_path / "trials" / "NCT0000xxxx").mkdir(parents=True)
    (tmp_path / "trials" / "NCT0000xxxx" / path.name).write_text(CT_GOV_XML)
    write_topics_xml({"1": "A 20-year-old with classic CAH.", "2": "A 50-year-old with asthma."}, tmp_path / "t.xml")
    write_qrels([("1", "NCT00000102", 2), ("2", "NCT00000102", 0)], tmp_path / "q.txt")
    cfg = {"source": "files", "topics": str(tmp_path / "t.xml"), "qrels": str(tmp_path / "q.txt"),
           "trials": str(tmp_path / "trials"), "heldout_fraction": 0.5}
    (ex,) = TASK.load_split("test", cfg, seed=0)
    assert ex.fields == {"note": "A 50-year-old with asthma.",
                         "title": "Congenital Adrenal Hyperplasia: Calcium Channels as Therapeutic Targets",
                         "inclusion": "-  Children with classic CAH", "exclusion": "-  Pregnancy"}
    assert ex.category == "inductive"


def _files(tmp_path: Path, topics: str, qrels: str, trials: dict[str, str]) -> dict[str, str]:
    (tmp_path / "topics.xml").write_text(topics)
    (tmp_path / "qrels.txt").write_text(qrels)
    (tmp_path / "trials").mkdir()
    for name, text in trials.items():
        (tmp_path / "trials" / name).write_text(text)
    return {"source": "files", "topics": str(tmp_path / "topics.xml"), "qrels": str(tmp_path / "qrels.txt"),
            "trials": str(tmp_path / "trials")}


TOPICS = '<topics task="2021 TREC Clinical Trials"><topic number="1">A 20-year-old.</topic></topics>'
GOOD = {"NCT00000102.xml": CT_GOV_XML}


@pytest.mark.parametrize("topics, qrels, trials, expected", [
    (TOPICS, "1 0 NCT00000102 2\n1 0 NCT00000102 3\n", GOOD, ["qrels.txt", "line 2", "'label'", "expected 0, 1 or 2"]),
    (TOPICS, "1 0 NCT00000102\n", GOOD, ["qrels.txt", "line 1", "4 whitespace-separated columns", "got 3"]),
    (TOPICS, "1 0 NCT00000102 2\n\n1 0 NCT00000102 1\n", GOOD, ["qrels.txt", "line 3", "'trial'", "first on line 1"]),
    (TOPICS, "1 0 NCT00000102 2\n7 0 NCT00000102 1\n", GOOD, ["qrels.txt", "line 2", "'topic'", "topic 7"]),
    (TOPICS, "1 0 NCT00000102 2\n1 0 NCT09999999 1\n", GOOD,
     ["qrels.txt", "line 2", "'trial'", "NCT09999999", "expected NCT09999999.xml"]),
    ('<topics><topic number="1">x</topic><topic>no number</topic></topics>', "", GOOD,
     ["topics.xml", "<topic> element #2", "'number'"]),
    ('<topics><topic number="1">x</topic', "", GOOD, ["topics.xml", "not well-formed XML", "line 1"]),
    (TOPICS, "1 0 NCT00000102 2\n", {"NCT00000102.xml": CT_GOV_XML.replace("<nct_id>NCT00000102</nct_id>", "")},
     ["NCT00000102.xml", "<nct_id>", "expected the trial's NCT id"]),
    (TOPICS, "1 0 NCT00000102 2\n", {"NCT00000102.xml": CT_GOV_XML.split("<eligibility>")[0] + "</clinical_study>"},
     ["NCT00000102.xml", "<eligibility><criteria><textblock>", "expected the eligibility criteria text"]),
    (TOPICS, "1 0 NCT00000102 2\n", {"NCT00000102.xml": CT_GOV_XML[:400]},
     ["NCT00000102.xml", "not well-formed XML", "line"]),
    (TOPICS, "1 0 NCT00000102 2\n", {"NCT00000102.xml": CT_GOV_XML.replace("NCT00000102</nct_id>", "NCT1</nct_id>")},
     ["NCT00000102.xml", "'nct_id'", "expected NCT00000102"]),
    (TOPICS, "1 0 NCT00000102 2\n", {"t.jsonl": '{"nct_id": "NCT00000102", "title": "x"}\n'},
     ["t.jsonl", "line 1", "'eligibility'"]),
    (TOPICS, "1 0 NCT00000102 2\n", {"NCT00000102.json": json.dumps({"nct_id": "NCT00000102", "eligibility": "x",
                                                                     "condition": 5})},
     ["NCT00000102.json", "'condition'", "expected a string or a list"]),
])
def test_malformed_inputs_name_file_line_and_field(tmp_path, topics, qrels, trials, expected):
    cfg = _files(tmp_path, topics, qrels, trials)
    with pytest.raises(DataError) as err:
        TASK.load_split("train", {**cfg, "heldout_fraction": 0.0}, seed=0)   # the one pair is in train
    for part in expected:
        assert part in str(err.value)


def test_missing_trials_path(tmp_path):
    write_topics_xml({"1": "x"}, tmp_path / "t.xml")
    write_qrels([("1", "NCT1", 2)], tmp_path / "q.txt")
    with pytest.raises(DataError, match="trials path not found"):
        read_files(tmp_path / "t.xml", tmp_path / "q.txt", tmp_path / "nowhere")


# ---------------------------------------------------------------- ir_datasets adapter
class FakeDocs:
    def __init__(self, docs: dict[str, SimpleNamespace]):
        self.docs, self.fetched = docs, []

    def get(self, doc_id: str) -> SimpleNamespace:
        self.fetched.append(doc_id)
        return self.docs[doc_id]


class FakeDataset:
    def __init__(self, qrels: list[tuple[str, str, int]], n_docs: int = 40):
        self.qrels = qrels
        self.store = FakeDocs({f"NCT{i:08d}": SimpleNamespace(
            doc_id=f"NCT{i:08d}", title=f"Trial {i}", condition="Asthma\nCOPD", summary="s", detailed_description="d",
            eligibility="  Inclusion Criteria:\n\n   - Asthma\n") for i in range(n_docs)})

    def queries_iter(self):
        return iter(SimpleNamespace(query_id=str(q), text=f" Patient {q} with asthma. ") for q in range(1, 11))

    def qrels_iter(self):
        return iter(SimpleNamespace(query_id=q, doc_id=d, relevance=r, iteration="0") for q, d, r in self.qrels)

    def docs_store(self) -> FakeDocs:
        return self.store


def test_ir_datasets_adapter_with_a_fake_dataset(monkeypatch):
    qrels = [(str(q), f"NCT{(q * 3 + k) % 40:08d}", k % 3) for q in range(1, 11) for k in range(6)]
    ds = FakeDataset(qrels)
    topics, read, trials = read_ir_dataset(ds, "fake/trec-ct")
    assert topics["3"] == "Patient 3 with asthma." and read == qrels and ds.store.fetched == []
    assert trials["NCT00000005"] == Trial("NCT00000005", "Trial 5", ("Asthma", "COPD"), "Inclusion Criteria:\n- Asthma")

    loaded = []
    fake = SimpleNamespace(load=lambda dataset_id: loaded.append(dataset_id) or FakeDataset(qrels))
    monkeypatch.setitem(__import__("sys").modules, "ir_datasets", fake)
    cfg = {"source": "ir_datasets", "train_per_label": 2, "test_per_category": 3}
    train = TASK.load_split("train", cfg, seed=0)
    assert loaded == ["clinicaltrials/2021/trec-ct-2021"] and len(train) == 6
    assert train[0].reasoning.startswith("Comparing the patient with the trial's criteria")
    assert train[0].fields["title"].startswith("Trial ") and train[0].fields["inclusion"] == "- Asthma"


def test_ir_datasets_adapter_errors(monkeypatch):
    with pytest.raises(DataError, match=r"fake: qrel #2 \(topic 1, trial NCT00000001\): field 'relevance'"):
        read_ir_dataset(FakeDataset([("1", "NCT00000000", 0), ("1", "NCT00000001", 4)]), "fake")
    fake = SimpleNamespace(load=lambda dataset_id: FakeDataset([("1", "NCT99999999", 2)]))
    monkeypatch.setitem(__import__("sys").modules, "ir_datasets", fake)
    with pytest.raises(DataError, match="topic 1, trial NCT99999999: field 'trial': no trial document"):
        TASK.load_split("test", {"source": "ir_datasets", "heldout_fraction": 0.5}, seed=0)
    monkeypatch.setitem(__import__("sys").modules, "ir_datasets", None)   # not installed
    with pytest.raises(ImportError, match=r"pip install ir_datasets==0\.6\.3"):
        TASK.load_split("train", {"source": "ir_datasets"}, seed=0)
