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
