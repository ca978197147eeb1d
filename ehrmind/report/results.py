"""Find and label result files for the report's figures.

Every loader takes files, directories (searched recursively) or glob patterns, so it
reads today's layout (`cells/{model}/{task}/{stage}/metrics.json`) and the one with a
seed level (`.../{stage}/seed{S}/metrics.json`) alike. A cell's labels come from
metrics["cell"] (model, task, stage, and seed and train_task where present), never from
the path; only training logs, which carry no labels, are labelled by their path.
"""
from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any, Iterable

from ehrmind.io import read_json, read_jsonl

SEED_DIR = re.compile(r"^seed(\d+)$")
STAGE_ORDER = ("baseline", "sft", "rlvr", "sft_rlvr", "primer", "primer_rlvr")


def expand(args: Iterable[str | Path], name: str) -> list[Path]:
    """Files called `name` from arguments that are such files, directories (searched
    recursively) or glob patterns (`**` allowed). Order: as given, then sorted; no duplicates.
    A pattern or path that yields nothing is an error naming it."""
    found: list[Path] = []
    for arg in args:
        text = str(arg)
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True)) if glob.has_magic(text) else [Path(text)]
        files: list[Path] = []
        for p in matches:
            if p.is_dir():
                files += sorted(p.rglob(name))
            elif p.is_file() and p.name == name:
                files.append(p)
        if not files:
            raise FileNotFoundError(f"{text}: no {name} found (expected a {name} file, a folder holding some, "
                                    f"or a glob matching them)")
        found += files
    return list(dict.fromkeys(found))


def _seed(cell: dict[str, Any], path: Path, fallback: Any = None) -> int | None:
    if cell.get("seed") is not None:
        return int(cell["seed"])
    for part in reversed(path.parts[:-1]):
        m = SEED_DIR.match(part)
        if m:
            return int(m.group(1))
    return None if fallback is None else int(fallback)


def load_cells(args: Iterable[str | Path], predictions: bool = False) -> list[dict[str, Any]]:
    """metrics.json files as records {model, task, stage, seed, train_task, metrics, path}
    (and `predictions`, the rows of predictions.jsonl beside each, when asked)."""
    records = []
    for path in expand(args, "metrics.json"):
        metrics = read_json(path)
        cell = metrics.get("cell") or {}
        missing = [k for k in ("model", "task", "stage") if not cell.get(k)]
        if missing:
            raise ValueError(f"{path}: metrics.json has no cell.{missing[0]}; expected the labels written by "
                             f"`ehrmind evaluate --cell`")
        rec = {"model": cell["model"], "task": cell["task"], "stage": cell["stage"],
               "seed": _seed(cell, path, metrics.get("seed")), "train_task": cell.get("train_task"),
               "metrics": metrics, "path": path}
        if predictions:
            rec["predictions"] = read_jsonl(path.with_name("predictions.jsonl"))
        records.append(rec)
    return records


def load_training_logs(args: Iterable[str | Path]) -> list[dict[str, Any]]:
    """train_log.jsonl files as records {model, task, stage, seed, history, path}, labelled
    by the layout `training/{model}/{task}/{stage}[/seed{S}]/train_log.jsonl`."""
    records = []
    for path in expand(args, "train_log.jsonl"):
        parts = path.parts[:-1]
        seed = None
        m = SEED_DIR.match(parts[-1]) if parts else None
        if m:
            seed, parts = int(m.group(1)), parts[:-1]
        if len(parts) < 3:
            raise ValueError(f"{path}: cannot read model/task/stage from the path; expected "
                             f"training/<model>/<task>/<stage>[/seed<S>]/train_log.jsonl")
        model, task, stage = parts[-3:]
        records.append({"model": model, "task": task, "stage": stage, "seed": seed,
                        "history": read_jsonl(path), "path": path})
    return records


def ordered(values: Iterable[str], order: tuple[str, ...] = STAGE_ORDER) -> list[str]:
    """Distinct values, those in `order` first in that order, the rest as they came."""
    distinct = list(dict.fromkeys(values))
    return [v for v in order if v in distinct] + [v for v in distinct if v not in order]
