"""What "reproduced" means: a run's cells against the committed reference, statistically.

For every cell (model x task x stage x seed) in both, on the same test items: a paired test of
the headline metric between the run and the reference (exact McNemar for accuracy, else a
paired permutation test; tables.test), Holm-adjusted over all cells, and whether the run's
value lies in the reference's 95 % CI. The verdict is "reproduced within noise" when no cell
differs significantly, else the cells that do. Byte identity of the predictions is reported
apart, with the hardware each side ran on: bf16 kernels (AVX512-BF16/AMX CPUs), the ISA a
kernel dispatches to and the thread count change rounding, so identical bytes hold per
machine kind, not in general.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ehrmind import stats, tables
from ehrmind.io import write_json

ALPHA = 0.05


def _cells(root: Path) -> dict[tuple, list[dict[str, Any]]]:
    paths = sorted(str(p) for p in (root / "cells").glob("*/*/*/seed*/metrics.json"))
    if not paths:
        raise ValueError(f"{root}: no cells/<model>/<task>/<stage>/seed<S>/metrics.json; expected a run's results")
    return tables.group(tables.load_cells(paths), ("model", "task", "stage", "seed"))


def _hardware(cell: dict[str, Any]) -> str:
    d = cell.get("provenance", {}).get("device", {})
    parts = [d.get("cpu_model") or d.get("gpu") or d.get("processor", "?"), cell.get("dtype", "")]
    if d.get("isa"):
        parts.append("ISA " + ",".join(d["isa"]))
    return "; ".join(p for p in parts if p)


def compare(reference: Path, run: Path, out: Path | None = None) -> dict[str, Any]:
    ref, new = _cells(reference), _cells(run)
    shared = sorted(set(ref) & set(new))
    rows = []
    for key in shared:
        a, b = ref[key], new[key]
        t = tables.test(a, b)
        h_ref, h_new = a[0]["headline"], b[0]["headline"]
        same_bytes = (Path(a[0]["_path"]).with_name("predictions.jsonl").read_bytes()
                      == Path(b[0]["_path"]).with_name("predictions.jsonl").read_bytes())
        rows.append({"cell": "/".join(map(str, key)), "metric": h_ref["metric"], "reference": h_ref["value"],
                     "run": h_new["value"], "in_reference_ci": h_ref["ci_low"] <= h_new["value"] <= h_ref["ci_high"],
                     "diff": t["diff"], "p_value": t["p_value"], "test": t["test"], "identical_bytes": same_bytes})
    for row, p in zip(rows, stats.holm([r["p_value"] for r in rows]) if rows else []):
        row["p_holm"], row["significant"] = p, bool(p < ALPHA)
    differing = [r for r in rows if r["significant"]]
    result = {
        "cells_compared": len(rows), "missing_in_run": ["/".join(map(str, k)) for k in sorted(set(ref) - set(new))],
        "verdict": "reproduced within noise" if rows and not differing else
                   "differs significantly" if differing else "nothing to compare",
        "differing": differing, "outside_reference_ci": [r["cell"] for r in rows if not r["in_reference_ci"]],
        "identical_bytes": sum(r["identical_bytes"] for r in rows),
        "hardware": {"reference": _hardware(ref[shared[0]][0]) if shared else "",
                     "run": _hardware(new[shared[0]][0]) if shared else ""},
        "cells": rows}
    if out:
        write_json(out, result)
    return result


def report(result: dict[str, Any]) -> str:
    n = result["cells_compared"]
    lines = [f"Reproduction against the committed reference: {result['verdict'].upper()} "
             f"({n} cells; paired test per cell on the same items, Holm-adjusted, alpha {ALPHA})."]
    for r in result["differing"]:
        lines.append(f"  differs: {r['cell']} {r['metric']} {100 * r['reference']:.1f} -> {100 * r['run']:.1f} "
                     f"({r['test']} p = {r['p_value']:.3g}, Holm {r['p_holm']:.3g})")
    if result["outside_reference_ci"]:
        lines.append(f"  outside the reference's 95 % CI but not significantly different: "
                     f"{', '.join(c for c in result['outside_reference_ci'] if c not in {r['cell'] for r in result['differing']}) or 'none'}")
    if result["missing_in_run"]:
        lines.append(f"  not in this run: {', '.join(result['missing_in_run'])}")
    hw = result["hardware"]
    same_hw = hw["reference"] == hw["run"]
    lines.append(f"Byte identity (separate from the verdict): {result['identical_bytes']} of {n} cells' predictions "
                 f"are byte-identical. Reference ran on: {hw['reference']}; this run on: {hw['run']}"
                 + ("" if same_hw else " (another machine kind: bf16 kernels and ISA dispatch round differently)")
                 + ".")
    return "\n".join(lines)
