"""Paper-style tables, built only from metrics.json files and the
predictions.jsonl beside each. Every table is written as Markdown, LaTeX and CSV.

- main:            rows model x stage, one accuracy [95 % CI] column per task; a
                   mark where a stage differs from the same model's baseline
                   (exact McNemar, Holm-adjusted within the model's stage family)
- per_category_T:  the same rows, one column per category of task T
- significance:    every pair of stages of a model, and every pair of models at a
                   stage: McNemar p, Holm-adjusted p, paired-bootstrap CI of the difference
- classification:  for the classification tasks, balanced accuracy, macro-F1,
                   Cohen's kappa and (two classes) AUROC per model x stage
- transfer:        rows model x training task x stage, one column per evaluation
                   task: accuracy [95 % CI] and the change against the model's
                   baseline on that task (exact McNemar, Holm-adjusted per model
                   and evaluation task); the diagonal comes from the main cells
- passk_*:         the Pass@k diagnostic and the gate (ehrmind.methods.ehrmind.passk_report)
"""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ehrmind import stats
from ehrmind.io import read_json, read_jsonl

BETTER, WORSE = "+", "-"   # marks: significantly above / below the model's baseline after Holm
ALPHA = 0.05


Cell = dict[str, Any]   # metrics.json plus "items": {item id: correct} from predictions.jsonl


def load_transfer(dirs: list[str]) -> list[Cell]:
    """Cells written by the transfer rule: <dir>/<evaluation task>/metrics.json."""
    paths = [str(p) for d in dirs for p in sorted(Path(d).glob("*/metrics.json"))]
    for d in dirs:
        if not any(p.startswith(str(Path(d)) + "/") for p in paths):
            raise ValueError(f"{d}: no <task>/metrics.json inside; expected the output of the transfer rule")
    return load_cells(paths, ("model", "task", "stage", "train_task"))


def load_cells(metrics_paths: list[str], labels=("model", "task", "stage")) -> list[Cell]:
    cells = []
    for path in metrics_paths:
        metrics = read_json(path)
        for key in labels:
            if key not in metrics.get("cell", {}):
                raise ValueError(f"{path}: field 'cell.{key}' missing; expected the labels written by "
                                 f"`ehrmind evaluate --cell`")
        preds = read_jsonl(Path(path).with_name("predictions.jsonl"))
        metrics["items"] = {p["id"]: bool(p["correct"]) for p in preds}
        if len(metrics["items"]) != metrics["n"]:
            raise ValueError(f"{path}: n={metrics['n']} but predictions.jsonl has {len(metrics['items'])} items")
        cells.append(metrics)
    return cells


def _paired(cells: dict[str, Cell]) -> dict[str, list[bool]]:
    """Per-item correctness of several cells, aligned on the same item ids."""
    ids = sorted(next(iter(cells.values()))["items"])
    for name, c in cells.items():
        if sorted(c["items"]) != ids:
            raise ValueError(f"cell {name} was evaluated on different items; cannot pair them")
    return {name: [c["items"][i] for i in ids] for name, c in cells.items()}


def compare(cells: list[Cell], seed: int = 0) -> list[dict[str, Any]]:
    """Two Holm families per task: the stages of each model, and the models at each stage."""
    by = defaultdict(dict)   # (task, family, group) -> {label: cell}
    for c in cells:
        m, t, s = c["cell"]["model"], c["cell"]["task"], c["cell"]["stage"]
        by[(t, "stages", m)][s] = c
        by[(t, "models", s)][m] = c
    rows = []
    for (task, family, group), members in by.items():
        if len(members) < 2:
            continue
        for r in stats.pairwise_comparisons(_paired(members), alpha=ALPHA, seed=seed):
            rows.append({"task": task, "family": family, "within": group, **r})
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _acc(summary: dict[str, Any]) -> str:
    return f"{_pct(summary['accuracy'])} [{_pct(summary['ci_low'])}, {_pct(summary['ci_high'])}]"


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


def build(metrics_paths: list[str], out: Path, seed: int = 0, transfer_dirs: list[str] = (),
          gate_files: list[str] = (), training_dirs: list[str] = ()) -> list[Path]:
    cells = load_cells(metrics_paths)
    comparisons = compare(cells, seed)
    out.mkdir(parents=True, exist_ok=True)
    models = list(dict.fromkeys(c["cell"]["model"] for c in cells))
    stages = list(dict.fromkeys(c["cell"]["stage"] for c in cells))
    tasks = list(dict.fromkeys(c["cell"]["task"] for c in cells))
    grid = {(c["cell"]["model"], c["cell"]["task"], c["cell"]["stage"]): c for c in cells}
    vs_baseline = {(r["task"], r["within"], r["b"]): r for r in comparisons
                   if r["family"] == "stages" and r["a"] == "baseline"}

    def mark(m: str, t: str, s: str) -> str:
        r = vs_baseline.get((t, m, s))
        if r is None or not r["significant"]:
            return ""
        return BETTER if r["diff"] > 0 else WORSE

    written: list[Path] = []
    rows, csv_rows = [], []
    for m in models:
        for s in stages:
            if not any((m, t, s) in grid for t in tasks):
                continue
            row, csv_row = [m, s], [m, s]
            for t in tasks:
                c = grid.get((m, t, s))
                row.append(_acc(c) + mark(m, t, s) if c else "")
                r = vs_baseline.get((t, m, s))
                csv_row += [c["accuracy"], c["ci_low"], c["ci_high"], c["n"], c["format_rate"],
                            r["p_holm"] if r else ""] if c else [""] * 6
            rows.append(row)
            csv_rows.append(csv_row)
    csv_headers = ["model", "stage"] + [f"{t}_{k}" for t in tasks for k in
                                        ("accuracy", "ci_low", "ci_high", "n", "format_rate", "p_holm_vs_baseline")]
    written += _write(out, "main", ["Model", "Stage"] + [f"{t} acc % [95% CI]" for t in tasks], rows,
                      csv_headers, csv_rows,
                      f"Accuracy (%) with 95 % Wilson CI. {BETTER}/{WORSE}: significantly above/below the "
                      f"model's baseline (exact McNemar, Holm-adjusted over the model's stage pairs, "
                      f"alpha {ALPHA}).")

    for t in tasks:
        categories = sorted({k for c in cells if c["cell"]["task"] == t for k in c["per_category"]})
        rows, csv_rows = [], []
        for m in models:
            for s in stages:
                c = grid.get((m, t, s))
                if c is None:
                    continue
                per = c["per_category"]
                rows.append([m, s] + [_acc(per[k]) if k in per else "" for k in categories] + [_acc(c)])
                csv_rows.append([m, s] + [per[k]["accuracy"] if k in per else "" for k in categories]
                                + [c["accuracy"]])
        n_per = {k: next(c["per_category"][k]["n"] for c in cells
                         if c["cell"]["task"] == t and k in c["per_category"]) for k in categories}
        written += _write(out, f"per_category_{t}",
                          ["Model", "Stage"] + [f"{k} (n={n_per[k]})" for k in categories] + ["all"],
                          rows, ["model", "stage"] + categories + ["all"], csv_rows,
                          f"{t}: accuracy (%) per category with 95 % Wilson CI.")

    keys = ["task", "family", "within", "a", "b", "n", "b01", "b10", "p_value", "p_holm",
            "significant", "diff", "ci_low", "ci_high"]
    rows = [[r["task"], r["family"], r["within"], r["a"], r["b"], r["n"], r["b01"], r["b10"],
             f"{r['p_value']:.3g}", f"{r['p_holm']:.3g}", "yes" if r["significant"] else "no",
             f"{100 * r['diff']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"]
            for r in comparisons]
    written += _write(out, "significance",
                      ["Task", "Family", "Within", "A", "B", "n", "b01", "b10", "p (McNemar)",
                       "p (Holm)", "sig.", "B-A pts [95% CI]"], rows,
                      keys, [[r[k] for k in keys] for r in comparisons],
                      "Paired comparisons on the same test items. b10 = A right, B wrong; b01 = A wrong, "
                      "B right. Exact McNemar p, Holm-adjusted within each family (the stages of one "
                      "model, or the models at one stage); paired-bootstrap 95 % CI of the difference.")
    written += _classification_table(cells, models, stages, out)
    if transfer_dirs:
        written += _transfer_table(cells, load_transfer(list(transfer_dirs)), tasks, out, seed)
    if gate_files:
        from ehrmind.methods.ehrmind import passk_report
        written += passk_report.write(passk_report.load_gates(list(gate_files)), cells,
                                      passk_report.load_training(list(training_dirs)), out, _write)
    return written


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _classification_table(cells: list[Cell], models: list[str], stages: list[str], out: Path) -> list[Path]:
    tasks = list(dict.fromkeys(c["cell"]["task"] for c in cells if "classification" in c))
    metrics = ["balanced_accuracy", "macro_f1", "cohen_kappa", "auroc"]
    grid = {(c["cell"]["model"], c["cell"]["task"], c["cell"]["stage"]): c for c in cells}
    rows, csv_rows = [], []
    for m in models:
        for s in stages:
            found = [grid.get((m, t, s)) for t in tasks]
            if not any(found):
                continue
            values = [c["classification"].get(k) if c else None for c in found for k in metrics]
            rows.append([m, s] + [_num(v) for v in values])
            csv_rows.append([m, s] + ["" if v is None else v for v in values])
    short = {"balanced_accuracy": "bal. acc", "macro_f1": "macro-F1", "cohen_kappa": "kappa", "auroc": "AUROC"}
    return _write(out, "classification", ["Model", "Stage"] + [f"{t} {short[k]}" for t in tasks for k in metrics],
                  rows, ["model", "stage"] + [f"{t}_{k}" for t in tasks for k in metrics], csv_rows,
                  "Classification tasks: balanced accuracy (mean recall over classes), macro-F1, Cohen's "
                  "kappa (an unparsable answer counts as its own, wrong class) and AUROC from the model's "
                  "probability of answering class 1 (two-class tasks; – where undefined).")


def _transfer_table(cells: list[Cell], transfer: list[Cell], eval_tasks: list[str], out: Path,
                    seed: int) -> list[Path]:
    """Rows (model, training task, stage); the diagonal (a task's own checkpoints) is the main cell."""
    baseline = {(c["cell"]["model"], c["cell"]["task"]): c for c in cells if c["cell"]["stage"] == "baseline"}
    trained = [c for c in cells if c["cell"]["stage"] != "baseline"]
    by_row: dict[tuple[str, str, str], dict[str, Cell]] = defaultdict(dict)
    for c in trained + transfer:
        label = c["cell"]
        by_row[(label["model"], label.get("train_task", label["task"]), label["stage"])][label["task"]] = c
    # Holm family: every trained checkpoint of one model against its baseline on one evaluation task.
    tests: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    families: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for (m, tt, s), row in by_row.items():
        for e, c in row.items():
            base = baseline.get((m, e))
            if base is None:
                continue
            pair = _paired({"baseline": base, "trained": c})
            tests[(m, tt, s, e)] = {**stats.mcnemar_exact(pair["baseline"], pair["trained"]),
                                    **stats.paired_bootstrap_diff(pair["baseline"], pair["trained"], seed=seed)}
            families[(m, e)].append((m, tt, s, e))
    for keys in families.values():
        for key, p in zip(keys, stats.holm([tests[k]["p_value"] for k in keys])):
            tests[key]["p_holm"] = p

    trained_on = set(k[1] for k in by_row)   # the tasks' own order, then `multi`
    train_order = [t for t in eval_tasks if t in trained_on] + sorted(trained_on - set(eval_tasks))
    stage_order = list(dict.fromkeys(k[2] for k in by_row))
    rows, csv_rows = [], []
    for m in dict.fromkeys(k[0] for k in by_row):
        base_row = [m, "—", "baseline"] + [_acc(baseline[(m, e)]) if (m, e) in baseline else "" for e in eval_tasks]
        rows.append(base_row)
        for tt in train_order:
            for s in stage_order:
                row = by_row.get((m, tt, s))
                if row is None:
                    continue
                text, values = [m, tt, s], [m, tt, s]
                for e in eval_tasks:
                    c, t = row.get(e), tests.get((m, tt, s, e))
                    if c is None:
                        text.append("")
                        values += [""] * 6
                        continue
                    delta = ""
                    if t is not None:
                        mark = (BETTER if t["diff"] > 0 else WORSE) if t["p_holm"] < ALPHA else ""
                        delta = f" ({100 * t['diff']:+.1f}{mark})"
                    text.append(_acc(c) + delta)
                    values += [c["accuracy"], c["ci_low"], c["ci_high"], t["diff"] if t else "",
                               t["p_value"] if t else "", t["p_holm"] if t else ""]
                rows.append(text)
                csv_rows.append(values)
    keys = ("accuracy", "ci_low", "ci_high", "diff_vs_baseline", "p_mcnemar", "p_holm")
    return _write(out, "transfer", ["Model", "Trained on", "Stage"] + [f"on {e}: acc % [95% CI] (Δ pts)"
                                                                        for e in eval_tasks], rows,
                  ["model", "train_task", "stage"] + [f"{e}_{k}" for e in eval_tasks for k in keys], csv_rows,
                  f"Cross-task transfer: every trained checkpoint on every task. Δ: change in accuracy "
                  f"points against the same model's baseline on that task; {BETTER}/{WORSE}: significant "
                  f"after Holm over the model's checkpoints on that task (exact McNemar, alpha {ALPHA}). "
                  f"`multi` was trained on the union of the tasks' training sets.")
