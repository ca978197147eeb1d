"""`ehrmind prefetch`: download, ahead of a run, everything its config names on a hub, so that
the run itself (on compute nodes without internet) works with HF_HUB_OFFLINE=1.

What is fetched, and where it goes:
  models:    every hub id under `models:` (not embedded:/tiny: specs, not local paths), with
             huggingface_hub.snapshot_download into the hub cache ($HF_HUB_CACHE, default
             $HF_HOME/hub, default ~/.cache/huggingface/hub); weights as safetensors where the
             repository has them, not its duplicate formats (original/*.pth, .bin, flax, tf, onnx);
  medcalc:   `source` when it is a hub id, at its `revision`, every split, with
             datasets.load_dataset into the hub cache and the datasets cache ($HF_DATASETS_CACHE);
  trec_ct:   with `source: ir_datasets`, `dataset_id` through ir_datasets: documents, queries
             and qrels iterated once (which downloads them and builds the document store) into
             $IR_DATASETS_HOME (default ~/.ir_datasets);
  ehrshot:   nothing (credentialed; `path` is a local copy);
  tjh_mortality, mimic4_mortality, mimic4_readmission: nothing (TJH's release and the MIMIC-IV
             tables are local files under `path`; MIMIC-IV is credentialed).
Gated models (Llama) need the licence accepted on the hub and HF_TOKEN set.

Run with HF_HUB_OFFLINE=1, it downloads no hub file and checks that the hub items are cached
(a missing one is an error naming it). ir_datasets has no offline switch: where its files are
missing it fetches them if the network lets it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Repository files a transformers/vLLM load never reads (duplicate weight formats).
IGNORE = ["original/*", "*.pth", "*.msgpack", "*.h5", "*.ot", "flax_model*", "tf_model*", "rust_model*",
          "onnx/*", "*.onnx", "coreml/*", "*.gguf"]


class PrefetchError(RuntimeError):
    """A config names something prefetch cannot fetch, or a download failed."""


@dataclass(frozen=True)
class Item:
    kind: str                  # model, dataset or ir_datasets
    id: str
    revision: str | None
    needed_by: str             # the config key that names it

    def __str__(self) -> str:
        return f"{self.kind} {self.id}" + (f"@{self.revision}" if self.revision else "") + f" ({self.needed_by})"


def _is_local(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or Path(spec).expanduser().exists()


def _medcalc(block: dict[str, Any]) -> list[Item]:
    from ehrmind.tasks.medcalc.source import is_local
    source = str(block.get("source") or "embedded")
    if source == "embedded" or is_local(source) or (block.get("train_path") and block.get("test_path")):
        return []
    return [Item("dataset", source, block.get("revision"), "tasks.medcalc.source")]


def _trec_ct(block: dict[str, Any]) -> list[Item]:
    from ehrmind.tasks.trec_ct import DEFAULT_DATASET_ID, SOURCES
    source = str(block.get("source") or "embedded")
    if source not in SOURCES:
        raise PrefetchError(f"tasks.trec_ct.source: {source!r} is not a source prefetch knows; "
                            f"expected one of {', '.join(SOURCES)}")
    if source != "ir_datasets":
        return []
    return [Item("ir_datasets", block.get("dataset_id") or DEFAULT_DATASET_ID, None, "tasks.trec_ct.dataset_id")]


def _local_only(task: str, sources: tuple[str, ...], why: str):
    """A task whose data are local files only: nothing to fetch, but the source is checked."""
    def items(block: dict[str, Any]) -> list[Item]:
        source = str(block.get("source") or "embedded")
        if source not in sources:
            raise PrefetchError(f"tasks.{task}.source: {source!r} is not a source prefetch knows; "
                                f"expected one of {', '.join(sources)} ({why})")
        return []
    return items


def _tasks() -> dict[str, Any]:
    from ehrmind.tasks.ehr.cohort import SOURCES as EHR_SOURCES
    from ehrmind.tasks.ehrshot import SOURCES as EHRSHOT_SOURCES
    return {"medcalc": _medcalc, "trec_ct": _trec_ct,
            "ehrshot": _local_only("ehrshot", EHRSHOT_SOURCES, "all local: EHRSHOT is credentialed"),
            **{task: _local_only(task, EHR_SOURCES, "all local files")
               for task in ("tjh_mortality", "mimic4_mortality", "mimic4_readmission")}}


def plan(cfg: dict[str, Any]) -> list[Item]:
    """What a (validated) run config needs from the network, in config order, each once."""
    items = []
    for name, spec in cfg.get("models", {}).items():
        if spec.partition(":")[0] in ("embedded", "tiny") or _is_local(spec):
            continue
        items.append(Item("model", spec, None, f"models.{name}"))
    tasks = _tasks()
    for task, block in cfg.get("tasks", {}).items():
        if task not in tasks:
            raise PrefetchError(f"tasks.{task}: prefetch does not know what this task downloads; "
                                f"add it to _tasks() in {__file__} (known: {', '.join(tasks)})")
        items += tasks[task](block or {})
    return list(dict.fromkeys(items))


def _size(path: Path) -> int:
    """Bytes under a folder, links followed (the hub cache links snapshots to blobs)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _fetch_model(item: Item, offline: bool) -> tuple[Path, str]:
    from huggingface_hub import list_repo_files, snapshot_download
    ignore = list(IGNORE)
    if not offline:
        files = list_repo_files(item.id, revision=item.revision)
        if any(f.endswith(".safetensors") for f in files):
            ignore.append("*.bin")
    path = Path(snapshot_download(repo_id=item.id, revision=item.revision, ignore_patterns=ignore))
    return path, ""


def _fetch_dataset(item: Item, offline: bool) -> tuple[Path, str]:
    from datasets import load_dataset
    splits = load_dataset(item.id, revision=item.revision)
    files = {Path(f["filename"]) for split in splits.values() for f in split.cache_files}
    rows = ", ".join(f"{name} {len(split)} rows" for name, split in splits.items())
    return (files.pop().parent if files else Path(".")), rows


def _fetch_ir_datasets(item: Item, offline: bool) -> tuple[Path, str]:
    import ir_datasets
    ds = ir_datasets.load(item.id)
    counts = {}
    for part in ("docs", "queries", "qrels"):
        if getattr(ds, f"has_{part}", lambda: True)():
            counts[part] = sum(1 for _ in getattr(ds, f"{part}_iter")())
    home = Path(os.environ.get("IR_DATASETS_HOME") or Path.home() / ".ir_datasets")
    return home / item.id.split("/")[0], ", ".join(f"{n} {k}" for k, n in counts.items())


FETCH = {"model": _fetch_model, "dataset": _fetch_dataset, "ir_datasets": _fetch_ir_datasets}


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def fetch(items: list[Item], dry_run: bool = False) -> list[dict[str, Any]]:
    """Download (or, with HF_HUB_OFFLINE=1, check) each item; print and return what it holds."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    done = []
    if not items:
        print("nothing to fetch: the config names no hub model and no downloadable dataset")
    for item in items:
        if dry_run:
            print(f"would fetch {item}")
            done.append({"item": str(item)})
            continue
        try:
            path, detail = FETCH[item.kind](item, offline)
        except ImportError as exc:
            raise PrefetchError(f"{item}: {exc}") from None
        except Exception as exc:   # hub errors (gated, not found, offline and not cached), network
            hint = (" (HF_HUB_OFFLINE=1: not in the cache; run `make prefetch` where the hub is reachable)"
                    if offline else "")
            raise PrefetchError(f"{item}: {type(exc).__name__}: {exc}{hint}") from exc
        size = _size(path) if path.exists() else 0
        verb = "cached" if offline else "fetched"
        print(f"{verb} {item}: {_human(size)} in {path}" + (f" ({detail})" if detail else ""))
        done.append({"item": str(item), "path": str(path), "bytes": size, "detail": detail})
    return done


def run(config_path: str, dry_run: bool = False) -> list[dict[str, Any]]:
    from ehrmind import config
    return fetch(plan(config.load(config_path)), dry_run)
