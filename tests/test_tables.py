"""Tables are built from metrics.json + predictions.jsonl only; marks follow Holm-adjusted McNemar."""
import csv

import pytest

from ehrmind import stats, tables
from ehrmind.evaluate import summarize
from ehrmind.io import write_json, write_jsonl


def _cell(root, model, stage, correct, categories):
    preds = [{"id": f"i{k}", "category": categories[k], "correct": c, "format_ok": True, "reward": 0.1 + c,
              "parse_error": None, "generated_tokens": 10} for k, c in enumerate(correct)]
    d = root / model / stage
    write_jsonl(d / "predictions.jsonl", preds)
    write_json(d / "metrics.json", {**summarize(preds), "cell": {"model": model, "task": "medcalc", "stage": stage}})
    return str(d / "metrics.json")


def test_tables_from_metrics(tmp_path):
    n = 40
    cats = ["lab" if k % 2 else "date" for k in range(n)]
    base = [k < 4 for k in range(n)]             # 4/40
    sft = [k < 24 for k in range(n)]             # 24/40: 20 discordant, all one way
    rlvr = [k < 5 for k in range(n)]             # 5/40: 1 discordant
    paths = [_cell(tmp_path, "m1", s, c, cats) for s, c in (("baseline", base), ("sft", sft), ("rlvr", rlvr))]
    paths.append(_cell(tmp_path, "m2", "baseline", [k < 30 for k in range(n)], cats))
    out = tmp_path / "tables"
    written = tables.build(paths, out)
    assert {p.name for p in written} >= {"main.md", "main.tex", "main.csv", "significance.md",
                                         "per_category_medcalc.csv"}
    main = (out / "main.md").read_text()
    # sft vs baseline: b01=20, b10=0 -> p = 2 * 0.5**20; Holm over 3 pairs keeps it tiny -> marked
    assert "60.0 [44.6, 73.7]+" in main   # Wilson 24/40 by hand: 0.5912 -+ 0.1453
    assert "12.5 [" in main and "12.5 [5.0, 26.1]+" not in main     # rlvr not significant
    rows = list(csv.DictReader(open(out / "significance.csv")))
    sft_row = next(r for r in rows if r["family"] == "stages" and r["a"] == "baseline" and r["b"] == "sft")
    assert int(sft_row["b01"]) == 20 and int(sft_row["b10"]) == 0
    assert float(sft_row["p_value"]) == pytest.approx(2 * 0.5 ** 20)
    assert float(sft_row["p_holm"]) == pytest.approx(3 * 2 * 0.5 ** 20)
    assert any(r["family"] == "models" and r["within"] == "baseline" for r in rows)  # m1 vs m2
    per = list(csv.DictReader(open(out / "per_category_medcalc.csv")))
    assert float(next(r for r in per if r["stage"] == "sft")["lab"]) == pytest.approx(12 / 20)
    assert stats.wilson_interval(24, 40) == pytest.approx((0.4460, 0.7365), abs=1e-4)
    assert "| m2      | sft" not in main     # no empty rows for cells that were not run


def test_unpaired_items_are_refused(tmp_path):
    a = _cell(tmp_path, "m", "baseline", [True, False], ["x", "x"])
    b = _cell(tmp_path, "m", "sft", [True, False, True], ["x", "x", "x"])
    with pytest.raises(ValueError, match="different items"):
        tables.build([a, b], tmp_path / "t")


def _labelled(d, cell, correct, labels=None):
    preds = [{"id": f"i{k}", "category": "x", "correct": c, "format_ok": True, "reward": 0.1 + c,
              "parse_error": None, "generated_tokens": 10, "gold_label": 1 if k % 2 else 0,
              "parsed_value": None if labels is None else labels[k],
              "p_positive": 0.5} for k, c in enumerate(correct)]
    write_jsonl(d / "predictions.jsonl", preds)
    write_json(d / "metrics.json", {**summarize(preds, 2 if labels else 0), "cell": cell})
    return str(d / "metrics.json")


def test_transfer_matrix_and_classification_table(tmp_path):
    n = 30
    base = [k < 3 for k in range(n)]
    strong = [k < 25 for k in range(n)]        # 22 discordant pairs, all one way
    cells, dirs = [], []
    for task in ("a", "b"):
        for stage, correct in (("baseline", base), ("sft", strong if task == "a" else base)):
            labels = [(1 if k % 2 else 0) if c else None for k, c in enumerate(correct)] if task == "b" else None
            cells.append(_labelled(tmp_path / "cells" / task / stage,
                                   {"model": "m", "task": task, "stage": stage}, correct, labels))
    for train, evals in (("a", ["b"]), ("b", ["a"]), ("multi", ["a", "b"])):
        d = tmp_path / "transfer" / train / "sft"
        for e in evals:
            _labelled(d / e, {"model": "m", "task": e, "stage": "sft", "train_task": train},
                      strong if (train, e) == ("multi", "b") else base)
        dirs.append(str(d))
    out = tmp_path / "tables"
    tables.build(cells, out, transfer_dirs=dirs)
    rows = {(r["train_task"], r["stage"]): r for r in csv.DictReader(open(out / "transfer.csv"))}
    assert set(rows) == {("a", "sft"), ("b", "sft"), ("multi", "sft")}
    assert float(rows[("a", "sft")]["a_accuracy"]) == pytest.approx(25 / 30)   # diagonal = main cell
    assert float(rows[("multi", "sft")]["b_diff_vs_baseline"]) == pytest.approx(22 / 30)
    # Holm over the three checkpoints evaluated on task b: the significant one is adjusted x3
    assert float(rows[("multi", "sft")]["b_p_holm"]) == pytest.approx(3 * 2 * 0.5 ** 22)
    assert float(rows[("b", "sft")]["b_p_mcnemar"]) == 1.0
    md = (out / "transfer.md").read_text()
    assert "(+73.3+)" in md and "| m       | —" in md
    cls = list(csv.DictReader(open(out / "classification.csv")))
    assert [r["stage"] for r in cls] == ["baseline", "sft"] and cls[0]["b_auroc"] == "0.5"
    with pytest.raises(ValueError, match="no <task>/metrics.json"):
        tables.build(cells, tmp_path / "t2", transfer_dirs=[str(tmp_path / "empty")])
