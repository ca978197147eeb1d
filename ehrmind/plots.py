"""PNG figures (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def training_curves(history: list[dict[str, Any]], keys: list[str], out: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    present = [k for k in keys if any(k in h for h in history)]
    fig, axes = plt.subplots(1, max(1, len(present)), figsize=(4 * max(1, len(present)), 3), squeeze=False)
    for ax, key in zip(axes[0], present):
        points = [(h["step"], h[key]) for h in history if key in h and "step" in h]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def passk_vs_gain(points: list[dict[str, Any]], line: dict[str, Any], caption: str, out: Path) -> None:
    """Scatter of a start's pass@k against the gain of RLVR from it, one marker per task (hollow:
    the suite's primer start), with the fitted line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    markers = "osD^v<>"
    for i, task in enumerate(dict.fromkeys(p["task"] for p in points)):
        for start in ("base", "primer"):
            mine = [p for p in points if p["task"] == task and p.get("start", "base") == start]
            if mine:
                ax.scatter([100 * p["pass_at_k"] for p in mine], [100 * p["rlvr_gain"] for p in mine],
                           marker=markers[i % len(markers)], alpha=0.8, color=f"C{i}",
                           facecolors="none" if start == "primer" else None,
                           label=task if start == "base" else f"{task} (primer)")
    if "slope" in line:
        ax.axline((0, 100 * line["intercept"]), slope=line["slope"], color="black", linewidth=1)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlim(-5, 105)
    ax.set_xlabel("pass@k of the start on the training split (%)")
    ax.set_ylabel("gain of RLVR from the start, test split (points)")
    ax.set_title(caption, fontsize=8)
    if points:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
