"""The structured-EHR task objects (tjh_mortality, mimic4_mortality, mimic4_readmission): examples,
scorer, sizes, the real-format round trip at the example level, and the expert's JSONL input."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from ehrmind import cli
from ehrmind.experts import data
from ehrmind.io import read_jsonl
from ehrmind.tasks import Example, get_task
from ehrmind.tasks.ehr import cohort, formats, synthetic
from ehrmind.tasks.ehr.serialize import approx_tokens, number

NAMES = ("tjh_mortality", "mimic4_mortality", "mimic4_readmission")
SMALL = {"n_patients": 80, "test_size": 0.25}


def both(task, cfg, seed=0):
    return task.load_split("train", cfg, seed) + task.load_split("test", cfg, seed)


def record_of(ex: Example) -> str:
    return ex.fields["record"]


@pytest.mark.parametrize("name", NAMES)
def test_examples_follow_the_contract(name):
    task = get_task(name)
    train, test = task.load_split("train", {}, 0), task.load_split("test", {}, 0)
    assert not {e.gold["patient_id"] for e in train} & {e.gold["patient_id"] for e in test}
    for ex in train + test:
        assert ex.task == name and ex.id == f"{name}-{ex.gold['patient_id']}"
        assert ex.category == task.labels[ex.gold["label"]]
        assert ex.fields["question"] == task.question
        lines = record_of(ex).splitlines()
        assert [line.split(" (")[0].split(":")[0] for line in lines[2:]] == ex.gold["features"]
        assert sum(approx_tokens(line) for line in lines) <= 220
        score = task.score(ex.answer, ex.gold)
        assert score.correct and score.value == ex.gold["label"]
        assert ex.reasoning.endswith(f"so the probability is {'high' if ex.gold['label'] else 'low'}.")
    assert sum(e.gold["label"] for e in train) * 2 == len(train)                 # balanced training set
    rate = sum(e.gold["label"] for e in test) / len(test)
    assert {"tjh_mortality": 35 / 75, "mimic4_mortality": 24 / 200, "mimic4_readmission": 40 / 200}[name] == rate


@pytest.mark.parametrize("answer, label, correct, value, p", [
    ({"probability": 0.7}, 1, True, 1, 0.7), ({"probability": 0.5}, 1, True, 1, 0.5),
    ({"probability": 0.49}, 0, True, 0, 0.49), ({"probability": 0}, 1, False, 0, 0.0),
    ({"probability": 1}, 0, False, 1, 1.0), ({"probability": 1.2}, 1, False, None, None),
    ({"probability": -0.1}, 0, False, None, None), ({"probability": "0.7"}, 1, False, None, None),
    ({"probability": True}, 1, False, None, None), ({"probability": float("nan")}, 1, False, None, None),
    ({"label": 1}, 1, False, None, None), ({}, 0, False, None, None),
])
def test_scorer(answer, label, correct, value, p):
    score = get_task("tjh_mortality").score(answer, {"label": label})
    assert (score.correct, score.value, score.probability) == (correct, value, p)
    assert (score.error is None) == (value is not None)


def test_scorer_never_raises():
    task = get_task("mimic4_readmission")
    assert task.score("0.7", {"label": 1}).error == "answer JSON is not an object"    # type: ignore[arg-type]
    assert task.score({"probability": 0.7}, {}).error.startswith("cannot score")
    assert task.labels == ("not readmitted", "readmitted") and get_task("tjh_mortality").labels == ("survived", "died")


def test_embedded_tjh_examples_round_trip_through_the_real_formats(tmp_path):
    task = get_task("tjh_mortality")
    table = synthetic.generate_tjh(SMALL["n_patients"], seed=5)
    formats.write_tjh_xlsx(table, tmp_path / "tjh.xlsx", split_draws=True)
    formats.write_formatted(table, tmp_path / "tjh.csv")
    formats.write_formatted(table, tmp_path / "tjh.parquet")
    embedded = both(task, SMALL, 5)
    assert len(embedded) > 40
    for source, path in (("tjh_xlsx", "tjh.xlsx"), ("formatted", "tjh.csv"), ("formatted", "tjh.parquet")):
        cfg = {"source": source, "path": str(tmp_path / path), "token_budget": 220, "test_size": 0.25}
        assert both(task, cfg, 5) == embedded, path


def test_embedded_mimic_examples_round_trip_through_csv_and_parquet(tmp_path):
    table = synthetic.generate_mimic4(SMALL["n_patients"], seed=6)
    for suffix in ("csv", "parquet"):
        formats.write_formatted(table, tmp_path / f"m.{suffix}")
        for name in NAMES[1:]:
            cfg = {"source": "formatted", "path": str(tmp_path / f"m.{suffix}"), "token_budget": 220, "test_size": 0.25}
            assert both(get_task(name), cfg, 6) == both(get_task(name), SMALL, 6)


def test_sizes_shuffle_and_config_errors():
    task = get_task("mimic4_mortality")
    test = task.load_split("test", {"test_examples": 50}, 0)
    assert len(test) == 50 and sum(e.gold["label"] for e in test) == 6          # 12 % kept
    assert len(task.load_split("train", {"train_examples": 40}, 0)) == 40
    natural = task.load_split("train", {"balance_train_labels": False}, 0)
    assert len(natural) == 800 and sum(e.gold["label"] for e in natural) == 96
    plain, shuffled = (task.load_split("test", {"test_examples": 5, "shuffle_fraction": f}, 0) for f in (0, 0.6))
    for a, b in zip(plain, shuffled):
        assert a.id == b.id and a.gold["features"] != b.gold["features"]
        assert sorted(record_of(a).splitlines()) == sorted(record_of(b).splitlines())
    for cfg, match in (({"token_budget": 8}, "token_budget"), ({"shuffle_fraction": 2}, "shuffle_fraction"),
                       ({"test_examples": 0}, "test_examples"), ({"source": "meds"}, "unknown source")):
        with pytest.raises(ValueError, match=match):
            task.load_split("test", cfg, 0)


def test_no_label_or_later_information_in_the_examples(tmp_path):
    table = synthetic.generate_tjh(80, seed=1)
    table["LOS"] = 4444.25
    table["DischargeTime"] = table["DischargeTime"] + np.timedelta64(3, "D")
    formats.write_formatted(table, tmp_path / "t.csv")
    for ex in both(get_task("tjh_mortality"), {"source": "formatted", "path": str(tmp_path / "t.csv"), "test_size": 0.25}):
        text = "\n".join(ex.fields.values())
        assert "4444" not in text and "2020-" not in text and not re.search(r"\bdied\b|\bsurviv", text)
        assert "Outcome" not in text and "LOS" not in text and "Discharge" not in text


def test_expert_reads_the_prepared_jsonl(tmp_path):
    train_out, test_out = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    assert cli.main(["prepare-data", "--task", "tjh_mortality", "--data", json.dumps(SMALL), "--seed", "3",
                     "--train-out", str(train_out), "--test-out", str(test_out)]) == 0
    examples = [Example.from_json(r) for r in read_jsonl(test_out)]
    rows = data.from_examples(examples, str(test_out))
    records = {r.patient_id: r for r in cohort.records_for(cohort.SPECS["tjh_mortality"], "test", SMALL, 3)}
    for ex, row in zip(examples, rows):
        rec = records[row.patient_id]
        assert row.label == ex.gold["label"] == rec.outcome and (row.sex, row.age) == (rec.sex, rec.age)
        assert list(row.features) == ex.gold["features"] and row.days == rec.days[-len(row.days):]
        for t, values in enumerate(row.values):
            full = rec.values[len(rec.days) - len(row.days) + t]
            for name, x in zip(row.features, values):
                y = full[rec.features.index(name)]
                assert (math.isnan(x) and math.isnan(y)) or number(y) == number(x)
    out = tmp_path / "expert"
    assert cli.main(["expert", "--task", "tjh_mortality", "--train", str(train_out), "--test", str(test_out),
                     "--settings", json.dumps({"epochs": 2, "n_resamples": 10, "hidden": 8, "heads": 2}),
                     "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["input"] == "jsonl" and "planted" not in metrics and metrics["n_test"] == len(examples)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**examples[0].to_json(), "gold": {"label": 1}}) + "\n")
    with pytest.raises(Exception, match=r"bad.jsonl: row 1 .*'record'"):
        data.from_examples([Example.from_json(r) for r in read_jsonl(bad)], str(bad))
