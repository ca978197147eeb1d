"""Tables are built from metrics.json + predictions.jsonl only: the headline metric per task,
mean ± sd over seeds, marks from Holm-adjusted paired tests with the seeds pooled."""
import csv

import numpy as np
import pytest

from ehrmind import stats, tables
from ehrmind.evaluate import summarize
from ehrmind.io import write_json, write_jsonl


def _cell(root, model, stage, correct, categories, seed=0, task="medcalc", headline="accuracy", labels=None,
          p=None, **cell):
    preds = [{"id": f"i{k}", "category": categories[k], "correct": c, "format_ok": True, "reward": 0.1 + c,
              "parse_error": None, "generated_tokens": 10} for k, c in enumerate(correct)]
    if labels is not None:
        for k, row in enumerate(preds):
            row.update(gold_label=labels[k], parsed_value=labels[k] if row["correct"] else 1 - labels[k],
                       p_positive=p[k] if p is not None else 0.5)
    d = root / model / task / stage / f"seed{seed}"
    write_jsonl(d / "predictions.jsonl", preds)
    write_json(d / "metrics.json", {**summarize(preds, 2 if labels is not None else 0, headline),
                                    "cell": {"model": model, "task": task, "stage": stage, "seed": seed, **cell}})
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
    assert {p.name for p in written} >= {"main.md", "main.tex", "main.csv", "main_seeds.csv", "significance.md",
                                         "per_category_medcalc.csv"}
    main = (out / "main.md").read_text()
    # sft vs baseline: b01=20, b10=0 -> p = 2 * 0.5**20; Holm over 3 pairs keeps it tiny -> marked
    assert "60.0 [44.6, 73.7]+" in main   # Wilson 24/40 by hand: 0.5912 -+ 0.1453
    assert "12.5 [" in main and "12.5 [5.0, 26.1]+" not in main     # rlvr not significant
    rows = list(csv.DictReader(open(out / "significance.csv")))
    sft_row = next(r for r in rows if r["family"] == "stages" and r["a"] == "baseline" and r["b"] == "sft")
    assert sft_row["test"] == "McNemar exact"
    assert float(sft_row["p_value"]) == pytest.approx(2 * 0.5 ** 20)
    assert float(sft_row["p_holm"]) == pytest.approx(3 * 2 * 0.5 ** 20)
    assert any(r["family"] == "models" and r["within"] == "baseline" for r in rows)  # m1 vs m2
    per = list(csv.DictReader(open(out / "per_category_medcalc.csv")))
    assert float(next(r for r in per if r["stage"] == "sft")["lab"]) == pytest.approx(12 / 20)
    assert stats.wilson_interval(24, 40) == pytest.approx((0.4460, 0.7365), abs=1e-4)
    assert "| m2      | sft" not in main     # no empty rows for cells that were not run


def test_seeds_give_mean_and_sd_and_pool_in_the_tests(tmp_path):
    n = 30
    cats = ["x"] * n
    base = [k < 3 for k in range(n)]
    paths = [_cell(tmp_path, "m", "baseline", base, cats)]          # greedy: one seed
    for seed, k_right in ((0, 12), (1, 18)):
        paths.append(_cell(tmp_path, "m", "sft", [k < k_right for k in range(n)], cats, seed=seed))
    out = tmp_path / "tables"
    tables.build(paths, out)
    main = list(csv.DictReader(open(out / "main.csv")))
    sft = next(r for r in main if r["stage"] == "sft")
    assert float(sft["medcalc_value"]) == pytest.approx(0.5) and int(sft["medcalc_seeds"]) == 2
    assert float(sft["medcalc_sd_over_seeds"]) == pytest.approx(np.std([0.4, 0.6], ddof=1))
    assert "50.0 ± 14.1+" in (out / "main.md").read_text()
    seeds = list(csv.DictReader(open(out / "main_seeds.csv")))
    assert [(r["stage"], r["seed"]) for r in seeds] == [("baseline", "0"), ("sft", "0"), ("sft", "1")]
    sig = next(r for r in csv.DictReader(open(out / "significance.csv")) if r["b"] == "sft")
    # pooled: the baseline pairs with each seed; discordant pairs 9 + 15, all one way
    assert int(sig["n"]) == n and float(sig["p_value"]) == pytest.approx(2 * 0.5 ** 24)


def test_balanced_accuracy_headline_uses_a_permutation_test(tmp_path):
    n = 40
    labels = [1 if k < 8 else 0 for k in range(n)]          # imbalanced like EHRSHOT
    majority = [y == 0 for y in labels]                      # says 0 everywhere: accuracy 0.8, balanced 0.5
    good = [True] * n
    args = dict(task="ehrshot", headline="balanced_accuracy", labels=labels)
    paths = [_cell(tmp_path, "m", "baseline", majority, ["s"] * n, **args),
             _cell(tmp_path, "m", "sft", good, ["s"] * n, **args)]
    out = tmp_path / "tables"
    tables.build(paths, out)
    main = next(r for r in csv.DictReader(open(out / "main.csv")) if r["stage"] == "baseline")
    assert main["ehrshot_metric"] == "balanced_accuracy" and float(main["ehrshot_value"]) == pytest.approx(0.5)
    sig = next(csv.DictReader(open(out / "significance.csv")))
    # 8 rows differ, all one way: exact p = 2 / 2**8; the Monte Carlo estimate (2,000 resamples) is near it
    assert sig["test"] == "permutation" and float(sig["diff"]) == pytest.approx(0.5) and float(sig["p_value"]) < 0.03
    assert "bal. acc" in (out / "main.md").read_text()


def test_unpaired_items_are_refused(tmp_path):
    a = _cell(tmp_path, "m", "baseline", [True, False], ["x", "x"])
    b = _cell(tmp_path, "m", "sft", [True, False, True], ["x", "x", "x"])
    with pytest.raises(ValueError, match="different items"):
        tables.build([a, b], tmp_path / "t")


def test_transfer_matrix_and_classification_table(tmp_path):
    n = 30
    base = [k < 3 for k in range(n)]
    strong = [k < 25 for k in range(n)]        # 22 discordant pairs, all one way
    labels = [1 if k % 2 else 0 for k in range(n)]
    cells, dirs = [], []
    for task in ("a", "b"):
        for stage, correct in (("baseline", base), ("sft", strong if task == "a" else base)):
            cells.append(_cell(tmp_path / "cells", "m", stage, correct, ["x"] * n, task=task, labels=labels))
    for train, evals in (("a", ["b"]), ("b", ["a"]), ("multi", ["a", "b"])):
        d = tmp_path / "transfer" / "m" / train / "sft" / "seed0"
        for e in evals:
            path = _cell(tmp_path / "t", "m", "sft", strong if (train, e) == ("multi", "b") else base, ["x"] * n,
                         task=e, labels=labels, train_task=train)
            (d / e).mkdir(parents=True)
            for name in ("metrics.json", "predictions.jsonl"):
                (d / e / name).write_bytes((tmp_path / "t" / "m" / e / "sft" / "seed0" / name).read_bytes())
        dirs.append(str(d))
    out = tmp_path / "tables"
    tables.build(cells, out, transfer_dirs=dirs)
    rows = {(r["train_task"], r["stage"]): r for r in csv.DictReader(open(out / "transfer.csv"))}
    assert set(rows) == {("a", "sft"), ("b", "sft"), ("multi", "sft")}
    assert float(rows[("a", "sft")]["a_value"]) == pytest.approx(25 / 30)   # diagonal = main cell
    assert float(rows[("multi", "sft")]["b_diff_vs_baseline"]) == pytest.approx(22 / 30)
    # Holm over the three checkpoints evaluated on task b: the significant one is adjusted x3
    assert float(rows[("multi", "sft")]["b_p_holm"]) == pytest.approx(3 * 2 * 0.5 ** 22)
    assert float(rows[("b", "sft")]["b_p_value"]) == 1.0
    md = (out / "transfer.md").read_text()
    assert "(+73.3+)" in md and "| m       | —" in md
    cls = list(csv.DictReader(open(out / "classification.csv")))
    assert [r["stage"] for r in cls] == ["baseline", "sft"] and cls[0]["b_auroc"] == "0.5"
    with pytest.raises(ValueError, match="no <task>/metrics.json"):
        tables.build(cells, tmp_path / "t2", transfer_dirs=[str(tmp_path / "empty")])


def test_transfer_on_a_subset_is_tested_against_the_baseline_on_the_same_items(tmp_path):
    n, m = 40, 20                       # the transfer cell sees the first 20 items (transfer.test_per_category)
    base = [k < 20 for k in range(n)]   # the baseline gets the whole subset right, the rest wrong
    cells = [_cell(tmp_path / "cells", "m", stage, base, ["x"] * n, task=task)
             for task in ("a", "b") for stage in ("baseline", "sft")]
    d = tmp_path / "transfer" / "m" / "a" / "sft" / "seed0"
    path = _cell(tmp_path / "t", "m", "sft", [k < 10 for k in range(m)], ["x"] * m, task="b", train_task="a")
    (d / "b").mkdir(parents=True)
    for name in ("metrics.json", "predictions.jsonl"):
        (d / "b" / name).write_bytes((tmp_path / "t" / "m" / "b" / "sft" / "seed0" / name).read_bytes())
    tables.build(cells, tmp_path / "tables", transfer_dirs=[str(d)])
    row = next(r for r in csv.DictReader(open(tmp_path / "tables" / "transfer.csv")) if r["train_task"] == "a")
    # 10/20 against the baseline's 20/20 on those items: -50 points (on all 40 it would read 0)
    assert float(row["b_diff_vs_baseline"]) == pytest.approx(-0.5)
    assert float(row["b_p_value"]) == pytest.approx(2 * 0.5 ** 10)


def test_ehr_table_in_eag_rl_layout_with_the_expert_row(tmp_path):
    n = 40
    rng = np.random.default_rng(0)
    labels = [int(k < 10) for k in range(n)]
    p_base = rng.random(n)
    p_sft = np.clip(np.array(labels) * 0.6 + rng.random(n) * 0.5, 0, 1)
    args = dict(task="tjh_mortality", headline="auroc", labels=labels)
    paths = [_cell(tmp_path, "m", "baseline", [True] * n, ["c"] * n, p=p_base, **args),
             _cell(tmp_path, "m", "sft", [True] * n, ["c"] * n, p=p_sft, **args)]
    expert = tmp_path / "expert.json"
    write_json(expert, {"task": "tjh_mortality", "test": {"auroc_mean": 0.9, "auroc_sd": 0.02, "auprc_mean": 0.8,
                                                          "auprc_sd": 0.04}})
    out = tmp_path / "tables"
    tables.build(paths, out, expert_files=[str(expert)], n_resamples=200)
    rows = list(csv.DictReader(open(out / "ehr.csv")))
    assert [r["method"] for r in rows] == ["concare", "baseline", "sft"]
    sft = rows[2]
    boot = stats.auc_bootstrap(labels, p_sft, n_resamples=200, seed=0, groups=[f"i{k}" for k in range(n)])
    assert float(sft["tjh_mortality_auroc_mean"]) == pytest.approx(boot["auroc_mean"])
    assert "0.900 ± 0.020" in (out / "ehr.md").read_text() and "200 bootstrap" in (out / "ehr.md").read_text()
