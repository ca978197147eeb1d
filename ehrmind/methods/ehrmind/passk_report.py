"""Pass@k tables and figure, built from gate.json files, the main cells and the
training logs (no regeneration: the samples are stored).

- passk_<model>:       per start (the base model; the suite's primer where
                       passk.primer_steps is set), training task and category:
                       pass@1, pass@k, reliable pass@k, answer entropy, the gate
                       value and decision; the RLVR-only and SFT+RLVR gains over
                       the start on the test split; which of the two scored higher
                       and whether the gate picked it
- passk_cost:          per model x training task, the wall time and generated tokens
                       of the pass@k sampling and of the pipeline the gate did not pick
- passk_vs_rlvr_gain:  a start's pass@k against the gain of RLVR from it, one
                       point per start x model x task x category (task level where
                       the training and test categories differ), with a
                       least-squares line and R² (SciPy); also as a PNG
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ehrmind import tables
from ehrmind.io import read_json
from ehrmind.tables import _num

Grid = dict[tuple[str, str, str], list[dict[str, Any]]]   # (model, task, stage) -> its cells, one per seed
PIPELINES = {"rlvr": ("rlvr",), "sft_rlvr": ("sft", "sft_rlvr"),   # training jobs of each pipeline
             "primer_rlvr": ("primer", "primer_rlvr")}
# A gate's start: the cells it is sampled from, and its RLVR-only stage (its "rlvr" decision).
STARTS = {"base": ("baseline", "rlvr"), "primer": ("primer", "primer_rlvr")}


def start_of(gate: dict[str, Any]) -> tuple[str, str, str]:
    """(start, its cells' stage, its RLVR-only stage); gate files from before the primer are the base's."""
    start = gate["cell"].get("start", "base")
    return (start, *STARTS[start])


def load_gates(paths: list[str]) -> list[dict[str, Any]]:
    gates = []
    for path in paths:
        g = read_json(path)
        for key in ("model", "train_task"):
            if not g.get("cell", {}).get(key):
                raise ValueError(f"{path}: field 'cell.{key}' missing; expected the output of `ehrmind gate`")
        gates.append(g)
    return gates


def load_training(dirs: list[str]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """train_summary.json of each training log dir <model>/<task>/<stage>/seed<S>, keyed by
    (model, task, stage); several seeds add up (the cost of running that stage)."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for d in dirs:
        path = Path(d) / "train_summary.json"
        if not path.exists():
            raise ValueError(f"{d}: no train_summary.json; expected a training log dir <model>/<task>/<stage>/seed<S>")
        model, task, stage = Path(d).parts[-4:-1]
        summary = read_json(path)
        seen = out.setdefault((model, task, stage), {"wall_time_s": 0.0, "generated_tokens": 0})
        seen["wall_time_s"] += summary["wall_time_s"]
        seen["generated_tokens"] += summary.get("generated_tokens", 0)
    return out


def _pts(x: float | None, signed: bool = False) -> str:
    return "–" if x is None else f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def _score(cells: list | None, per_category: str | None = None) -> float | None:
    """The headline metric over seeds; per category, accuracy (the categories' own metric)."""
    if not cells:
        return None
    if per_category is None:
        return tables.value(cells)
    found = [c["per_category"][per_category]["accuracy"] for c in cells if per_category in c["per_category"]]
    return sum(found) / len(found) if found else None


def _gain(grid: Grid, model: str, task: str, stage: str, category: str | None = None,
          start: str = "baseline") -> float | None:
    base, trained = _score(grid.get((model, task, start)), category), _score(grid.get((model, task, stage)), category)
    return None if base is None or trained is None else trained - base


def _verdict(grid: Grid, model: str, task: str, decision: str, rl: str = "rlvr") -> tuple[str, str, dict | None]:
    """Which of the RLVR-only stage `rl` and sft_rlvr scored higher on the test split, and
    whether the gate picked it."""
    a, b = grid.get((model, task, rl)), grid.get((model, task, "sft_rlvr"))
    if a is None or b is None:
        return "–", "not run (gated)" if (a or b) else "–", None
    test = tables.test(a, b)
    if tables.value(a) == tables.value(b):
        return "tie", "tie", test
    better = rl if tables.value(a) > tables.value(b) else "sft_rlvr"
    return better, "yes" if decision == better else "no", test


def _cost(training: dict, model: str, task: str, pipeline: str) -> dict[str, float] | None:
    jobs = [training.get((model, task, stage)) for stage in PIPELINES[pipeline]]
    if any(j is None for j in jobs):
        return None
    return {"wall_time_s": sum(j["wall_time_s"] for j in jobs),
            "generated_tokens": sum(j.get("generated_tokens", 0) for j in jobs)}


def _cost_text(cost: dict[str, float] | None) -> str:
    return "–" if cost is None else f"{cost['wall_time_s']:,.0f} s, {cost['generated_tokens']:,} tok"


def passk_rows(gates: list[dict], grid: Grid, training: dict) -> list[dict[str, Any]]:
    """One record per model x training task (category "all") and per category."""
    records = []
    for g in sorted(gates, key=lambda g: list(STARTS).index(start_of(g)[0])):   # the base's rows first
        m, t = g["cell"]["model"], g["cell"]["train_task"]
        start, cells, rl = start_of(g)
        decision = rl if g["gate"]["decision"] == "rlvr" else "sft_rlvr"
        better, agreed, test = _verdict(grid, m, t, decision, rl)
        skipped = "sft_rlvr" if decision == rl else rl
        skipped_cost = _cost(training, m, t, skipped) if agreed != "not run (gated)" else None
        records.append({"model": m, "start": start, "task": t, "category": "all", **_figures(g),
                        "gate_value": g["gate"]["value"], "threshold": g["gate"]["threshold"],
                        "decision": decision, "rlvr_gain": _gain(grid, m, t, rl, start=cells),
                        "sft_rlvr_gain": _gain(grid, m, t, "sft_rlvr", start=cells), "better": better,
                        "agreed": agreed, "p_rlvr_vs_sft_rlvr": test["p_value"] if test else None,
                        "skipped": skipped, "skipped_cost": skipped_cost, "passk_cost": g.get("sampling_cost")})
        for cat in g["per_category"].values():
            if cat["task"] != t:
                continue   # multi pools the tasks' samples: its categories are the tasks' own rows
            records.append({"model": m, "start": start, "task": t, "category": cat["category"], **_figures(cat),
                            "gate_value": cat["gate_value"],
                            "rlvr_gain": _gain(grid, m, t, rl, cat["category"], start=cells),
                            "sft_rlvr_gain": _gain(grid, m, t, "sft_rlvr", cat["category"], start=cells)})
    return records


def _figures(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("items", "pass_at_1", "pass_at_k", "reliable_pass_at_k", "entropy", "format_rate")
    return {k: summary[k] for k in keys}


def gain_points(gates: list[dict], grid: Grid) -> list[dict[str, Any]]:
    """(a start's pass@k, the gain of RLVR from that start) per start x model x task x category
    where the training categories match the test categories, else per start x model x task."""
    points = []
    for g in gates:
        m, t = g["cell"]["model"], g["cell"]["train_task"]
        start, cells, rl = start_of(g)
        test = grid.get((m, t, rl))
        if test is None or (m, t, cells) not in grid:
            continue   # multi, or the RLVR-only stage not run
        shared = [cat for cat in g["per_category"].values() if cat["category"] in test[0]["per_category"]]
        for cat in shared or [{"category": "all", "pass_at_k": g["pass_at_k"]}]:
            c = None if cat["category"] == "all" else cat["category"]
            points.append({"model": m, "start": start, "task": t, "category": cat["category"],
                           "pass_at_k": cat["pass_at_k"], "rlvr_gain": _gain(grid, m, t, rl, c, start=cells)})
    return points


def _decision_text(r: dict[str, Any]) -> str:
    sign = "<" if r["decision"] == "sft_rlvr" else ">="
    return f"{r['decision']} (gate {sign} {100 * r['threshold']:g} %)"


def _cost_table(records: list[dict[str, Any]], out: Path, writer) -> list[Path]:
    """Wall time and generated tokens: of the diagnostic, and of the pipeline the gate did not pick.
    Kept apart from the other tables: timings differ from run to run."""
    keys = ["model", "task", "decision", "passk_wall_time_s", "passk_generated_tokens", "skipped",
            "skipped_wall_time_s", "skipped_generated_tokens"]
    rows, csv_rows = [], []
    for r in records:
        flat = {**r, **{f"skipped_{k}": v for k, v in (r["skipped_cost"] or {}).items()},
                **{f"passk_{k}": v for k, v in (r["passk_cost"] or {}).items()}}
        rows.append([r["model"], r["task"], r["decision"], _cost_text(r["passk_cost"]),
                     f"{r['skipped']}: {_cost_text(r['skipped_cost'])}" if r["skipped_cost"] else "–"])
        csv_rows.append(["" if flat.get(k) is None else flat[k] for k in keys])
    return writer(out, "passk_cost", ["Model", "Task", "Decision", "Pass@k cost", "Skipped pipeline cost"],
                  rows, keys, csv_rows,
                  "What the gate costs and saves: wall time and generated tokens of the pass@k sampling "
                  "(for multi, of the tasks' samples it pools), and of the training jobs of the pipeline the "
                  "gate did not pick (rlvr: its GRPO job; sft_rlvr: SFT and its GRPO job), measured in audit "
                  "mode; – where it was not run.")


def fit(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Least-squares line of gain on pass@k; R² only where both vary over 3+ points."""
    from scipy.stats import linregress
    xs, ys = [p["pass_at_k"] for p in points], [p["rlvr_gain"] for p in points]
    if len(points) < 3:
        return {"n": len(points), "reason": f"{len(points)} points; a fit needs 3 or more"}
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        which = "pass@k" if len(set(xs)) < 2 else "the RLVR gain"
        return {"n": len(points), "reason": f"{which} is the same at every point"}
    r = linregress(xs, ys)
    return {"n": len(points), "slope": r.slope, "intercept": r.intercept, "r2": r.rvalue ** 2, "p_value": r.pvalue}


def fit_text(f: dict[str, Any]) -> str:
    if "r2" not in f:
        return f"no fit: {f['reason']}"
    return (f"gain = {f['slope']:+.3f} x pass@k {f['intercept']:+.3f}, R² = {f['r2']:.2f} "
            f"(n = {f['n']}, p = {f['p_value']:.3g})")


def write(gates: list[dict], grid: Grid, training: dict, out: Path, writer) -> list[Path]:
    """passk_<model> tables, the points table and the PNG. `writer` is tables._write."""
    from ehrmind import plots
    records = passk_rows(gates, grid, training)
    written: list[Path] = []
    headers = ["Start", "Task", "Category", "Items", "Format %", "pass@1 %", "pass@k %", "reliable pass@k %", "Entropy",
               "Gate value %", "Decision", "RLVR Δ pts", "SFT+RLVR Δ pts", "Better on test", "Gate right?"]
    keys = ["start", "task", "category", "items", "pass_at_1", "pass_at_k", "reliable_pass_at_k", "entropy", "format_rate",
            "gate_value", "threshold", "decision", "rlvr_gain", "sft_rlvr_gain", "better", "agreed",
            "p_rlvr_vs_sft_rlvr"]
    for model in dict.fromkeys(g["cell"]["model"] for g in gates):
        rows, csv_rows = [], []
        for r in (r for r in records if r["model"] == model):
            top = r["category"] == "all"
            verdict = r.get("agreed", "")
            if top and r.get("p_rlvr_vs_sft_rlvr") is not None and verdict in ("yes", "no"):
                verdict += f" (p = {r['p_rlvr_vs_sft_rlvr']:.3g})"
            rows.append([r["start"] if top else "", r["task"] if top else "", r["category"], r["items"], _pts(r["format_rate"]),
                         _pts(r["pass_at_1"]), _pts(r["pass_at_k"]), _pts(r["reliable_pass_at_k"]),
                         _num(r["entropy"], 2), _pts(r["gate_value"]), _decision_text(r) if top else "", _pts(r["rlvr_gain"], True), _pts(r["sft_rlvr_gain"], True),
                         r.get("better", ""), verdict])
            csv_rows.append(["" if r.get(k) is None else r[k] for k in keys])
        written += writer(out, f"passk_{model}", headers, rows, keys, csv_rows,
                          f"Pass@k diagnostic of {model} on each training split and the gate's decision. "
                          f"Start: the checkpoint sampled, the base model (EHRMind's diagnostic) or the primer "
                          f"(this suite's device, passk.primer_steps: the first steps of the SFT warm-up), whose "
                          f"RLVR-only stage is primer_rlvr. "
                          f"Format: share of samples whose answer the scorer could read. Entropy: of the "
                          f"samples' answers, nats, mean over items. Gate value: mean over items of the "
                          f"reliable pass@k where a rule covers the category, else pass@k; below the "
                          f"threshold, SFT runs first (sft_rlvr). multi pools the tasks' samples. Δ: the test "
                          f"split's headline metric minus the start's, in points (per category: accuracy). "
                          f"Gate right?: whether the decision is the stage that scored higher on the test split "
                          f"(p of the paired test between the two, seeds pooled). Costs are in passk_cost.")
    written += _cost_table([r for r in records if r["category"] == "all"], out, writer)
    points = gain_points(gates, grid)
    line = fit(points)
    keys = ["model", "start", "task", "category", "pass_at_k", "rlvr_gain"]
    written += writer(out, "passk_vs_rlvr_gain", ["Model", "Start", "Task", "Category", "pass@k %", "RLVR Δ pts"],
                      [[p["model"], p["start"], p["task"], p["category"], _pts(p["pass_at_k"]),
                        _pts(p["rlvr_gain"], True)] for p in points], keys, [[p[k] for k in keys] for p in points],
                      f"A start's pass@k on the training split against the gain of RLVR from it on the test split "
                      f"(base: rlvr over baseline; primer, this suite's device: primer_rlvr over primer). "
                      f"{fit_text(line)}.")
    png = out / "passk_vs_rlvr_gain.png"
    plots.passk_vs_gain(points, line, fit_text(line), png)
    return written + [png]
