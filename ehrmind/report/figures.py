"""The paper's figures, built from result files only (metrics.json and predictions.jsonl,
tables/transfer.csv, training logs), with matplotlib's Agg backend.

- stages_<task>:   accuracy per category and overall, one point per stage with its 95 %
                   Wilson interval, one panel per model (seeds pooled: their items summed)
- roc_pr_<task>:   ROC and precision-recall curves of a binary task from p_positive and
                   gold_label, one curve per stage, one row of panels per model
- transfer:        the transfer matrix as a heatmap of the change against the model's
                   baseline (points), read from tables/transfer.csv; '*' marks Holm-significant
                   cells, a frame the checkpoint's own task
- training_<model>: every GRPO job of a model on one page: mean reward, accuracy reward,
                   share of groups with zero reward spread, token entropy, per step

Print-safe: every series differs by marker and line style as well as colour (Okabe-Ito
palette), the heatmap states its values in the cells. Reproducible: SVG ids are salted
with a fixed string and no date or version is written, so rebuilding a deleted figure
gives the same bytes (`save`). Each builder returns the Figure; `text_overlaps` checks
that no two labels collide.
"""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ehrmind.io import atomic_path  # noqa: E402
from ehrmind.report.results import STAGE_ORDER, load_cells, load_training_logs, ordered  # noqa: E402

# Okabe-Ito: distinguishable with colour-vision deficiency; black first.
COLORS = ("#000000", "#E69F00", "#0072B2", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#999999")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
RC = {
    "svg.hashsalt": "ehrmind",     # fixed ids (clip paths, images) instead of random ones
    "svg.fonttype": "path",        # glyphs as paths: the same picture without the fonts installed
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 5,
    "figure.dpi": 100,
}
# No creation date, no software version: the bytes depend on the data and matplotlib's drawing only.
METADATA = {"svg": {"Date": None, "Creator": None}, "png": {"Software": None},
            "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}}
GRPO_KEYS = (   # (log key, panel title, y label)
    ("reward", "Mean reward", "rule reward (mean of rollouts)"),
    ("rewards/accuracy/mean", "Accuracy of rollouts", "share of rollouts correct (%)"),
    ("frac_reward_zero_std", "Groups without reward spread", "share of prompt groups (%)"),
    ("entropy", "Token entropy", "entropy (nats per token)"),
    ("rewards/r_att/mean", "Expert alignment (EAG-RL)", "R_att: Jaccard with the expert's top-k"),
)
PERCENT_KEYS = {"rewards/accuracy/mean", "frac_reward_zero_std"}


def style(i: int, line: bool = True) -> dict[str, Any]:
    """Series i: colour, marker, line style and (every other series) an open marker."""
    s = {"color": COLORS[i % len(COLORS)], "marker": MARKERS[i % len(MARKERS)],
         "markerfacecolor": "white" if (i // len(COLORS)) % 2 or i % 2 else COLORS[i % len(COLORS)]}
    if line:
        s["linestyle"] = LINESTYLES[i % len(LINESTYLES)]
    return s


def save(fig: Figure, path: str | Path) -> Path:
    """Write `fig` (format from the suffix: svg, png, pdf) atomically, without dates or
    versions, and close it."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in METADATA:
        raise ValueError(f"{path}: figures are written as .svg, .png or .pdf")
    with matplotlib.rc_context(RC), atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, metadata=METADATA[fmt], dpi=150 if fmt == "png" else None)
    plt.close(fig)
    return path


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(RC):
        return plt.figure(figsize=(width, height), layout="constrained")


def _pooled(summaries: list[dict[str, Any]]) -> dict[str, float] | None:
    """Accuracy and Wilson 95 % interval of several runs' items together (seeds pooled)."""
    from ehrmind.stats import wilson_interval
    n = sum(s["n"] for s in summaries)
    if not n:
        return None
    k = sum(s.get("n_correct", round(s["accuracy"] * s["n"])) for s in summaries)
    low, high = wilson_interval(k, n)
    return {"accuracy": k / n, "ci_low": low, "ci_high": high, "n": n}


# --- stage comparison per task ---

def stage_comparison(cells: list[dict[str, Any]] | Iterable[str | Path], task: str) -> Figure:
    """Accuracy per category (and `all`) of each stage, 95 % Wilson intervals, one panel per
    model. `cells`: records from results.load_cells, or metrics.json paths / folders / globs."""
    records = [c for c in _records(cells) if c["task"] == task and not c.get("train_task")]
    if not records:
        raise ValueError(f"stage comparison: no cells of task {task!r}")
    models = list(dict.fromkeys(c["model"] for c in records))
    stages = ordered(c["stage"] for c in records)
    categories = sorted({k for c in records for k in c["metrics"].get("per_category", {})})
    columns = categories + ["all"]
    width = max(6.4, 0.8 * len(columns) * max(1.0, len(stages) / 3) + 1.6)
    # Upright on two lines where the longest name fits its column (about 0.075 in a character at
    # 8 pt), else vertical on one line (and the figure taller): rotated labels never collide.
    upright = 0.075 * max(map(len, columns)) + 0.1 <= (width - 1.6) / len(columns)
    extra = 0.0 if upright else 0.07 * (max(map(len, columns)) + 7)
    fig = _figure(width, 2.5 * len(models) + 0.9 + extra)
    axes = fig.subplots(len(models), 1, squeeze=False, sharex=True)[:, 0]
    offsets = [0.0] if len(stages) == 1 else [(-0.32 + 0.64 * i / (len(stages) - 1)) for i in range(len(stages))]
    n_of: dict[str, int] = {}
    for ax, model in zip(axes, models):
        mine = [c for c in records if c["model"] == model]
        seeds = sorted({c["seed"] for c in mine if c["seed"] is not None})
        for i, stage in enumerate(stages):
            runs = [c["metrics"] for c in mine if c["stage"] == stage]
            if not runs:
                continue
            xs, ys, lo, hi = [], [], [], []
            for j, col in enumerate(columns):
                parts = runs if col == "all" else [r["per_category"][col] for r in runs if col in r["per_category"]]
                s = _pooled(parts)
                if s is None:
                    continue
                n_of[col] = max(n_of.get(col, 0), s["n"] // max(1, len(parts)))
                xs.append(j + offsets[i])
                ys.append(100 * s["accuracy"])
                lo.append(max(0.0, 100 * (s["accuracy"] - s["ci_low"])))   # rounding can give -1e-15
                hi.append(max(0.0, 100 * (s["ci_high"] - s["accuracy"])))
            ax.errorbar(xs, ys, yerr=[lo, hi], capsize=2.5, elinewidth=0.9, label=stage,
                        **style(i, line=False), linestyle="none")
        pooled = f" (seeds {', '.join(map(str, seeds))} pooled)" if len(seeds) > 1 else ""
        ax.set_title(f"{task}: {model}{pooled}", loc="left")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-4, 104)
        ax.axvline(len(categories) - 0.5, color="grey", linewidth=0.8)
    axes[-1].set_xticks(range(len(columns)))
    axes[-1].set_xticklabels([f"{c}\n(n={n_of.get(c, 0)})" if upright else f"{c} (n={n_of.get(c, 0)})"
                              for c in columns], rotation=0 if upright else 90)
    axes[-1].set_xlabel("category (n: test items per run)")
    axes[-1].set_xlim(-0.6, len(columns) - 0.4)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=len(stages),
               title="stage (point: accuracy; bar: 95 % Wilson interval)")
    return fig


def _records(cells, predictions: bool = False) -> list[dict[str, Any]]:
    cells = list(cells)
    if cells and isinstance(cells[0], dict):
        return cells
    return load_cells(cells, predictions=predictions)


# --- ROC and precision-recall of a binary task ---

def roc_pr(cells: list[dict[str, Any]] | Iterable[str | Path], task: str) -> Figure:
    """ROC and precision-recall curves of each stage from predictions.jsonl's p_positive and
    gold_label, one row per model (seeds pooled). AUROC and average precision in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve
    records = [c for c in _records(cells, predictions=True) if c["task"] == task and not c.get("train_task")]
    if not records:
        raise ValueError(f"ROC/PR: no cells of task {task!r}")
    models = list(dict.fromkeys(c["model"] for c in records))
    stages = ordered(c["stage"] for c in records)
    fig = _figure(9.0, 3.6 * len(models) + 0.8)
    axes = fig.subplots(len(models), 2, squeeze=False)
    for (ax_roc, ax_pr), model in zip(axes, models):
        prevalence = None
        for i, stage in enumerate(stages):
            rows = [p for c in records if c["model"] == model and c["stage"] == stage for p in c["predictions"]]
            if not rows:
                continue
            missing = [p.get("id") for p in rows if p.get("p_positive") is None or p.get("gold_label") is None]
            if missing:
                raise ValueError(f"ROC/PR: task {task}, {model}/{stage}: item {missing[0]} has no p_positive or "
                                 f"gold_label (a binary task's predictions.jsonl holds both)")
            y = [int(p["gold_label"]) for p in rows]
            score = [float(p["p_positive"]) for p in rows]
            if set(y) - {0, 1}:
                raise ValueError(f"ROC/PR: task {task} is not binary (gold labels {sorted(set(y))})")
            prevalence = sum(y) / len(y)
            st = style(i)
            every = max(1, len(set(score)) // 8)
            if len(set(y)) < 2:
                continue   # one class only: no curve; said below
            fpr, tpr, _ = roc_curve(y, score)
            prec, rec, _ = precision_recall_curve(y, score)
            ax_roc.plot(fpr, tpr, markevery=every, label=f"{stage}: AUROC "
                        f"{roc_auc_score(y, score):.3f}", **st)
            ax_pr.plot(rec, prec, drawstyle="steps-post", markevery=every, label=f"{stage}: AP "
                       f"{average_precision_score(y, score):.3f}", **st)
        ax_roc.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=(0, (2, 2)), label="chance")
        if prevalence is not None:
            ax_pr.axhline(prevalence, color="grey", linewidth=0.8, linestyle=(0, (2, 2)),
                          label=f"chance (prevalence {100 * prevalence:.0f} %)")
        one_class = prevalence in (0.0, 1.0)
        for ax, title, xl, yl in ((ax_roc, "ROC", "false positive rate (1 − specificity)",
                                   "true positive rate (sensitivity)"),
                                  (ax_pr, "Precision-recall", "recall (sensitivity)", "precision (PPV)")):
            ax.set_title(f"{task}: {model}, {title}", loc="left")
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_aspect("equal")
            if one_class:
                ax.text(0.5, 0.5, "undefined: the test labels\nare of one class", ha="center", va="center",
                        transform=ax.transAxes)
            ax.legend(loc="lower right" if ax is ax_roc else "best", fontsize=7)
    return fig


# --- transfer heatmap ---

def transfer_heatmap(table: str | Path, alpha: float = 0.05) -> Figure:
    """tables/transfer.csv as a heatmap: rows training task x stage (a panel per model), columns
    evaluation tasks, colour and text the change in accuracy points against the model's
    baseline; '*' where the Holm-adjusted McNemar p is below alpha; framed: the own task."""
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{table}: no rows")
    suffix = "_diff_vs_baseline"
    tasks = [h[: -len(suffix)] for h in rows[0] if h.endswith(suffix)]
    if not tasks:
        raise ValueError(f"{table}: no <task>{suffix} columns; expected tables/transfer.csv")
    models = list(dict.fromkeys(r["model"] for r in rows))
    values = [abs(float(r[f"{t}{suffix}"])) for r in rows for t in tasks if r.get(f"{t}{suffix}", "") != ""]
    vmax = max(10.0, 10 * math.ceil(100 * max(values, default=0) / 10))
    cmap, norm = plt.get_cmap("RdBu"), TwoSlopeNorm(0, -vmax, vmax)
    heights = [max(2, sum(r["model"] == m for r in rows)) for m in models]   # a one-row panel still has room
    fig = _figure(2.2 + 1.45 * len(tasks) + 1.0, 0.32 * sum(heights) + 0.75 * len(models) + 0.9)
    axes = fig.subplots(len(models), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, model in zip(axes, models):
        mine = [r for r in rows if r["model"] == model]
        grid = np.full((len(mine), len(tasks)), np.nan)
        for y, r in enumerate(mine):
            for x, t in enumerate(tasks):
                v = r.get(f"{t}{suffix}", "")
                if v != "":
                    grid[y, x] = 100 * float(v)
        mesh = ax.pcolormesh(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, edgecolors="white", linewidth=1)
        for y, r in enumerate(mine):
            for x, t in enumerate(tasks):
                v = grid[y, x]
                if np.isnan(v):
                    ax.text(x + 0.5, y + 0.5, "–", ha="center", va="center", fontsize=8)
                    continue
                p = r.get(f"{t}_p_holm", "")
                sig = p != "" and float(p) < alpha
                r_, g_, b_, _ = cmap(norm(v))
                dark = 0.2126 * r_ + 0.7152 * g_ + 0.0722 * b_ < 0.45
                ax.text(x + 0.5, y + 0.5, f"{v:+.1f}{'*' if sig else ''}", ha="center", va="center",
                        fontsize=8, fontweight="bold" if sig else "normal", color="white" if dark else "black")
                if r["train_task"] == t:
                    ax.add_patch(Rectangle((x + 0.04, y + 0.06), 0.92, 0.88, fill=False, linewidth=1.6,
                                           edgecolor="black"))
        seed = [f", seed {r['seed']}" if r.get("seed") not in (None, "") else "" for r in mine]
        ax.set_yticks([y + 0.5 for y in range(len(mine))],
                      [f"{r['train_task']} / {r['stage']}{s}" for r, s in zip(mine, seed)])
        ax.set_xticks([x + 0.5 for x in range(len(tasks))], tasks)
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
        ax.grid(False)
        ax.invert_yaxis()
        ax.set_title(f"{model}: evaluated on", loc="left")
    fig.supylabel("trained on / stage", fontsize=9)
    fig.colorbar(mesh, ax=list(axes), label="Δ accuracy vs the model's baseline (points)", shrink=0.9)
    return fig


# --- GRPO training curves ---

def training_curves(logs: list[dict[str, Any]] | Iterable[str | Path], model: str) -> Figure:
    """Every GRPO job of `model` (logs with a reward) on one page, a panel per quantity.
    `logs`: records from results.load_training_logs, or train_log.jsonl paths / folders / globs."""
    logs = list(logs)
    records = logs if logs and isinstance(logs[0], dict) else load_training_logs(logs)
    jobs = [r for r in records if r["model"] == model and any("reward" in h for h in r["history"])]
    if not jobs:
        raise ValueError(f"training curves: no GRPO log (one with a reward) of model {model!r}")
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    jobs.sort(key=lambda r: (r["task"], rank.get(r["stage"], len(rank)), r["stage"], r["seed"] or 0))
    panels = [k for k in GRPO_KEYS if any(k[0] in h for job in jobs for h in job["history"])]
    fig = _figure(9.0, 3.2 * ((len(panels) + 1) // 2))
    axes = fig.subplots((len(panels) + 1) // 2, 2, squeeze=False).ravel()
    if len(panels) % 2:
        axes[-1].set_visible(False)
    for i, job in enumerate(jobs):
        label = f"{job['task']} / {job['stage']}" + (f" / seed {job['seed']}" if job["seed"] is not None else "")
        steps = [h for h in job["history"] if "step" in h and "reward" in h]
        for ax, (key, _, _) in zip(axes, panels):
            points = [(h["step"], h[key]) for h in steps if h.get(key) is not None]
            if not points:
                continue
            scale = 100 if key in PERCENT_KEYS else 1
            ax.plot([p[0] for p in points], [scale * p[1] for p in points], label=label,
                    markevery=max(1, len(points) // 10), **style(i))
    steps = [h["step"] for job in jobs for h in job["history"] if "step" in h and "reward" in h]
    for ax, (key, title, ylabel) in zip(axes, panels):
        ax.set_title(title, loc="left")
        ax.set_xlabel("GRPO step")
        ax.set_ylabel(ylabel)
        if key in PERCENT_KEYS:
            ax.set_ylim(-4, 104)
        if steps:   # whole steps only, and room around a single one
            ax.set_xlim(min(steps) - 0.5, max(steps) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.ticklabel_format(axis="y", useOffset=False)   # no "+1.076e1" above the axis
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)),
               title=f"{model}: training task / stage")
    return fig


# --- checks and the CLI's entry ---

def text_overlaps(fig: Figure, pad: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of visible texts (titles, axis and tick labels, legend entries, annotations)
    whose drawn boxes intersect, and texts that leave the figure ('<figure edge>')."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = list(fig.texts)
    for legend in fig.legends:
        texts += [*legend.get_texts(), legend.get_title()]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = min(lo, hi), max(lo, hi)
            for loc, tick in zip(axis.get_majorticklocs(), axis.get_major_ticks()):
                if lo - 1e-9 <= loc <= hi + 1e-9:
                    texts += [t for t in (tick.label1, tick.label2) if t.get_visible()]
        legend = ax.get_legend()
        if legend is not None:
            texts += [*legend.get_texts(), legend.get_title()]
    boxes = []
    for t in texts:
        if t.get_visible() and t.get_text().strip():
            boxes.append((t.get_text(), t.get_window_extent(renderer).expanded(1, 1).padded(-pad)))
    found = []
    width, height = fig.bbox.width, fig.bbox.height
    for i, (a, box) in enumerate(boxes):
        if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1:
            found.append((a, "<figure edge>"))
        for b, other in boxes[i + 1:]:
            if box.overlaps(other):
                found.append((a, b))
    return found


def write(outputs: list[str | Path], cells: list[str | Path] = (), transfer_table: str | Path | None = None,
          training: list[str | Path] = ()) -> list[Path]:
    """Write each named figure; the file name says which: stages_<task>.svg, roc_pr_<task>.svg,
    transfer.svg, training_<model>.svg (or .png / .pdf)."""
    cell_records = load_cells(cells, predictions=True) if cells else []
    logs = load_training_logs(training) if training else []
    written = []
    for out in map(Path, outputs):
        stem = out.stem
        if stem.startswith("stages_"):
            fig = stage_comparison(cell_records, stem[len("stages_"):])
        elif stem.startswith("roc_pr_"):
            fig = roc_pr(cell_records, stem[len("roc_pr_"):])
        elif stem == "transfer":
            if transfer_table is None:
                raise ValueError(f"{out}: the transfer heatmap needs --transfer-table (tables/transfer.csv)")
            fig = transfer_heatmap(transfer_table)
        elif stem.startswith("training_"):
            fig = training_curves(logs, stem[len("training_"):])
        else:
            raise ValueError(f"{out}: unknown figure; names are stages_<task>, roc_pr_<task>, transfer, "
                             f"training_<model>")
        written.append(save(fig, out))
    return written
