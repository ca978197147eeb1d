"""EAG-RL's tables, from the eagrl cells (ehrmind evaluate --method eagrl) and training logs.

- eagrl:           the paper's main layout: rows model x method (the expert, the prompting
                   baselines, the stage-1 start, stage 2, the RL baselines, the ablations),
                   columns task x {AUROC, AUPRC} as mean ± sd over bootstrap resamples of the test
                   patients (seeds pooled), with parse failures and mean R_att; a mark where a
                   method's AUROC differs from the stage-1 start's (eag_sft; DeLong with one seed,
                   else a paired permutation test, seeds pooled; Holm over the model's methods)
- eagrl_ablation:  EAG-RL against each ablation (without stage 1, without stage 2 = eag_sft,
                   without R_att, without the adaptive clip), ΔAUROC with the test, the mean R_att
                   of the training rollouts at the first and last step, and AUROC on test records
                   with a share of the feature order shuffled (robustness)
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ehrmind import stats
from ehrmind.io import read_json, read_jsonl

ALPHA = 0.05
START = "eag_sft"
ABLATIONS = {"eag_rl_no_stage1": "without stage 1 (MCTS + SFT)", "eag_sft": "without stage 2 (RL)",
             "eag_rl_no_att": "without R_att", "eag_rl_no_clip": "without the adaptive clip"}
LABELS = {"eag_vanilla": "prompting: vanilla", "eag_think": "prompting: think, then answer",
          "eag_decompose": "prompting: question decomposition", "eag_sft": "stage 1 (MCTS + SFT)",
          "eag_rl": "EAG-RL (stage 1 + 2)", "eag_grpo": "GRPO from stage 1", "eag_dapo": "DAPO from stage 1",
          **{k: f"ablation: {v}" for k, v in ABLATIONS.items() if k != "eag_sft"}}


def load(paths: list[str]) -> dict[tuple, list[dict[str, Any]]]:
    """(model, task, method, variant) -> cells (one per seed), each with its predictions."""
    out: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        m = read_json(path)
        for key in ("model", "task", "stage", "seed"):
            if key not in m.get("cell", {}):
                raise ValueError(f"{path}: field 'cell.{key}' missing; expected `ehrmind evaluate --method eagrl`")
        m["predictions"] = read_jsonl(Path(path).with_name("predictions.jsonl"))
        c = m["cell"]
        variant = f"shuffle{c['shuffle_fraction']}" if "shuffle_fraction" in c else "main"
        out[(c["model"], c["task"], c["stage"], variant)].append(m)
    return out


def _arrays(cells: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, p, ids = [], [], []
    for c in sorted(cells, key=lambda c: int(c["cell"]["seed"])):
        for row in sorted(c["predictions"], key=lambda r: r["id"]):
            y.append(row["gold_label"])
            p.append(row["probability"])
            ids.append(row["id"])
    return np.asarray(y), np.asarray(p, dtype=float), np.asarray(ids)


def _test(a: list[dict[str, Any]], b: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """B against A on AUROC: DeLong's test with one seed each, else a paired permutation test
    over the pooled (patient, seed) rows, seeds paired in order."""
    ya, pa, ia = _arrays(a)
    yb, pb, ib = _arrays(b)
    if len(a) == len(b) == 1:
        if not np.array_equal(ia, ib):
            raise ValueError("eagrl cells evaluated on different patients; cannot pair them")
        d = stats.delong_test(ya, pb, pa)
        return {"diff": d["diff"], "p_value": d["p_value"], "test": "DeLong"}
    k = min(len(a), len(b))
    ya, pa, ia = _arrays(sorted(a, key=lambda c: int(c["cell"]["seed"]))[:k] if len(a) > 1 else a * k)
    yb, pb, _ = _arrays(sorted(b, key=lambda c: int(c["cell"]["seed"]))[:k] if len(b) > 1 else b * k)
    r = stats.paired_metric_test("auroc", ya, pa, pb, groups=ia, seed=seed)
    return {"diff": r["diff"], "p_value": r["p_value"], "test": "permutation"}


def _auc(cells: list[dict[str, Any]], n_resamples: int, seed: int) -> dict[str, Any]:
    y, p, ids = _arrays(cells)
    return stats.auc_bootstrap(y, p, n_resamples=n_resamples, seed=seed, groups=ids)


def _ms(mean: float, sd: float) -> str:
    return "–" if mean != mean else f"{mean:.3f} ± {sd:.3f}"


def _parse(cells) -> float:
    return float(np.mean([c["parse_failures"] / c["n"] for c in cells]))


def _r_att(cells) -> float | None:
    values = [c["mean_r_att"] for c in cells if c.get("mean_r_att") is not None]
    return float(np.mean(values)) if values else None


def _training(dirs: list[str]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """train_summary.json per <model>/<task>/<method>/seed<S> dir."""
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for d in dirs:
        model, task, method = Path(d).parts[-4:-1]
        out[(model, task, method)].append(read_json(Path(d) / "train_summary.json"))
    return out


def write(paths: list[str], training_dirs: list[str], experts: dict[str, dict], out: Path, writer,
          n_resamples: int = 1000, seed: int = 0) -> list[Path]:
    cells = load(paths)
    training = _training(training_dirs)
    models = list(dict.fromkeys(k[0] for k in cells))
    tasks = list(dict.fromkeys(k[1] for k in cells))
    methods = list(dict.fromkeys(k[2] for k in cells))
    tests: dict[tuple[str, str, str], dict[str, Any]] = {}
    for m in models:
        for t in tasks:
            start = cells.get((m, t, START, "main"))
            keys = [(m, t, x) for x in methods if x != START and (m, t, x, "main") in cells]
            if start is None or not keys:
                continue
            found = [_test(start, cells[(*k, "main")], seed) for k in keys]
            for k, r, p in zip(keys, found, stats.holm([r["p_value"] for r in found])):
                tests[k] = {**r, "p_holm": p}

    rows, csv_rows = [], []
    if experts:
        ex = [experts[t]["test"] if t in experts else None for t in tasks]
        rows.append(["expert (ConCare)", "—"] + [x for e in ex for x in
                     ((_ms(e["auroc_mean"], e["auroc_sd"]), _ms(e["auprc_mean"], e["auprc_sd"]), "–", "–") if e
                      else ("",) * 4)])
        csv_rows.append(["expert", "concare"] + [x for e in ex for x in
                         ((e["auroc_mean"], e["auroc_sd"], e["auprc_mean"], e["auprc_sd"], "", "", "", "") if e
                          else ("",) * 8)])
    for m in models:
        for x in methods:
            if not any((m, t, x, "main") in cells for t in tasks):
                continue
            text, values = [m, LABELS.get(x, x)], [m, x]
            for t in tasks:
                c = cells.get((m, t, x, "main"))
                if c is None:
                    text += [""] * 4
                    values += [""] * 8
                    continue
                a, r = _auc(c, n_resamples, seed), tests.get((m, t, x))
                mark = "" if r is None or r["p_holm"] >= ALPHA else "+" if r["diff"] > 0 else "-"
                att = _r_att(c)
                text += [_ms(a["auroc_mean"], a["auroc_sd"]) + mark, _ms(a["auprc_mean"], a["auprc_sd"]),
                         f"{100 * _parse(c):.0f} %", "–" if att is None else f"{att:.2f}"]
                values += [a["auroc_mean"], a["auroc_sd"], a["auprc_mean"], a["auprc_sd"], _parse(c),
                           "" if att is None else att, r["p_value"] if r else "", r["p_holm"] if r else ""]
            rows.append(text)
            csv_rows.append(values)
    headers = ["Model", "Method"] + [f"{t} {k}" for t in tasks for k in ("AUROC", "AUPRC", "unparsed", "R_att")]
    keys = ("auroc_mean", "auroc_sd", "auprc_mean", "auprc_sd", "parse_failure_rate", "mean_r_att", "p_vs_stage1",
            "p_holm")
    written = writer(out, "eagrl", headers, rows, ["model", "method"] + [f"{t}_{k}" for t in tasks for k in keys],
                     csv_rows,
                     f"EAG-RL (arXiv 2508.13579) on the structured-EHR tasks, in its layout: AUROC and AUPRC from "
                     f"the stated probability (an unparseable answer scores 0.5), mean ± sd over {n_resamples:,} "
                     f"bootstrap resamples of the test patients (seeds pooled); unparsed: share of answers not in the "
                     f"format; R_att: mean Jaccard of the stated important features with the expert's top-k. +/-: "
                     f"AUROC significantly above/below the stage-1 start (eag_sft; DeLong with one seed, else a "
                     f"paired permutation test), Holm over the model's methods, alpha {ALPHA}.")

    rows, csv_rows = [], []
    fractions = sorted({float(k[3][len("shuffle"):]) for k in cells if k[3] != "main"})
    for m in models:
        for t in tasks:
            full = cells.get((m, t, "eag_rl", "main"))
            if full is None:
                continue
            for x in ["eag_rl", *ABLATIONS]:
                c = cells.get((m, t, x, "main"))
                if c is None:
                    continue
                a = _auc(c, n_resamples, seed)
                r = None if x == "eag_rl" else _test(full, c, seed)
                runs = training.get((m, t, x), [])
                first = [s.get("r_att_first_step") for s in runs if s.get("r_att_first_step") is not None]
                last = [s.get("r_att_last_step") for s in runs if s.get("r_att_last_step") is not None]
                shuffled = [_auc(cells[(m, t, x, f"shuffle{f:g}")], n_resamples, seed)["auroc_mean"]
                            if (m, t, x, f"shuffle{f:g}") in cells else None for f in fractions]
                rows.append([m, t, "EAG-RL" if x == "eag_rl" else ABLATIONS[x], _ms(a["auroc_mean"], a["auroc_sd"]),
                             "" if r is None else f"{r['diff']:+.3f} ({r['test']} p = {r['p_value']:.3g})",
                             f"{np.mean(first):.3f} → {np.mean(last):.3f}" if first and last else "–"]
                            + ["–" if v is None else f"{v:.3f}" for v in shuffled])
                csv_rows.append([m, t, x, a["auroc_mean"], a["auroc_sd"], "" if r is None else r["diff"],
                                 "" if r is None else r["p_value"], np.mean(first) if first else "",
                                 np.mean(last) if last else ""] + ["" if v is None else v for v in shuffled])
    return written + writer(
        out, "eagrl_ablation", ["Model", "Task", "Variant", "AUROC", "ΔAUROC vs EAG-RL", "rollout R_att first → last"]
        + [f"AUROC, {f:g} shuffled" for f in fractions], rows,
        ["model", "task", "variant", "auroc_mean", "auroc_sd", "diff_vs_eag_rl", "p_value", "r_att_first",
         "r_att_last"] + [f"auroc_shuffle_{f:g}" for f in fractions], csv_rows,
        "EAG-RL's ablations: each variant against the full method on the same test patients (AUROC mean ± sd "
        "over bootstrap resamples; the difference with DeLong's test, or a paired permutation test over seeds). "
        "Rollout R_att: the mean Jaccard of the stated and the expert's features over the GRPO rollouts of the "
        "first and the last step. Shuffled: AUROC on the test records with that share of the feature order "
        "shuffled (EAG-RL's robustness experiment).")
