"""EHRSHOT task: readers (MEDS, FEMR CSV), serializer cut-off and budget, splits, scorer, embedded data."""
from __future__ import annotations

import csv
import itertools
import re
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ehrmind.tasks.base import DataError
from ehrmind.tasks.ehrshot import LABEL_NAMES, QUESTIONS, SUBTASKS, EhrshotTask, load_dataset
from ehrmind.tasks.ehrshot.formats import Event, Label, write_femr_csv, write_meds
from ehrmind.tasks.ehrshot.serialize import approx_tokens, serialize_timeline
from ehrmind.tasks.ehrshot.synthetic import CODES, OUTCOME_CODES, generate

TASK = EhrshotTask()
D = datetime
SUBS = ["new_acutemi", "new_hypertension"]
EVENTS = {
    1: [Event(None, "GENDER/F"), Event(D(1960, 5, 10), "MEDS_BIRTH"),
        Event(D(2020, 1, 5, 9), "SNOMED/29857009"), Event(D(2020, 1, 5, 9), "LOINC/10839-9", 0.5, "ng/mL"),
        Event(D(2020, 6, 1, 10), "RxNorm/1191"), Event(D(2020, 6, 1, 10), "CPT4/93000"),
        Event(D(2021, 1, 1), "SNOMED/22298006"),                       # at the prediction time: hidden
        Event(D(2021, 3, 1), "LOINC/10839-9", 9.99, "ng/mL")],         # after it: hidden
    2: [Event(None, "GENDER/M"), Event(D(1950, 2, 1), "MEDS_BIRTH"),
        Event(D(2019, 3, 3, 8), "LOINC/8480-6", 150.0, "mmHg"), Event(D(2019, 3, 3, 8), "Visit/OP")],
    3: [Event(None, "GENDER/F"), Event(D(2020, 2, 2, 12), "SNOMED/195662009")],
}
LABELS = {"new_acutemi": [Label(1, D(2021, 1, 1), True), Label(3, D(2021, 6, 1, 23, 59), False)],
          "new_hypertension": [Label(2, D(2020, 1, 1, 23, 59), False)]}
FIXTURE_CODES = {"SNOMED/29857009": "Chest pain", "LOINC/10839-9": "Troponin I", "CPT4/93000": "Electrocardiogram",
                 "LOINC/8480-6": "Systolic blood pressure", "SNOMED/195662009": "Acute viral pharyngitis",
                 "SNOMED/22298006": "Myocardial infarction", "Visit/OP": "Outpatient visit"}
SPLITS = {1: "train", 2: "train", 3: "held_out"}
CFG = {"subtasks": SUBS, "balance_train_labels": False}


def meds(tmp_path: Path, events=EVENTS, labels=LABELS, splits=SPLITS) -> Path:
    write_meds(tmp_path / "meds", events, labels, FIXTURE_CODES, splits)
    return tmp_path / "meds"


def femr(tmp_path: Path, events=EVENTS, labels=LABELS) -> dict:
    root = tmp_path / "EHRSHOT_ASSETS"
    write_femr_csv(root / "data/ehrshot.csv", root / "benchmark", events, labels, SPLITS, root / "splits/person_id_map.csv")
    pq.write_table(pa.table({"code": list(FIXTURE_CODES), "description": list(FIXTURE_CODES.values())}),
                   root / "codes.parquet")
    return {**CFG, "source": "femr_csv", "path": str(root / "data/ehrshot.csv"), "labels_path": str(root / "benchmark"),
            "codes_path": str(root / "codes.parquet"), "splits_path": str(root / "splits/person_id_map.csv")}


def both(cfg: dict) -> list:
    return TASK.load_split("train", cfg, 0) + TASK.load_split("test", cfg, 0)


# ---------------------------------------------------------------- readers
def test_hand_built_meds_gives_the_expected_examples(tmp_path):
    cfg = {**CFG, "source": "meds", "path": str(meds(tmp_path))}
    train, test = TASK.load_split("train", cfg, 0), TASK.load_split("test", cfg, 0)
    assert [e.id for e in train] == ["ehrshot-new_acutemi-1-2021-01-01T00:00:00",
                                     "ehrshot-new_hypertension-2-2020-01-01T23:59:00"]
    assert [e.id for e in test] == ["ehrshot-new_acutemi-3-2021-06-01T23:59:00"]   # held_out -> test
    mi = train[0]
    assert mi.fields == {
        "timeline": "Patient: 60-year-old female. Record before 2021-01-01, newest first.\n"
                    "Conditions:\n- 2020-01-05 Chest pain\nProcedures:\n- 2020-06-01 Electrocardiogram\n"
                    "Drugs:\n- 2020-06-01 RxNorm/1191\nLabs:\n- 2020-01-05 Troponin I: 0.5 ng/mL",
        "question": QUESTIONS["new_acutemi"], "negative": "no acute MI", "positive": "acute MI"}
    assert (mi.task, mi.category, mi.answer) == ("ehrshot", "new_acutemi", {"prediction": "acute MI", "label": 1})
    assert mi.gold == {"label": 1, "subtask": "new_acutemi", "subject_id": 1, "prediction_time": "2021-01-01T00:00:00",
                       "label_names": ["no acute MI", "acute MI"]}
    assert "chest pain, troponin I up to 0.5 ng/mL" in mi.reasoning and mi.reasoning.endswith("answer is acute MI.")
    ht = train[1]
    assert ht.answer == {"prediction": "no hypertension", "label": 0}
    timeline = ht.fields["timeline"]
    assert "69-year-old male" in timeline and "Systolic blood pressure: 150 mmHg" in timeline
    assert "Hospital visits:\n- 2019-03-03 Outpatient visit" in timeline
    assert "nevertheless" in ht.reasoning and ht.reasoning.endswith("answer is no hypertension.")
    assert "unknown age" not in test[0].fields["timeline"] and "female" in test[0].fields["timeline"]


def test_femr_csv_gives_the_same_examples_as_meds(tmp_path):
    from_meds = both({**CFG, "source": "meds", "path": str(meds(tmp_path))})
    assert both(femr(tmp_path)) == from_meds and len(from_meds) == 3
    with open(tmp_path / "EHRSHOT_ASSETS/data/ehrshot.csv") as f:
        assert next(csv.reader(f)) == ["patient_id", "start", "end", "code", "value", "unit", "visit_id", "omop_table"]


def test_embedded_round_trips_through_meds_files(tmp_path):
    cfg = {"n_patients": 60, "token_budget": 192, "train_per_category": 10, "test_per_category": 8}
    dataset = load_dataset(cfg, SUBTASKS, 3)
    write_meds(tmp_path / "rt", dataset.events, dataset.labels, dataset.codes)
    on_disk = {**cfg, "source": "meds", "path": str(tmp_path / "rt")}
    for split in ("train", "test"):
        assert TASK.load_split(split, on_disk, 3) == TASK.load_split(split, cfg, 3)


# ---------------------------------------------------------------- serializer
def test_nothing_at_or_after_the_prediction_time_leaks_hand_built():
    t = D(2022, 5, 1, 12)
    events = [Event(t - timedelta(days=3), "SNOMED/1", None), Event(t, "SNOMED/LEAKAT"),
              Event(t, "LOINC/8480-6", 777.0, "mmHg"), Event(t + timedelta(seconds=1), "RxNorm/LEAKAFTER"),
              Event(t + timedelta(days=400), "CPT4/LEAKLATER"), Event(t - timedelta(microseconds=1), "CPT4/JUSTBEFORE")]
    tl = serialize_timeline(events, t, {}, 10_000)
    assert "LEAK" not in tl.text and "777" not in tl.text
    assert "SNOMED/1" in tl.text and "CPT4/JUSTBEFORE" in tl.text
    assert all(e.time < t for e in tl.shown)


def test_nothing_at_or_after_the_prediction_time_leaks_synthetic(tmp_path):
    dataset = generate(40, seed=5)
    markers: dict[int, list[tuple[datetime, str]]] = {}   # subject -> (time, unique text) planted at/after a label
    unique = itertools.count(900_000)
    for subtask, labels in dataset.labels.items():
        for i, lab in enumerate(labels):
            t, tag, value = lab.prediction_time, f"{subtask}{i}X", next(unique)
            dataset.events[lab.subject_id] += [Event(t, f"SNOMED/LEAKAT{tag}"),
                                               Event(t, "LOINC/2345-7", float(value), "mg/dL"),
                                               Event(t + timedelta(minutes=1), f"RxNorm/LEAKAFTER{tag}")]
            markers.setdefault(lab.subject_id, []).extend(
                [(t, f"LEAKAT{tag}"), (t, f"Glucose: {value} mg/dL"), (t, f"LEAKAFTER{tag}")])
    write_meds(tmp_path / "leak", dataset.events, dataset.labels, dataset.codes)
    examples = both({"source": "meds", "path": str(tmp_path / "leak"), "train_per_category": None})
    assert len(examples) > 100
    outcomes = [CODES[c] for c in OUTCOME_CODES.values()]     # new diagnoses always lie after the prediction time
    planted_earlier = 0
    for ex in examples:
        t = D.fromisoformat(ex.gold["prediction_time"])
        for when, text in markers[ex.gold["subject_id"]]:
            if when >= t:
                assert text not in ex.fields["timeline"]
            planted_earlier += when < t and text in ex.fields["timeline"]
        assert not any(o in ex.fields["timeline"] for o in outcomes)
    assert planted_earlier > 0    # markers before another label's prediction time do show: the check can fire


def lines(n: int, start: D) -> list[Event]:
    return [Event(start + timedelta(days=i), "LOINC/2345-7", float(100 + i), "mg/dL") for i in range(n)]


def test_newest_first_and_budget_respected():
    t = D(2023, 1, 1)
    events = lines(100, D(2022, 1, 1))
    tl = serialize_timeline(events, t, {"LOINC/2345-7": "Glucose"}, token_budget=60)
    body = tl.text.splitlines()
    assert sum(approx_tokens(line) for line in body) <= 60
    dates = [line[2:12] for line in body if line.startswith("- ")]
    assert dates == sorted(dates, reverse=True) and len(dates) >= 3
    assert dates[0] == "2022-04-10"                          # the newest event before t is kept
    assert [e.time for e in tl.shown] == sorted((e.time for e in events), reverse=True)[:len(dates)]
    one_each = serialize_timeline(events, t, {}, token_budget=11, count_tokens=lambda line: 1)
    assert len(one_each.shown) == 9                          # header + heading + 9 lines = 11


def test_grouping_by_kind_and_labs_with_value_and_unit():
    t = D(2021, 1, 1)
    day = D(2020, 6, 1)
    events = [Event(day, "Visit/IP"), Event(day, "LOINC/718-7", 13.5, "g/dL"), Event(day, "ICD10CM/I10"),
              Event(day, "RxNorm Extension/9"), Event(day, "HCPCS/G0008"), Event(day, "CMS Place of Service/11"),
              Event(day, "Domain/OMOP"), Event(day, "Custom/score", 3.0), Event(day, "ATC/C09"),
              Event(day, "ICD10PCS/0DT", None), Event(day, "SNOMED/3", None, None, "positive")]
    text = serialize_timeline(events, t, {"LOINC/718-7": "Hemoglobin"}).text
    headings = [line for line in text.splitlines() if line.endswith(":")]
    assert headings == ["Conditions:", "Procedures:", "Drugs:", "Labs:", "Hospital visits:"]
    sections = dict(re.findall(r"(\w[\w ]*):\n((?:- .*\n?)+)", text))
    assert set(sections["Conditions"].split("\n")) >= {"- 2020-06-01 ICD10CM/I10", "- 2020-06-01 SNOMED/3: positive"}
    assert "HCPCS/G0008" in sections["Procedures"] and "ICD10PCS/0DT" in sections["Procedures"]
    assert "RxNorm Extension/9" in sections["Drugs"] and "ATC/C09" in sections["Drugs"]
    assert "- 2020-06-01 Hemoglobin: 13.5 g/dL" in sections["Labs"] and "Custom/score: 3" in sections["Labs"]
    assert "Place of Service" not in text and "Domain/" not in text
    assert text.startswith("Patient: unknown age and sex.")


# ---------------------------------------------------------------- scorer
NAMES = ["no hypertension", "hypertension"]


@pytest.mark.parametrize("answer,gold,correct,value", [
    # EHRMind's rule: str(label) is the gold label and the prediction is its name, exactly
    ({"prediction": "hypertension", "label": 1}, 1, True, 1),
    ({"prediction": "no hypertension", "label": 0}, 0, True, 0),
    ({"prediction": "hypertension", "label": "1"}, 1, True, 1),        # str("1") == str(1)
    ({"prediction": "hypertension", "label": 1}, 0, False, 1),         # wrong class
    ({"prediction": "Hypertension", "label": 1}, 1, False, None),      # names are exact
    ({"prediction": "hypertension", "label": 0}, 0, False, None),      # contradiction
    ({"prediction": "hypertension", "label": True}, 1, False, None),   # str(True) is not "1"
    ({"prediction": "hypertension", "label": 1.0}, 1, False, None),
    ({"prediction": "maybe", "label": 1}, 1, False, None),
    ({"prediction": ["hypertension"], "label": 2}, 1, False, None),
])
def test_scorer(answer, gold, correct, value):
    score = TASK.score(answer, {"label": gold, "label_names": NAMES})
    assert (score.correct, score.value) == (correct, value)
    assert (score.error is None) == (value is not None)


def test_scorer_never_raises_and_labels_map():
    assert not TASK.score("yes", {"label": 1}).correct           # type: ignore[arg-type]
    assert TASK.score({"prediction": "yes", "label": 1}, {}).error.startswith("cannot score")
    assert TASK.label_key == "label" and TASK.answer_keys == ("prediction", "label") and TASK.prompt.clean_tail
    for ex in TASK.load_split("test", {"n_patients": 30}, 0):
        assert TASK.score(ex.answer, ex.gold).correct
        assert ex.answer["prediction"] == ex.gold["label_names"][ex.answer["label"]] == LABEL_NAMES[ex.category][ex.gold["label"]]


# ---------------------------------------------------------------- splits and sizes
@pytest.fixture(scope="module")
def embedded() -> tuple[list, list]:
    return TASK.load_split("train", {}, 0), TASK.load_split("test", {}, 0)


def test_splits_disjoint_by_patient_and_deterministic(embedded):
    train, test = embedded
    assert not {e.gold["subject_id"] for e in train} & {e.gold["subject_id"] for e in test}
    assert TASK.load_split("test", {}, 0) == test
    assert TASK.load_split("test", {}, 1) != test
    assert len({e.id for e in train + test}) == len(train + test)
    assert {e.category for e in test} == set(SUBTASKS)
    pancan = TASK.load_split("test", {"subtasks": ["new_pancan"]}, 0)      # a patient's side ignores the subtask set
    assert {e.id for e in pancan} == {e.id for e in test if e.category == "new_pancan"}


def test_split_file_decides_and_tuning_is_unused(tmp_path):
    cfg = meds_cfg(meds(tmp_path, splits={1: "held_out", 2: "train", 3: "tuning"}))
    assert [e.gold["subject_id"] for e in TASK.load_split("train", cfg, 0)] == [2]
    assert [e.gold["subject_id"] for e in TASK.load_split("test", cfg, 0)] == [1]


def test_train_balanced_test_keeps_label_rates(embedded):
    train, test = embedded
    for subtask in SUBTASKS:
        labels = [e.gold["label"] for e in train if e.category == subtask]
        assert sum(labels) * 2 == len(labels) > 0
    rate = sum(e.gold["label"] for e in test) / len(test)
    assert 0.1 < rate < 0.35
    capped = TASK.load_split("train", {"train_per_category": 10}, 0)
    assert all(sum(e.gold["label"] for e in capped if e.category == s) == 5 for s in SUBTASKS)
    small = TASK.load_split("test", {"test_per_category": 20}, 0)
    for s in SUBTASKS:
        full = [e.gold["label"] for e in test if e.category == s]
        got = [e.gold["label"] for e in small if e.category == s]
        assert len(got) == 20 and sum(got) == round(20 * sum(full) / len(full))
    unbalanced = TASK.load_split("train", {"balance_train_labels": False}, 0)
    assert sum(e.gold["label"] for e in unbalanced) / len(unbalanced) < 0.35


def test_embedded_questions_are_short(embedded):
    lengths = sorted(len(e.fields["timeline"]) for e in embedded[0] + embedded[1])
    assert lengths[-1] < 1000 and lengths[len(lengths) // 2] < 600   # ~250 / ~150 tokens


def test_embedded_data_is_learnable(embedded):
    factor = {"new_hypertension": r"Systolic blood pressure: (1[4-9]\d|2\d\d) mmHg|Obesity",
              "new_hyperlipidemia": r"LDL cholesterol: (1[6-9]\d|2\d\d) mg/dL", "new_acutemi": r"Chest pain",
              "new_pancan": r"Weight loss", "guo_readmission": r"Heart failure", "guo_los": r"Sepsis"}
    test = embedded[1]
    guess = [bool(re.search(factor[e.category], e.fields["timeline"])) for e in test]
    gold = [bool(e.gold["label"]) for e in test]
    accuracy = sum(g == y for g, y in zip(guess, gold)) / len(test)
    majority = max(sum(gold), len(gold) - sum(gold)) / len(test)
    recall = [sum(g for g, y in zip(guess, gold) if y == c) / sum(y == c for y in gold) for c in (True, False)]
    assert accuracy > majority + 0.03
    assert (recall[0] + (1 - recall[1])) / 2 > 0.75               # balanced accuracy


def test_config_errors():
    with pytest.raises(ValueError, match="new_flu"):
        TASK.load_split("train", {"subtasks": ["new_flu"]}, 0)
    with pytest.raises(ValueError, match="valid"):
        TASK.load_split("valid", {}, 0)
    with pytest.raises(ValueError, match="path"):
        TASK.load_split("train", {"source": "meds"}, 0)
    with pytest.raises(ValueError, match="base_rates"):
        TASK.load_split("train", {"base_rates": {"guo_icu": 0.1}}, 0)


# ---------------------------------------------------------------- malformed input
def error(cfg: dict) -> str:
    with pytest.raises(DataError) as info:
        TASK.load_split("train", cfg, 0)
    return str(info.value)


def meds_cfg(root: Path) -> dict:
    return {**CFG, "source": "meds", "path": str(root)}


def row_of(events: dict, sid: int, code: str) -> int:
    flat = [(s, e.code) for s in sorted(events) for e in events[s]]
    return len(flat) - flat[::-1].index((sid, code))   # last occurrence


@pytest.mark.parametrize("bad", [Event(None, "LOINC/8480-6", 120.0, "mmHg"), Event(None, "MEDS_BIRTH")])
def test_meds_event_without_time(tmp_path, bad):
    events = {**EVENTS, 2: EVENTS[2] + [bad]}
    msg = error(meds_cfg(meds(tmp_path, events)))
    assert "data/0.parquet" in msg and f"row {row_of(events, 2, bad.code)}," in msg and "'time'" in msg
    assert "static" in msg and bad.code in msg


def test_meds_label_for_unknown_patient(tmp_path):
    labels = {**LABELS, "new_acutemi": LABELS["new_acutemi"] + [Label(99, D(2021, 1, 1), True)]}
    msg = error(meds_cfg(meds(tmp_path, labels=labels)))
    assert "labels/new_acutemi" in msg and "row 3" in msg and "'subject_id'" in msg and "99" in msg


def test_meds_label_with_non_boolean_value(tmp_path):
    root = meds(tmp_path)
    pq.write_table(pa.table({"subject_id": [2], "prediction_time": pa.array([D(2020, 1, 1)], pa.timestamp("us")),
                             "boolean_value": [1]}), root / "labels/new_hypertension/0.parquet")
    msg = error(meds_cfg(root))
    assert "new_hypertension/0.parquet" in msg and "row 1" in msg and "'boolean_value'" in msg and "boolean" in msg


def test_meds_missing_columns(tmp_path):
    root = meds(tmp_path)
    table = pq.read_table(root / "data/0.parquet").drop_columns(["numeric_value"])
    pq.write_table(table, root / "data/0.parquet")
    msg = error(meds_cfg(root))
    assert "data/0.parquet" in msg and "header row" in msg and "'numeric_value'" in msg and "column" in msg
    root = meds(tmp_path / "b")
    pq.write_table(pa.table({"subject_id": [1], "boolean_value": [True]}), root / "labels/new_acutemi/0.parquet")
    msg = error(meds_cfg(root))
    assert "new_acutemi/0.parquet" in msg and "header row" in msg and "'prediction_time'" in msg


def test_femr_unparsable_start_and_bad_label(tmp_path):
    cfg = femr(tmp_path)
    path = Path(cfg["path"])
    rows = list(csv.reader(path.open()))
    rows[3][1] = "03/04/2020 25:00"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    msg = error(cfg)
    assert "ehrshot.csv" in msg and "row 3," in msg and "'start'" in msg and "03/04/2020 25:00" in msg

    cfg = femr(tmp_path / "b")
    label_file = Path(cfg["labels_path"]) / "new_acutemi/labeled_patients.csv"
    label_file.write_text("patient_id,prediction_time,value,label_type\n1,2021-01-01T00:00:00,maybe,boolean\n")
    msg = error(cfg)
    assert "labeled_patients.csv" in msg and "row 1" in msg and "'value'" in msg and "maybe" in msg


def test_femr_missing_column(tmp_path):
    cfg = femr(tmp_path)
    path = Path(cfg["path"])
    path.write_text(path.read_text().replace(",unit,", ",units,", 1))
    msg = error(cfg)
    assert "ehrshot.csv" in msg and "header row" in msg and "'unit'" in msg


def test_static_codes_may_lack_a_time_and_labels_are_deduplicated(tmp_path):
    labels = {**LABELS, "new_hypertension": LABELS["new_hypertension"] * 2}
    examples = both(meds_cfg(meds(tmp_path, labels=labels)))
    assert len(examples) == 3
    clash = {**LABELS, "new_hypertension": LABELS["new_hypertension"] + [replace(LABELS["new_hypertension"][0], value=True)]}
    assert "both true and false" in error(meds_cfg(meds(tmp_path / "b", labels=clash)))
