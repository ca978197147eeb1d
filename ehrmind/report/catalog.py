"""Where each table and figure sits in the report: category, subcategory, labels and the
caption file (workflow/report/<caption>). workflow/rules/report_common.smk wraps every table and
figure with Snakemake's report() flag from these entries, so a new table lands in its
category by its name alone (`eagrl_*` under EAG-RL; a name not known here under Other).

Snakemake's report lists categories in alphabetical order; the numbers keep the order a
reviewer reads in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

MAIN, TASK, TRANSFER, PASSK, TRAINING, EAGRL, RUN, OTHER = (
    "1 Main results", "2 Per task", "3 Transfer", "4 Pass@k gate", "5 Training", "6 EAG-RL", "7 Run",
    "8 Other")
CATEGORIES = (MAIN, TASK, TRANSFER, PASSK, TRAINING, EAGRL, RUN, OTHER)
FORMATS = {".html": "view", ".csv": "CSV", ".tex": "LaTeX", ".md": "Markdown", ".svg": "SVG", ".png": "PNG",
           ".pdf": "PDF"}


def _entry(category: str, subcategory: str, result: str, caption: str, path: str) -> dict[str, Any]:
    return {"category": category, "subcategory": subcategory, "caption": caption,
            "labels": {"result": result, "file": FORMATS.get(Path(path).suffix, Path(path).suffix.lstrip("."))}}


def entry(path: str | Path) -> dict[str, Any]:
    """Report placement of a table (tables/<name>.{md,tex,csv}, its page report/pages/<name>.html)
    or a figure (report/figures/<name>.svg, tables/passk_vs_rlvr_gain.png) from its file name."""
    p = str(path)
    name = Path(p).stem
    if name == "main":
        return _entry(MAIN, "Accuracy", "Main table: accuracy by model and stage", "main.rst", p)
    if name == "main_seeds":
        return _entry(MAIN, "Accuracy", "Main table, one row per seed", "main_seeds.rst", p)
    if name == "significance":
        return _entry(MAIN, "Significance tests", "All paired comparisons", "significance.rst", p)
    if name == "classification":
        return _entry(MAIN, "Classification metrics", "Balanced accuracy, macro-F1, kappa, AUROC",
                      "classification.rst", p)
    if name.startswith("per_category_"):
        task = name[len("per_category_"):]
        return _entry(TASK, task, "Accuracy per category (table)", "per_category.rst", p)
    if name.startswith("stages_"):
        task = name[len("stages_"):]
        return _entry(TASK, task, "Accuracy per category and stage (figure)", "stages.rst", p)
    if name.startswith("roc_pr_"):
        task = name[len("roc_pr_"):]
        return _entry(TASK, task, "ROC and precision-recall curves", "roc_pr.rst", p)
    if name == "transfer":
        if Path(p).suffix == ".svg":
            return _entry(TRANSFER, "Transfer matrix", "Heatmap of the change against the baseline",
                          "transfer_heatmap.rst", p)
        return _entry(TRANSFER, "Transfer matrix", "Every checkpoint on every task (table)", "transfer.rst", p)
    if name == "passk_cost":
        return _entry(PASSK, "Cost", "What the diagnostic costs and saves", "passk_cost.rst", p)
    if name == "passk_vs_rlvr_gain":
        what = "figure" if Path(p).suffix in (".png", ".svg", ".pdf") else "table"
        return _entry(PASSK, "Pass@k against the RLVR gain", f"Pass@k vs RLVR-only gain ({what})",
                      "passk_vs_rlvr_gain.rst", p)
    if name.startswith("passk_"):
        model = name[len("passk_"):]
        return _entry(PASSK, "Diagnostic and gate", f"Pass@k and the gate's decision: {model}", "passk_model.rst", p)
    if name.startswith("training_"):
        model = name[len("training_"):]
        return _entry(TRAINING, "GRPO training curves", f"All GRPO jobs of {model}", "training.rst", p)
    if name == "ehr":
        return _entry(EAGRL, "Structured-EHR tasks", "AUROC and AUPRC with the expert's row", "ehr.rst", p)
    if name == "robustness":
        return _entry(EAGRL, "Robustness to the feature order", "Headline metric with the feature order shuffled",
                      "robustness.rst", p)
    if name.startswith("eagrl"):
        return _entry(EAGRL, "EAG-RL method", name, "eagrl.rst", p)
    if name == "run":
        return _entry(RUN, "Configuration and versions", "Run configuration, package versions, commit, device",
                      "run.rst", p)
    return _entry(OTHER, "Tables", name, "other.rst", p)


def binary_tasks(tasks: list[str]) -> list[str]:
    """The tasks with two classes: their predictions.jsonl carry p_positive and gold_label."""
    from ehrmind.tasks import get_task
    return [t for t in tasks if len(getattr(get_task(t), "labels", ())) == 2]


def figure_names(tasks: list[str], models: list[str], binary: list[str], transfer: bool, grpo: bool,
                 ext: str = "svg") -> list[str]:
    """File names of the figures `ehrmind figures` draws for a run."""
    names = [f"stages_{t}.{ext}" for t in tasks] + [f"roc_pr_{t}.{ext}" for t in binary]
    names += [f"transfer.{ext}"] if transfer else []
    names += [f"training_{m}.{ext}" for m in models] if grpo else []
    return names
