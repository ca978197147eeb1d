"""MedCalc-Bench task: generator, loader checks and eval-free scoring."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from ehrmind.tasks import get_task
from ehrmind.tasks.base import DataError
from ehrmind.tasks.medcalc import (COLUMNS, MedCalcTask, read_rows, rows_to_examples, validate_rows,
                                   write_csv)
from ehrmind.tasks.medcalc.calculators import ALL, CATEGORIES, solve
from ehrmind.tasks.medcalc.synthetic import generate_rows

REFERENCE = Path(__file__).parents[2] / "shared/reference/medcalc_bench_v1.0_test_sample.csv"
TASK = MedCalcTask()


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return generate_rows(30, seed=7)


def gold(calculator_id: int, truth: str, lower: str | None = None, upper: str | None = None,
         output_type: str = "decimal") -> dict:
    return {"calculator_id": calculator_id, "output_type": output_type, "ground_truth": truth,
            "lower": truth if lower is None else lower, "upper": truth if upper is None else upper}


# ---------------------------------------------------------------- generator
def test_generator_is_deterministic_and_seeded(rows):
    assert generate_rows(30, seed=7) == rows
    assert generate_rows(30, seed=8) != rows
    # a larger set extends a smaller one
    assert [r["Patient Note"] for r in generate_rows(5, seed=7)[:5]] == [r["Patient Note"] for r in rows[:5]]


def test_generator_covers_categories_types_and_date_calculators(rows):
    assert {r["Category"] for r in rows} == {"lab", "physical", "risk", "severity", "diagnosis", "date", "dosage"}
    assert {r["Output Type"] for r in rows} == {"decimal", "integer", "date"}
    assert {"13", "68", "69"} <= {r["Calculator ID"] for r in rows if r["Category"] == "date"}
    counts = {c: sum(r["Category"] == c for r in rows) for c in CATEGORIES}
    assert set(counts.values()) == {30}
    assert [r["Row Number"] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]


def test_generated_rows_have_the_csv_format(rows):
    for r in rows:
        assert tuple(r) == COLUMNS and all(isinstance(v, str) for v in r.values())
        assert r["Relevant Entities"].startswith("{'")
        if r["Output Type"] == "decimal":
            gt = float(r["Ground Truth Answer"])
            assert r["Ground Truth Answer"] == repr(round(gt, 3))
            assert float(r["Lower Limit"]) == pytest.approx(gt * 0.95)
            assert float(r["Upper Limit"]) == pytest.approx(gt * 1.05)
        else:
            assert r["Lower Limit"] == r["Upper Limit"] == r["Ground Truth Answer"]
        if r["Calculator ID"] in ("13", "68"):
            assert len(r["Ground Truth Answer"]) == 10 and r["Ground Truth Answer"][2] == "/"
        if r["Calculator ID"] == "69":
            assert r["Ground Truth Answer"].startswith("('") and "weeks', '" in r["Ground Truth Answer"]
        assert len(r["Ground Truth Explanation"]) < 400 and len(r["Patient Note"]) < 400


def test_generated_rows_validate_and_score(rows):
    validate_rows(rows, "generated")
    for ex in rows_to_examples(rows, "test"):
        json.dumps(ex.to_json())
        assert TASK.score(ex.answer, ex.gold).correct, ex
        assert TASK.score({"answer": str(ex.answer["answer"])}, ex.gold).correct, ex


def test_values_just_outside_limits_score_wrong(rows):
    for ex in rows_to_examples(rows, "test"):
        a, g = ex.answer["answer"], ex.gold
        if g["output_type"] == "decimal":
            lo, hi = float(g["lower"]), float(g["upper"])
            if lo != hi:
                assert not TASK.score({"answer": lo - 0.01 * abs(lo) - 1e-6}, g).correct
                assert not TASK.score({"answer": hi + 0.01 * abs(hi) + 1e-6}, g).correct
                assert TASK.score({"answer": lo}, g).correct and TASK.score({"answer": hi}, g).correct
        elif isinstance(a, int):
            assert not TASK.score({"answer": a + 1}, g).correct


def test_medcalc_package_agrees_with_own_code_and_reference_values():
    # solve() raises when the package and our arithmetic disagree; run it on many inputs.
    from random import Random
    for calc in ALL:
        for k in range(40):
            solve(calc, calc.sample(Random(k)))
    # hand-checked values (the two MedCalc reference rows computed with this code)
    from ehrmind.tasks.medcalc.calculators import CKD_EPI, QTC_BAZETT
    assert solve(CKD_EPI, {"age": 30, "sex": "Female", "cr": 0.9})[0] == "88.199"
    assert solve(QTC_BAZETT, {"hr": 48, "qt": 330})[0] == "295.161"


def test_own_code_fixes_for_known_package_bugs():
    from ehrmind.tasks.medcalc.calculators import CHILD_PUGH, DUE_DATE, GBS, SIRS
    # Naegele with a 22-day cycle: 280 days after 12/11/2013 is 09/17/2014, minus 6 days
    assert solve(DUE_DATE, {"lmp": "12/11/2013", "cycle": 22})[0] == "09/11/2014"
    assert solve(SIRS, {"temp": 37.0, "hr": 70, "rr": 14, "wbc": 8000})[0] == "0"
    base = {"bun": 15, "sbp": 120, "hr": 80, "melena": False, "syncope": False, "hepatic": False, "cardiac": False}
    assert solve(GBS, dict(base, sex="Male", hb=12.0))[0] == "1"
    assert solve(GBS, dict(base, sex="Male", hb=13.0))[0] == "0"
    assert solve(GBS, dict(base, sex="Female", hb=10.0))[0] == "1"
    assert solve(GBS, dict(base, sex="Male", hb=15.0, bun=70))[0] == "6"
    cp = {"inr": 1.0, "ascites": "Absent", "enceph": "No Encephalopathy"}
    assert solve(CHILD_PUGH, dict(cp, bili=2.0, alb=4.0))[0] == "6"
    assert solve(CHILD_PUGH, dict(cp, bili=1.0, alb=2.8))[0] == "6"


# ---------------------------------------------------------------- task
def test_embedded_splits_are_disjoint_and_stable():
    task = get_task("medcalc")
    cfg = {"train_per_category": 20, "test_per_category": 6}
    train, test = task.load_split("train", cfg, seed=3), task.load_split("test", cfg, seed=3)
    assert len(test) == 42 and 130 <= len(train) <= 140
    assert not {e.id for e in train} & {e.id for e in test}
    assert not {tuple(e.fields.values()) for e in train} & {tuple(e.fields.values()) for e in test}
    assert [e.id for e in task.load_split("test", dict(cfg, train_per_category=5), seed=3)] == [e.id for e in test]
    ex = test[0]
    assert ex.id.startswith("medcalc-test-") and set(ex.fields) == {"note", "question"} and ex.reasoning
    assert set(ex.gold) == {"calculator_id", "output_type", "ground_truth", "lower", "upper"}
    assert task.answer_keys == ("answer",) and not task.prompt.clean_tail


def test_local_csv_source_and_subsample(tmp_path, rows):
    path = write_csv(rows, tmp_path / "medcalc_test.csv")
    assert read_rows(str(path), "test", None) == rows
    cfg = {"source": str(tmp_path / "medcalc_{split}.csv"), "test_per_category": 4}
    a = TASK.load_split("test", cfg, seed=1)
    assert len(a) == 28 and a == TASK.load_split("test", cfg, seed=1)
    assert {e.category for e in a} == set(CATEGORIES)
    assert len(TASK.load_split("test", {"test_path": str(path)}, seed=1)) == len(rows)


def test_parquet_source(tmp_path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.Table.from_pylist([dict(r, **{"Row Number": int(r["Row Number"])}) for r in rows[:10]])
    pq.write_table(table, tmp_path / "x.parquet")
    assert read_rows(str(tmp_path / "x.parquet")) == rows[:10]


def test_hub_source_is_read_through_datasets(monkeypatch, rows):
    import datasets
    calls = []

    def fake_load_dataset(name, split, revision):  # no network in tests
        calls.append((name, split, revision))
        return [dict(r, **{"Row Number": int(r["Row Number"]), "Calculator ID": int(r["Calculator ID"])})
                for r in rows]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = {"source": "ncbi/MedCalc-Bench-v1.0", "revision": "abc123", "train_per_category": 3}
    got = TASK.load_split("train", cfg, seed=0)
    assert calls == [("ncbi/MedCalc-Bench-v1.0", "train", "abc123")]
    assert len(got) == 21 and all(e.id.startswith("medcalc-train-") for e in got)


# ---------------------------------------------------------------- loader errors
@pytest.mark.parametrize("calculator, column, value, message", [
    (None, "Upper Limit", None, "missing column"),          # column dropped from the file
    ("39", "Calculator ID", "99", "unknown calculator id 99"),
    ("3", "Lower Limit", "abc", "cannot read 'abc' as a number"),
    ("13", "Ground Truth Answer", "2014-13-45", "as a date m/d/Y"),
    ("69", "Upper Limit", "six weeks", "as a (weeks, days) tuple"),
    ("27", "Row Number", "1", "duplicate of row 1"),
])
def test_loader_errors_name_file_row_and_column(tmp_path, rows, calculator, column, value, message):
    bad = [dict(r) for r in rows]
    if value is None:
        for r in bad:
            del r[column]
        i = 0
    else:
        i = next(k for k, r in enumerate(bad) if r["Calculator ID"] == calculator and k > 0)
        bad[i][column] = value
    path = write_csv(bad, tmp_path / "broken_medcalc.csv")
    with pytest.raises(DataError) as err:
        TASK.load_split("test", {"source": str(path)}, seed=0)
    text = str(err.value)
    assert "broken_medcalc.csv" in text and f"row {i + 1}," in text and f"'{column}'" in text, text
    assert message in text, text


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_rows(str(tmp_path / "nope.csv"))


# ---------------------------------------------------------------- scoring
def test_decimal_scoring():
    g = gold(3, "88.199", "83.78905", "92.60895")
    for ok in (88.199, 84, "88.2", "88.2 mL/min/1.73 m²", "GFR is about 90", [88.2]):
        assert TASK.score({"answer": ok}, g).correct, ok
    for bad in (83.7, 92.7, "93", "-88.2"):
        assert not TASK.score({"answer": bad}, g).correct, bad
    assert TASK.score({"answer": "1,234.5"}, gold(3, "1234.5", "1172.775", "1296.225")).value == 1234.5
    s = TASK.score({"answer": "no idea"}, g)
    assert (s.correct, s.error) == (False, "no number in answer")
    # a negative truth with swapped -5%/+5% limits still has an interval
    assert TASK.score({"answer": -10}, gold(63, "-10.0", "-9.5", "-10.5")).correct


def test_integer_scoring_rounds():
    g = gold(27, "7", output_type="integer")
    assert TASK.score({"answer": 7}, g).correct and TASK.score({"answer": "7 points"}, g).correct
    assert TASK.score({"answer": 6.6}, g).correct and TASK.score({"answer": "7.4"}, g).correct
    assert not TASK.score({"answer": 7.6}, g).correct and not TASK.score({"answer": 8}, g).correct
    assert TASK.score({"answer": "3 out of 4"}, gold(51, "3", output_type="integer")).value == 3


def test_date_scoring():
    g = gold(13, "09/23/2014", output_type="date")
    for ok in ("09/23/2014", "9/23/2014", "2014-09-23", "The due date is 09/23/2014.", "09-23-2014"):
        s = TASK.score({"answer": ok}, g)
        assert s.correct and s.value == "09/23/2014", ok
    for bad in ("09/24/2014", "23/09/2014", 20140923, "September 23, 2014"):
        s = TASK.score({"answer": bad}, g)
        assert not s.correct and (s.error or s.value), bad
    assert TASK.score({"answer": "13/45/2014"}, g).error == "answer is not a valid calendar date"
    assert TASK.score({"answer": None}, g).error == "answer is not a date m/d/Y"


@pytest.mark.parametrize("answer", ["(4 weeks, 3 days)", "('4 weeks', '3 days')", [4, 3], ["4 weeks", "3 days"],
                                    {"weeks": 4, "days": 3}, "4 weeks 3 days", "4 weeks and 3 days", "(4, 3)",
                                    "[4, 3]"])
def test_gestational_age_spellings(answer):
    g = gold(69, "('4 weeks', '3 days')", output_type="integer")
    s = TASK.score({"answer": answer}, g)
    assert s.correct and s.value == [4, 3]


def test_gestational_age_wrong_or_unreadable():
    g = gold(69, "('0 weeks', '6 days')", output_type="integer")
    assert TASK.score({"answer": "6 days"}, g).correct
    assert not TASK.score({"answer": "(0 weeks, 5 days)"}, g).correct
    assert not TASK.score({"answer": [6, 0]}, g).correct
    assert TASK.score({"answer": "6"}, g).error == "answer is not a (weeks, days) pair"


def test_missing_key_and_non_object():
    g = gold(3, "88.199", "83.78905", "92.60895")
    assert TASK.score({}, g) == TASK.score({"value": 88.2}, g)
    assert TASK.score({}, g).error == "missing key 'answer'"
    assert not TASK.score({"answer": True}, g).correct
    assert not TASK.score({"answer": float("nan")}, g).correct


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=60)
    | st.sampled_from(["1e999", "9" * 5000, "(99999999 weeks, 1 days)", "__import__('os')", "1,2,3", "-", "."]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12)
golds = st.sampled_from([gold(3, "88.199", "83.78905", "92.60895"), gold(27, "7", output_type="integer"),
                         gold(13, "09/23/2014", output_type="date"), gold(68, "12/31/2009", output_type="date"),
                         gold(69, "('0 weeks', '6 days')", output_type="integer")])


@settings(max_examples=400, deadline=None, database=None)  # no .hypothesis/ in the repo
@given(value=json_values, g=golds, wrap=st.booleans())
def test_score_never_raises(value, g, wrap):
    answer = {"answer": value} if wrap else value
    s = TASK.score(answer, g)
    assert isinstance(s.correct, bool)
    json.dumps(s.value)
    assert s.correct or s.error is None or isinstance(s.error, str)


def test_model_text_is_never_executed(tmp_path):
    marker, target = Path("/tmp/pwned"), tmp_path / "pwned"
    existed = marker.exists()
    payloads = [f"{wrap}__import__('os').system('touch {t}'){tail}"
                for t in (marker, target) for wrap, tail in (("", ""), ("str(", ")"), ("(", ", 3)"))]
    for g in (gold(3, "88.199", "83.78905", "92.60895"), gold(27, "7", output_type="integer"),
              gold(13, "09/23/2014", output_type="date"), gold(69, "('0 weeks', '6 days')", output_type="integer")):
        for p in payloads:
            assert not TASK.score({"answer": p}, g).correct
    assert not target.exists()
    assert existed or not marker.exists()


# ---------------------------------------------------------------- real reference rows
@pytest.mark.skipif(not REFERENCE.exists(), reason=f"reference sample {REFERENCE} not present in this checkout")
def test_reference_sample_loads_validates_and_scores():
    rows = read_rows(str(REFERENCE), "test", None)
    assert len(rows) == 9
    validate_rows(rows, str(REFERENCE))
    examples = TASK.load_split("test", {"source": str(REFERENCE)}, seed=0)
    assert {e.category for e in examples} == {"lab", "physical", "risk", "severity", "diagnosis", "date", "dosage"}
    for ex in examples:
        assert TASK.score(ex.answer, ex.gold).correct, ex.id
        assert TASK.score({"answer": ex.gold["ground_truth"]}, ex.gold).correct, ex.id


def test_sft_answer_is_the_raw_ground_truth_and_scores_correct():
    """EHRMind's SFT target writes {"answer": "<Ground Truth Answer>"}; the scorer must accept it,
    dates and (weeks, days) tuples included (the reference rows, where ../shared is present)."""
    task = get_task("medcalc")
    examples = task.load_split("train", {"train_per_category": 30}, seed=0)
    if REFERENCE.exists():
        examples += task.load_split("test", {"source": str(REFERENCE)}, seed=0)
    for ex in examples:
        assert isinstance(ex.answer["answer"], str) and task.score(ex.answer, ex.gold).correct, ex.id
