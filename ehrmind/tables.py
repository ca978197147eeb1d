"""Paper-style tables, built only from metrics.json files and the predictions.jsonl beside
each. Every table is written as Markdown, LaTeX and CSV.

Each task has a headline metric, the paper's (`Task.headline`): accuracy (MedCalc, TREC CT),
balanced accuracy (EHRSHOT: EHRMind's inverse-class-frequency test score), AUROC (the
structured-EHR tasks, with AUPRC beside it). A cell is one model x task x stage x seed;
several seeds of a (model, task, stage) are shown as mean ± sd, and comparisons pool them:
the rows of a comparison are items x seeds, paired seed by seed (a stage run once, such as a
greedy baseline, pairs with every seed), resampled by item (stats.paired_metric_test).

- main:            rows model x stage, the headline per task [95 % CI] (mean ± sd over
                   seeds); a mark where a stage differs from the same model's baseline
                   (Holm-adjusted within the model's stage family)
- main_seeds:      the same, one row per seed
- per_category_T:  accuracy per category of task T
- significance:    every pair of stages of a model, every pair of models at a stage
- classification:  balanced accuracy, macro-F1, Cohen's kappa, AUROC of the classification tasks
- transfer:        rows model x training task x stage, the headline on each evaluation task
                   and its change against the model's baseline there
- ehr:             the structured-EHR tasks in EAG-RL's layout: AUROC and AUPRC, bootstrap
                   mean ± sd, the expert model's own row
- robustness:      AUROC on test records with a share of the feature order shuffled
- passk_*:         the Pass@k diagnostic and the gate (ehrmind.methods.ehrmind.passk_report)
"""
from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from ehrmind import stats
from ehrmind.evaluate import headline_arrays
from ehrmind.io import read_json, read_jsonl

BETTER, WORSE = "+", "-"   # marks: significantly above / below the model's baseline after Holm
ALPHA = 0.05
NAMES = {"accuracy": "acc", "balanced_accuracy": "bal. acc", "auroc": "AUROC"}

Cell = dict[str, Any]   # metrics.json plus "rows": {item id: (y, pred)} for its headline metric


# ---------------------------------------------------------------- loading and pairing
def load_cells(metrics_paths: list[str], labels=("model", "task", "stage", "seed")) -> list[Cell]:
    cells = []
    for path in metrics_paths:
        metrics = read_json(path)
        for key in labels:
            if key not in metrics.get("cell", {}):
                raise ValueError(f"{path}: field 'cell.{key}' missing; expected the labels written by "
                                 f"`ehrmind evaluate --cell`")
        if "headline" not in metrics:
            raise ValueError(f"{path}: field 'headline' missing; expected metrics.json of `ehrmind evaluate`")
        preds = read_jsonl(Path(path).with_name("predictions.jsonl"))
        if len(preds) != metrics["n"]:
            raise ValueError(f"{path}: n={metrics['n']} but predictions.jsonl has {len(preds)} items")
        y, pred = headline_arrays(metrics["headline"]["metric"], preds)
        metrics["rows"] = {p["id"]: (yi, pi) for p, yi, pi in zip(preds, y, pred)}
        metrics["correct"] = {p["id"]: bool(p["correct"]) for p in preds}
        metrics["cell"]["seed"] = int(metrics["cell"].get("seed", 0))
        metrics["_path"] = str(path)
        cells.append(metrics)
    return cells


def load_transfer(dirs: list[str]) -> list[Cell]:
    """Cells written by the transfer rule: <dir>/<evaluation task>/metrics.json."""
    paths = [str(p) for d in dirs for p in sorted(Path(d).glob("*/metrics.json"))]
    for d in dirs:
        if not any(p.startswith(str(Path(d)) + "/") for p in paths):
            raise ValueError(f"{d}: no <task>/metrics.json inside; expected the output of the transfer rule")
    return load_cells(paths, ("model", "task", "stage", "seed", "train_task"))


def group(cells: list[Cell], keys=("model", "task", "stage")) -> dict[tuple, list[Cell]]:
    """Cells by label, each group's seeds in seed order."""
    out: dict[tuple, list[Cell]] = defaultdict(list)
    for c in cells:
        out[tuple(c["cell"][k] for k in keys)].append(c)
    return {k: sorted(v, key=lambda c: c["cell"]["seed"]) for k, v in out.items()}


def paired_rows(a: list[Cell], b: list[Cell]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y, pred of A, pred of B, item of each row) over the seeds both ran; a side run with one
    seed pairs with each seed of the other."""
    by_seed_a = {c["cell"]["seed"]: c for c in a}
    by_seed_b = {c["cell"]["seed"]: c for c in b}
    seeds = sorted(set(by_seed_a) | set(by_seed_b)) if len(a) > 1 and len(b) > 1 else \
        sorted(by_seed_b if len(a) == 1 else by_seed_a)
    y, pa, pb, items = [], [], [], []
    for s in seeds:
        ca, cb = by_seed_a.get(s, a[0] if len(a) == 1 else None), by_seed_b.get(s, b[0] if len(b) == 1 else None)
        if ca is None or cb is None:
            continue
        if sorted(ca["rows"]) != sorted(cb["rows"]):
            raise ValueError(f"cells {_label(ca)} and {_label(cb)} were evaluated on different items; "
                             f"cannot pair them")
        for i in sorted(ca["rows"]):
            y.append(ca["rows"][i][0])
            pa.append(ca["rows"][i][1])
            pb.append(cb["rows"][i][1])
            items.append(i)
    return np.asarray(y), np.asarray(pa, dtype=float), np.asarray(pb, dtype=float), np.asarray(items)


def headline_of(cells: list[Cell]) -> str:
    return cells[0]["headline"]["metric"]


def test(a: list[Cell], b: list[Cell], seed: int = 0) -> dict[str, Any]:
    """B against A on the headline metric, seeds pooled (stats.paired_metric_test)."""
    y, pa, pb, items = paired_rows(a, b)
    return stats.paired_metric_test(headline_of(a), y, pa, pb, groups=items, seed=seed)


def on_items_of(cells: list[Cell], other: list[Cell]) -> list[Cell]:
    """`cells` restricted to the items `other` was evaluated on, where those are a subset (a transfer
    cell on a fixed subset of the test split, `transfer.test_per_category`); else unchanged, and
    paired_rows names the mismatch."""
    items = set(other[0]["rows"])
    if not all(items <= set(c["rows"]) for c in cells):
        return cells
    return [{**c, "rows": {i: r for i, r in c["rows"].items() if i in items}} for c in cells]


def _label(c: Cell) -> str:
    return "/".join(str(v) for v in c["cell"].values())


# ---------------------------------------------------------------- formatting
def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def value(cells: list[Cell]) -> float:
    """The headline over seeds: the mean."""
    return statistics.fmean(c["headline"]["value"] for c in cells)


def show(cells: list[Cell]) -> str:
    """One seed: value [95 % CI]; several: mean ± sd over seeds."""
    if len(cells) == 1:
        h = cells[0]["headline"]
        return f"{_pct(h['value'])} [{_pct(h['ci_low'])}, {_pct(h['ci_high'])}]"
    values = [c["headline"]["value"] for c in cells]
    return f"{_pct(statistics.fmean(values))} ± {_pct(statistics.stdev(values))}"


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _write(out: Path, name: str, headers: list[str], rows: list[list[Any]],
           csv_headers: list[str], csv_rows: list[list[Any]], caption: str) -> list[Path]:
    md, tex, cs = out / f"{name}.md", out / f"{name}.tex", out / f"{name}.csv"
    md.write_text(f"{caption}\n\n" + tabulate(rows, headers, tablefmt="github", disable_numparse=True) + "\n")
    tex.write_text(f"% {caption}\n" + tabulate(rows, headers, tablefmt="latex_booktabs", disable_numparse=True) + "\n")
    with open(cs, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(csv_headers)
        w.writerows(csv_rows)
    return [md, tex, cs]


# ---------------------------------------------------------------- comparisons
def compare(cells: list[Cell], seed: int = 0) -> list[dict[str, Any]]:
    """Two Holm families per task: the stages of each model, and the models at each stage."""
    grid = group(cells)
    families = defaultdict(dict)   # (task, family, within) -> {label: cells}
    for (m, t, s), members in grid.items():
        families[(t, "stages", m)][s] = members
        families[(t, "models", s)][m] = members
    rows = []
    for (task, family, within), members in families.items():
        names = list(members)
        found = [{"task": task, "metric": headline_of(members[a]), "family": family, "within": within,
                  "a": a, "b": b, **test(members[a], members[b], seed)}
                 for i, a in enumerate(names) for b in names[i + 1:]]
        for r, p in zip(found, stats.holm([r["p_value"] for r in found]) if found else []):
            r["p_holm"], r["significant"] = p, bool(p < ALPHA)
        rows += found
    return rows


# ---------------------------------------------------------------- the tables
def build(metrics_paths: list[str], out: Path, seed: int = 0, transfer_dirs: list[str] = (),
          gate_files: list[str] = (), training_dirs: list[str] = (), expert_files: list[str] = (),
          robustness_paths: list[str] | None = None, n_resamples: int = 1000, eagrl_paths: list[str] = (),
          eagrl_training: list[str] = ()) -> list[Path]:
    cells = load_cells(metrics_paths)
    out.mkdir(parents=True, exist_ok=True)
    grid = group(cells)
    models = list(dict.fromkeys(c["cell"]["model"] for c in cells))
    stages = list(dict.fromkeys(c["cell"]["stage"] for c in cells))
    tasks = list(dict.fromkeys(c["cell"]["task"] for c in cells))
    comparisons = compare(cells, seed)
    written = _main(grid, models, stages, tasks, comparisons, out)
    written += _main_seeds(grid, models, stages, tasks, out)
    for t in tasks:
        written += _per_category(grid, models, stages, t, out)
    written += _significance(comparisons, out)
    written += _classification_table(grid, models, stages, out)
    transfer = load_transfer(list(transfer_dirs)) if transfer_dirs else []
    if transfer:
        written += _transfer_table(grid, transfer, tasks, out, seed)
    ehr_tasks = [t for t in tasks if headline_of(next(v for k, v in grid.items() if k[1] == t)) == "auroc"]
    if ehr_tasks:
        experts = {read_json(p)["task"]: read_json(p) for p in expert_files}
        written += _ehr_table(grid, transfer, experts, models, stages, ehr_tasks, out, seed, n_resamples)
    if robustness_paths is not None:
        written += _robustness_table(load_cells(list(robustness_paths), ("model", "task", "stage", "seed",
                                                                         "shuffle_fraction")), grid, out)
    if eagrl_paths:
        from ehrmind.methods.eagrl import tables as eag_tables
        experts = {read_json(p)["task"]: read_json(p) for p in expert_files}
        written += eag_tables.write(list(eagrl_paths), list(eagrl_training), experts, out, _write, n_resamples, seed)
    if gate_files:
        from ehrmind.methods.ehrmind import passk_report
        written += passk_report.write(passk_report.load_gates(list(gate_files)), grid,
                                      passk_report.load_training(list(training_dirs)), out, _write)
    return written


def _main(grid, models, stages, tasks, comparisons, out: Path) -> list[Path]:
    vs_baseline = {(r["task"], r["within"], r["b"]): r for r in comparisons
                   if r["family"] == "stages" and r["a"] == "baseline"}
    rows, csv_rows = [], []
    for m in models:
        for s in stages:
            if not any((m, t, s) in grid for t in tasks):
                continue
            row, csv_row = [m, s], [m, s]
            for t in tasks:
                c, r = grid.get((m, t, s)), vs_baseline.get((t, m, s))
                mark = "" if r is None or not r["significant"] else BETTER if r["diff"] > 0 else WORSE
                row.append(show(c) + mark if c else "")
                if not c:
                    csv_row += [""] * 8
                    continue
                values = [x["headline"]["value"] for x in c]
                csv_row += [c[0]["headline"]["metric"], value(c), statistics.stdev(values) if len(c) > 1 else "",
                            len(c), c[0]["headline"]["ci_low"] if len(c) == 1 else "",
                            c[0]["headline"]["ci_high"] if len(c) == 1 else "",
                            statistics.fmean(x["format_rate"] for x in c), r["p_holm"] if r else ""]
            rows.append(row)
            csv_rows.append(csv_row)
    keys = ("metric", "value", "sd_over_seeds", "seeds", "ci_low", "ci_high", "format_rate", "p_holm_vs_baseline")
    headers = ["Model", "Stage"] + [f"{t} {NAMES[headline_of(_any(grid, t))]} %" for t in tasks]
    return _write(out, "main", headers, rows, ["model", "stage"] + [f"{t}_{k}" for t in tasks for k in keys],
                  csv_rows,
                  f"The paper's headline metric per task (%): accuracy (MedCalc, TREC CT), balanced accuracy "
                  f"(EHRSHOT; EHRMind's inverse-class-frequency test score), AUROC (structured-EHR tasks). One "
                  f"seed: value [95 % CI] (Wilson for accuracy, else item bootstrap); several: mean ± sd over "
                  f"seeds. {BETTER}/{WORSE}: significantly above/below the model's baseline, seeds pooled "
                  f"(exact McNemar for accuracy, else a paired permutation test), Holm-adjusted over the model's "
                  f"stage pairs, alpha {ALPHA}.")


def _any(grid, task: str) -> list[Cell]:
    return next(v for k, v in grid.items() if k[1] == task)


def _main_seeds(grid, models, stages, tasks, out: Path) -> list[Path]:
    seeds = sorted({c["cell"]["seed"] for v in grid.values() for c in v})
    rows, csv_rows = [], []
    for m in models:
        for s in stages:
            for seed in seeds:
                found = [next((c for c in grid.get((m, t, s), []) if c["cell"]["seed"] == seed), None) for t in tasks]
                if not any(found):
                    continue
                rows.append([m, s, seed] + [show([c]) if c else "" for c in found])
                csv_rows.append([m, s, seed] + [c["headline"]["value"] if c else "" for c in found])
    return _write(out, "main_seeds", ["Model", "Stage", "Seed"] + tasks, rows, ["model", "stage", "seed"] + tasks,
                  csv_rows, "The headline metric (%) of every cell, one row per seed, with its 95 % CI. A stage "
                  "run once (a greedy baseline) has the first seed only.")


def _per_category(grid, models, stages, t: str, out: Path) -> list[Path]:
    cells = [c for (m, task, s), v in grid.items() if task == t for c in v]
    categories = sorted({k for c in cells for k in c["per_category"]})
    rows, csv_rows = [], []
    for m in models:
        for s in stages:
            c = grid.get((m, t, s))
            if c is None:
                continue
            acc = [statistics.fmean(x["per_category"][k]["accuracy"] for x in c) if k in c[0]["per_category"]
                   else None for k in categories] + [statistics.fmean(x["accuracy"] for x in c)]
            rows.append([m, s] + ["" if a is None else _pct(a) for a in acc])
            csv_rows.append([m, s] + ["" if a is None else a for a in acc])
    n_per = {k: next(c["per_category"][k]["n"] for c in cells if k in c["per_category"]) for k in categories}
    return _write(out, f"per_category_{t}", ["Model", "Stage"] + [f"{k} (n={n_per[k]})" for k in categories] + ["all"],
                  rows, ["model", "stage"] + categories + ["all"], csv_rows,
                  f"{t}: accuracy (%) per category, mean over seeds.")


def _significance(comparisons, out: Path) -> list[Path]:
    keys = ["task", "metric", "family", "within", "a", "b", "n", "test", "p_value", "p_holm", "significant",
            "diff", "ci_low", "ci_high"]
    rows = [[r["task"], NAMES[r["metric"]], r["family"], r["within"], r["a"], r["b"], r["n"], r["test"],
             f"{r['p_value']:.3g}", f"{r['p_holm']:.3g}", "yes" if r["significant"] else "no",
             f"{100 * r['diff']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"] for r in comparisons]
    return _write(out, "significance", ["Task", "Metric", "Family", "Within", "A", "B", "n items", "Test", "p",
                                        "p (Holm)", "sig.", "B-A pts [95% CI]"], rows,
                  keys, [[r[k] for k in keys] for r in comparisons],
                  "Paired comparisons of the headline metric on the same test items, seeds pooled (rows are "
                  "items x seeds, paired seed by seed). Exact McNemar on the discordant pairs for accuracy (the "
                  "stratified exact test over seeds), else a paired permutation test (2,000 resamples); Holm-"
                  "adjusted within each family (the stages of one model, or the models at one stage); 95 % CI of "
                  "the difference from a paired bootstrap over items.")


def _classification_table(grid, models, stages, out: Path) -> list[Path]:
    tasks = list(dict.fromkeys(k[1] for k, v in grid.items() if "classification" in v[0]))
    metrics = ["balanced_accuracy", "macro_f1", "cohen_kappa", "auroc"]
    rows, csv_rows = [], []

    def mean(cells, key):
        values = [c["classification"][key] for c in cells if c["classification"].get(key) is not None]
        return statistics.fmean(values) if values else None

    for m in models:
        for s in stages:
            found = [grid.get((m, t, s)) for t in tasks]
            if not any(found):
                continue
            values = [mean(c, k) if c else None for c in found for k in metrics]
            rows.append([m, s] + [_num(v) for v in values])
            csv_rows.append([m, s] + ["" if v is None else v for v in values])
    short = {"balanced_accuracy": "bal. acc", "macro_f1": "macro-F1", "cohen_kappa": "kappa", "auroc": "AUROC"}
    return _write(out, "classification", ["Model", "Stage"] + [f"{t} {short[k]}" for t in tasks for k in metrics],
                  rows, ["model", "stage"] + [f"{t}_{k}" for t in tasks for k in metrics], csv_rows,
                  "Classification tasks, mean over seeds: balanced accuracy (mean recall over classes), macro-F1, "
                  "Cohen's kappa (an unparsable answer counts as its own, wrong class; scikit-learn) and AUROC "
                  "from the model's probability of class 1 (stated, or read at the label digit; – where "
                  "undefined).")


def _transfer_table(grid, transfer: list[Cell], eval_tasks: list[str], out: Path, seed: int) -> list[Path]:
    """Rows (model, training task, stage); the diagonal (a task's own checkpoints) is the main cell."""
    by_row: dict[tuple[str, str, str], dict[str, list[Cell]]] = defaultdict(dict)
    for (m, t, s), cells in grid.items():
        if s != "baseline":
            by_row[(m, t, s)][t] = cells
    for (m, tt, s, e), cells in group(transfer, ("model", "train_task", "stage", "task")).items():
        by_row[(m, tt, s)][e] = cells
    # Holm family: every trained checkpoint of one model against its baseline on one evaluation task.
    tests: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    families: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for (m, tt, s), row in by_row.items():
        for e, cells in row.items():
            base = grid.get((m, e, "baseline"))
            if base is not None:
                tests[(m, tt, s, e)] = test(on_items_of(base, cells), cells, seed)
                families[(m, e)].append((m, tt, s, e))
    for keys in families.values():
        for key, p in zip(keys, stats.holm([tests[k]["p_value"] for k in keys])):
            tests[key]["p_holm"] = p
    trained_on = {k[1] for k in by_row}   # the tasks' own order, then `multi`
    train_order = [t for t in eval_tasks if t in trained_on] + sorted(trained_on - set(eval_tasks))
    stage_order = list(dict.fromkeys(k[2] for k in by_row))
    columns = [e for e in eval_tasks if any(e in row for row in by_row.values())]
    rows, csv_rows = [], []
    for m in dict.fromkeys(k[0] for k in by_row):
        rows.append([m, "—", "baseline"] + [show(grid[(m, e, "baseline")]) if (m, e, "baseline") in grid else ""
                                            for e in columns])
        for tt in train_order:
            for s in stage_order:
                row = by_row.get((m, tt, s))
                if row is None or not any(e in row for e in columns if e != tt):
                    continue
                text, values = [m, tt, s], [m, tt, s]
                for e in columns:
                    c, t = row.get(e), tests.get((m, tt, s, e))
                    if c is None:
                        text.append("")
                        values += [""] * 4
                        continue
                    delta = ""
                    if t is not None:
                        mark = (BETTER if t["diff"] > 0 else WORSE) if t["p_holm"] < ALPHA else ""
                        delta = f" ({100 * t['diff']:+.1f}{mark})"
                    text.append(show(c) + delta)
                    values += [value(c), t["diff"] if t else "", t["p_value"] if t else "", t["p_holm"] if t else ""]
                rows.append(text)
                csv_rows.append(values)
    keys = ("value", "diff_vs_baseline", "p_value", "p_holm")
    return _write(out, "transfer", ["Model", "Trained on", "Stage"] + [f"on {e} (Δ pts)" for e in columns], rows,
                  ["model", "train_task", "stage"] + [f"{e}_{k}" for e in columns for k in keys], csv_rows,
                  f"Cross-task transfer: trained checkpoints on the other tasks of their family, the evaluation "
                  f"task's headline metric (%). Δ: change in points against the same model's baseline on that "
                  f"task on the same items (a config with transfer.test_per_category evaluates the off-diagonal "
                  f"cells on a fixed seeded subset of the test split, and their Δ is against the baseline on "
                  f"that subset); {BETTER}/{WORSE}: significant after Holm over the model's checkpoints on that task "
                  f"(seeds pooled; McNemar for accuracy, else a paired permutation test; alpha {ALPHA}). `multi` "
                  f"was trained on the union of the tasks' training sets.")


def _auc(cells: list[Cell], n_resamples: int, seed: int) -> dict[str, Any]:
    """AUROC and AUPRC with a bootstrap over patients (seeds pooled, a patient's seeds together)."""
    y, p, items = [], [], []
    for c in cells:
        for i, (yi, pi) in sorted(c["rows"].items()):
            y.append(yi)
            p.append(pi)
            items.append(i)
    return stats.auc_bootstrap(y, p, n_resamples=n_resamples, seed=seed, groups=items)


def _ms(mean: float, sd: float) -> str:
    return "–" if mean != mean else f"{mean:.3f} ± {sd:.3f}"


def _ehr_table(grid, transfer, experts, models, stages, tasks, out: Path, seed: int, n_resamples: int) -> list[Path]:
    """EAG-RL's layout: rows model x method (the expert first), columns task x {AUROC, AUPRC}."""
    rows, csv_rows = [], []
    if experts:
        found = [experts[t]["test"] if t in experts else None for t in tasks]
        rows.append(["expert (ConCare)", "—"] + [x for e in found for x in
                     ((_ms(e["auroc_mean"], e["auroc_sd"]), _ms(e["auprc_mean"], e["auprc_sd"])) if e else ("", ""))])
        csv_rows.append(["expert", "concare"] + [x for e in found for x in
                         ((e["auroc_mean"], e["auroc_sd"], e["auprc_mean"], e["auprc_sd"]) if e else ("",) * 4)])
    for m in models:
        for s in stages:
            found = [grid.get((m, t, s)) for t in tasks]
            if not any(found):
                continue
            aucs = [_auc(c, n_resamples, seed) if c else None for c in found]
            rows.append([m, s] + [x for a in aucs for x in
                                  ((_ms(a["auroc_mean"], a["auroc_sd"]), _ms(a["auprc_mean"], a["auprc_sd"]))
                                   if a else ("", ""))])
            csv_rows.append([m, s] + [x for a in aucs for x in
                                      ((a["auroc_mean"], a["auroc_sd"], a["auprc_mean"], a["auprc_sd"]) if a
                                       else ("",) * 4)])
    for (m, tt, s, e), cells in group(transfer, ("model", "train_task", "stage", "task")).items():
        if e in tasks:   # generalization: trained on one structured-EHR task, tested on another
            a = _auc(cells, n_resamples, seed)
            rows.append([m, f"{s}, trained on {tt}"] + [x for t in tasks for x in
                        ((_ms(a["auroc_mean"], a["auroc_sd"]), _ms(a["auprc_mean"], a["auprc_sd"])) if t == e
                         else ("", ""))])
            csv_rows.append([m, f"{s}@{tt}"] + [x for t in tasks for x in
                            ((a["auroc_mean"], a["auroc_sd"], a["auprc_mean"], a["auprc_sd"]) if t == e
                             else ("",) * 4)])
    return _write(out, "ehr", ["Model", "Method"] + [f"{t} {k}" for t in tasks for k in ("AUROC", "AUPRC")], rows,
                  ["model", "method"] + [f"{t}_{k}" for t in tasks for k in ("auroc_mean", "auroc_sd", "auprc_mean",
                                                                            "auprc_sd")],
                  csv_rows,
                  f"Structured-EHR prediction in EAG-RL's layout: AUROC and AUPRC from the stated probability, "
                  f"mean ± sd over {n_resamples:,} bootstrap resamples of the test patients (seeded; the paper "
                  f"uses 100, the authors' code 1,000; seeds pooled). The expert is ConCare trained on the same "
                  f"split. 'trained on X': a checkpoint evaluated zero-shot on another dataset (generalization).")


def _robustness_table(cells: list[Cell], grid, out: Path) -> list[Path]:
    """The headline (AUROC) against the shuffled share of the feature order; 0 = the main cell."""
    for c in cells:
        c["cell"]["shuffle_fraction"] = float(c["cell"]["shuffle_fraction"])
    by = group(cells, ("model", "task", "stage", "shuffle_fraction"))
    fractions = sorted({k[3] for k in by})
    rows, csv_rows = [], []
    for m, t, s in dict.fromkeys(k[:3] for k in by):
        base = grid.get((m, t, s))
        found = [base] + [by.get((m, t, s, f)) for f in fractions]
        rows.append([m, t, s] + [show(c) if c else "" for c in found])
        csv_rows.append([m, t, s] + [value(c) if c else "" for c in found])
    labels = ["0"] + [f"{f:g}" for f in fractions]
    return _write(out, "robustness", ["Model", "Task", "Stage"] + [f"shuffled {x}" for x in labels], rows,
                  ["model", "task", "stage"] + [f"shuffle_{x}" for x in labels], csv_rows,
                  "Robustness to the feature order (EAG-RL): the headline metric (%) on the test records with "
                  "that share of the features' order shuffled (seeded per patient); 0 is the main cell.")
