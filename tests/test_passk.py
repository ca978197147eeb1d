"""Pass@k diagnostic and gate: per-item figures, reliability rules, degenerate items,
batched sampling on a tiny model, the gate file, and the pass@k tables and figure."""
import csv
import json
import math

import pytest

from ehrmind import cli, config, stats, tables
from ehrmind.methods.ehrmind import passk, passk_report
from ehrmind.evaluate import summarize as summarize_cell
from ehrmind.io import read_json, read_jsonl, write_json, write_jsonl
from ehrmind.tasks import DataError, Example

RULES = {"trec_ct": {"*": {"min_correct": 6}},
         "medcalc": {"diagnosis": {"min_correct": 3, "max_entropy": 0.8 * math.log(7)}}}
GATE = {"k": 4, "threshold": 0.5, "thresholds": {}, "reliable": RULES}


def _row(item, task, category, answers, gold):
    """An item's stored samples: `answers` as the scorer read them (None = unparseable)."""
    return {"id": item, "task": task, "category": category,
            "samples": [{"completion": "", "answer": None if a is None else json.dumps(a), "correct": a == gold,
                         "parse_error": None if a is not None else "no tags", "generated_tokens": 5}
                        for a in answers]}


def _finite(obj):
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    return not isinstance(obj, float) or math.isfinite(obj)


def test_entropy_hand_values():
    assert passk.entropy(["1", "1", "1", "1"]) == 0.0
    assert passk.entropy(["1", "1", "2", "2"]) == pytest.approx(math.log(2))
    assert passk.entropy(["1", None, "1", None]) == pytest.approx(math.log(2))   # no answer is one outcome
    assert passk.entropy(list("abcdefg")) == pytest.approx(math.log(7))


def test_item_figures_plain_pass_at_k_and_degenerate_items():
    every = passk.item_figures(_row("a", "medcalc", "lab", [5] * 6, 5), 4, RULES)
    none = passk.item_figures(_row("b", "medcalc", "lab", [None] * 6, 5), 4, RULES)
    some = passk.item_figures(_row("c", "medcalc", "lab", [5, 1, 2, 3, 4, 6], 5), 4, RULES)
    assert (every["pass_at_k"], every["entropy"], every["pass_at_1"]) == (1.0, 0.0, 1.0)
    assert (none["pass_at_k"], none["entropy"], none["format_rate"]) == (0.0, 0.0, 0.0)
    assert some["pass_at_k"] == pytest.approx(1 - math.comb(5, 4) / math.comb(6, 4))
    assert every["reliable_pass_at_k"] is None and every["gate_value"] == 1.0   # no rule for lab


def test_reliable_pass_at_k_needs_enough_correct_and_low_entropy():
    # trial matching: at least 6 of n correct, no entropy ceiling
    five = passk.item_figures(_row("a", "trec_ct", "eligible", [2] * 5 + [0] * 7, 2), 12, RULES)
    six = passk.item_figures(_row("b", "trec_ct", "eligible", [2] * 6 + [0] * 6, 2), 12, RULES)
    assert five["pass_at_k"] == 1.0 and five["reliable_pass_at_k"] == 0.0 and five["gate_value"] == 0.0
    assert six["reliable_pass_at_k"] == 1.0
    # diagnosis: 3 correct out of 12, but answers spread over 7 values -> entropy above 0.8 ln 7
    spread = passk.item_figures(_row("c", "medcalc", "diagnosis", [1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6, 7], 1), 12, RULES)
    assert spread["entropy"] > 0.8 * math.log(7) and spread["reliable_pass_at_k"] == 0.0
    focused = passk.item_figures(_row("d", "medcalc", "diagnosis", [1] * 3 + [2] * 9, 1), 12, RULES)
    assert focused["reliable_pass_at_k"] == 1.0


def test_fewer_samples_than_k_is_a_clear_error():
    with pytest.raises(ValueError, match="n >= k"):
        passk.item_figures(_row("a", "medcalc", "lab", [1, 2], 1), 4, RULES)
    with pytest.raises(config.ConfigError, match=r"passk\.n.*n >= k"):
        config.validate({"models": {"m": "tiny:1"}, "tasks": {"medcalc": {}}, "passk": {"n": 4, "k": 12}})


def test_gated_mode_needs_both_stages():
    with pytest.raises(config.ConfigError, match="stages lacks sft_rlvr"):
        config.validate({"models": {"m": "tiny:1"}, "tasks": {"medcalc": {}}, "stages": ["baseline", "rlvr"],
                         "passk": {"mode": "gated"}})


def test_summary_per_task_and_category_has_no_nan():
    rows = [_row("a", "medcalc", "lab", [5] * 4, 5), _row("b", "medcalc", "lab", [None] * 4, 5),
            _row("c", "medcalc", "diagnosis", [1, 1, 1, 2], 1), _row("d", "trec_ct", "eligible", [2, 0, 0, 0], 2)]
    s = passk.summarize(rows, 4, RULES)
    assert s["items"] == 4 and s["per_task"]["medcalc"]["items"] == 3
    assert s["per_category"]["medcalc/lab"]["pass_at_k"] == 0.5
    assert s["per_category"]["medcalc/lab"]["reliable_pass_at_k"] is None     # no rule: not a made-up value
    assert s["per_category"]["medcalc/diagnosis"]["reliable_pass_at_k"] == 1.0
    assert s["per_category"]["trec_ct/eligible"]["reliable_pass_at_k"] == 0.0   # 1 of 4 < 6
    assert s["gate_value"] == pytest.approx((1 + 0 + 1 + 0) / 4)
    assert _finite(s)
    with pytest.raises(DataError, match="no sampled items"):
        passk.summarize([], 4, RULES)


@pytest.mark.parametrize("value,threshold,stage", [(0.0, 0.5, "sft_rlvr"), (0.49, 0.5, "sft_rlvr"),
                                                   (0.5, 0.5, "rlvr"), (0.0, 0.0, "rlvr")])
def test_decision_rule(value, threshold, stage):
    assert passk.decide(value, threshold) == stage


def test_gate_file_merges_samples_and_uses_the_task_threshold(tmp_path):
    a, b = tmp_path / "medcalc" / "samples.jsonl", tmp_path / "trec_ct" / "samples.jsonl"
    write_jsonl(a, [_row("a", "medcalc", "lab", [5] * 4, 5)])
    write_json(a.with_name("sampling.json"), {"wall_time_s": 2.5, "generated_tokens": 40})
    write_jsonl(b, [_row("b", "trec_ct", "eligible", [0] * 4, 2)])
    g = passk.gate([str(a), str(b)], {**GATE, "thresholds": {"multi": 0.4}}, "multi", tmp_path / "gate.json", "m")
    assert read_json(tmp_path / "gate.json") == json.loads(json.dumps(g))
    assert g["gate"] == {"value": 0.5, "threshold": 0.4, "decision": "rlvr",
                         "rule": "sft_rlvr if mean gate value < 0.4 else rlvr"}
    assert g["sampling_cost"] == {"wall_time_s": 2.5, "generated_tokens": 40}
    assert set(g["per_task"]) == {"medcalc", "trec_ct"}


def test_gate_names_file_and_line_of_a_bad_sample_row(tmp_path, capsys):
    bad = tmp_path / "samples.jsonl"
    write_jsonl(bad, [_row("a", "medcalc", "lab", [5] * 4, 5), {"id": "b", "task": "medcalc", "category": "lab"}])
    code = cli.main(["gate", str(bad), "--train-task", "medcalc", "--model-name", "m",
                     "--settings", json.dumps(GATE), "--out", str(tmp_path / "gate.json")])
    assert code == 2
    assert f"{bad}: line 2: field 'samples' missing" in capsys.readouterr().err
    assert not (tmp_path / "gate.json").exists()


REWARD = {"format_ok": 0.1, "format_bad": -2.0, "correct": 1.0, "wrong": 0.0}


def _examples(n_per_category):
    from ehrmind.tasks import get_task
    return [ex.__class__(**{**ex.to_json(), "task": "medcalc"})
            for ex in get_task("medcalc").load_split("train", {"source": "embedded",
                                                                "train_per_category": n_per_category}, 0)]


def test_sampling_is_batched_and_stored(tiny_model, tmp_path, monkeypatch):
    """All n samples of a batch of items come from one backend call, each prompt encoded once."""
    from ehrmind.generation.hf import HFBackend
    calls = []
    batch = HFBackend._batch

    def spy(self, prompts, spec, seed):
        calls.append((len(prompts), spec.n))
        return batch(self, prompts, spec, seed)

    monkeypatch.setattr(HFBackend, "_batch", spy)
    examples = _examples(1)   # 7 items, one per MedCalc category
    settings = {"n": 3, "k": 2, "temperature": 0.6, "top_p": 0.95, "items_per_category": 1, "batch_size": 9,
                "max_new_tokens": 4, "max_prompt_tokens": 512}
    meta = passk.sample(str(tiny_model), examples, settings, REWARD, 0, tmp_path)
    assert calls == [(3, 3), (3, 3), (1, 3)]      # 9 sequences per batch = 3 items x 3 samples
    rows = read_jsonl(tmp_path / "samples.jsonl")
    assert sorted(r["id"] for r in rows) == sorted(ex.id for ex in examples)
    assert all(len(r["samples"]) == 3 and r["task"] == "medcalc" for r in rows)
    assert meta["generated_tokens"] == sum(s["generated_tokens"] for r in rows for s in r["samples"]) > 0
    assert read_json(tmp_path / "sampling.json")["items"] == 7


def test_sampling_an_empty_split_is_a_clear_error(tmp_path):
    settings = {"n": 2, "k": 2, "items_per_category": 4}
    with pytest.raises(DataError, match="no items to sample"):
        passk.sample("unused", [], settings, {}, 0, tmp_path)
    assert not (tmp_path / "samples.jsonl").exists()


# --- report: tables and figure from gate files, cells and training logs ---

def _cell(root, stage, correct, task="trec_ct", model="m"):
    preds = [{"id": f"i{k}", "category": "inductive" if k % 2 else "transductive", "correct": c,
              "format_ok": True, "reward": 0.1 + c, "parse_error": None, "generated_tokens": 10}
             for k, c in enumerate(correct)]
    d = root / "cells" / model / task / stage / "seed0"
    write_jsonl(d / "predictions.jsonl", preds)
    write_json(d / "metrics.json", {**summarize_cell(preds), "cell": {"model": model, "task": task, "stage": stage,
                                                                      "seed": 0}})
    return str(d / "metrics.json")


def _training(root, stage, wall, tokens=None, task="trec_ct"):
    d = root / "training" / "m" / task / stage / "seed0"
    write_json(d / "train_summary.json", {"stage": stage, "wall_time_s": wall,
                                          **({"generated_tokens": tokens} if tokens is not None else {})})
    return str(d)


def _gate(root, rows, task="trec_ct", threshold=0.5):
    samples = root / "passk" / task / "samples.jsonl"
    write_jsonl(samples, rows)
    out = root / "passk" / task / "gate.json"
    passk.gate([str(samples)], {**GATE, "threshold": threshold}, task, out, "m")
    return str(out)


def test_audit_table_says_whether_the_gate_was_right_and_what_the_other_pipeline_cost(tmp_path):
    n = 20
    cells = [_cell(tmp_path, "baseline", [False] * n), _cell(tmp_path, "rlvr", [False] * n),
             _cell(tmp_path, "sft_rlvr", [k < 12 for k in range(n)])]
    training = [_training(tmp_path, "sft", 100.0), _training(tmp_path, "rlvr", 50.0, 800),
                _training(tmp_path, "sft_rlvr", 60.0, 900)]
    gate = _gate(tmp_path, [_row("p", "trec_ct", "eligible", [0] * 4, 2)])   # pass@k 0 -> sft_rlvr
    out = tmp_path / "tables"
    tables.build(cells, out, gate_files=[gate], training_dirs=training)
    row = next(csv.DictReader(open(out / "passk_m.csv")))
    assert row["decision"] == "sft_rlvr" and row["better"] == "sft_rlvr" and row["agreed"] == "yes"
    assert float(row["sft_rlvr_gain"]) == pytest.approx(0.6) and float(row["rlvr_gain"]) == 0.0
    cost = next(csv.DictReader(open(out / "passk_cost.csv")))
    assert cost["skipped"] == "rlvr" and float(cost["skipped_wall_time_s"]) == 50.0
    assert int(cost["skipped_generated_tokens"]) == 800
    assert float(row["p_rlvr_vs_sft_rlvr"]) == pytest.approx(stats.mcnemar_exact([False] * n, [k < 12 for k in range(n)])["p_value"])
    md = (out / "passk_m.md").read_text()
    assert "yes (p = " in md and "nan" not in md.lower()
    assert "rlvr: 50 s, 800 tok" in (out / "passk_cost.md").read_text()
    assert (out / "passk_vs_rlvr_gain.png").stat().st_size > 0
    # one point, constant pass@k: no fit, said in words
    assert "no fit: 1 points" in (out / "passk_vs_rlvr_gain.md").read_text()


def test_the_primer_start_gets_its_own_decision_audit_and_gain_points(tmp_path):
    """passk.primer_steps (the suite's device): the primer's gate chooses between primer_rlvr and
    sft_rlvr, its gains are over the primer, and its points join the base's in the fit."""
    n = 20
    cells = [_cell(tmp_path, "baseline", [False] * n), _cell(tmp_path, "rlvr", [False] * n),
             _cell(tmp_path, "sft_rlvr", [k < 8 for k in range(n)]), _cell(tmp_path, "primer", [k < 2 for k in range(n)]),
             _cell(tmp_path, "primer_rlvr", [k < 14 for k in range(n)])]
    base = _gate(tmp_path, [_row("p", "trec_ct", "inductive", [0] * 4, 2)])
    samples = tmp_path / "passk/trec_ct/primer/seed0/samples.jsonl"
    write_jsonl(samples, [_row("p", "trec_ct", "inductive", [2] * 4, 2), _row("q", "trec_ct", "transductive", [0] * 4, 2)])
    primer = tmp_path / "passk/trec_ct/primer/seed0/gate.json"
    passk.gate([str(samples)], {**GATE, "threshold": 0.5, "reliable": {}}, "trec_ct", primer, "m", start="primer")
    grid = tables.group(tables.load_cells(cells))
    gates = passk_report.load_gates([str(primer), base])
    rows = [r for r in passk_report.passk_rows(gates, grid, {}) if r["category"] == "all"]
    assert [r["start"] for r in rows] == ["base", "primer"]
    assert rows[0]["decision"] == "sft_rlvr" and rows[0]["better"] == "sft_rlvr" and rows[0]["agreed"] == "yes"
    assert rows[1]["decision"] == "primer_rlvr" and rows[1]["better"] == "primer_rlvr" and rows[1]["agreed"] == "yes"
    assert rows[1]["rlvr_gain"] == pytest.approx(0.6) and rows[1]["sft_rlvr_gain"] == pytest.approx(0.3)
    points = passk_report.gain_points(gates, grid)
    assert sorted((p["start"], p["category"], p["pass_at_k"]) for p in points) == [
        ("base", "inductive", 0.0), ("primer", "inductive", 1.0), ("primer", "transductive", 0.0)]
    assert "r2" in passk_report.fit(points)


def test_gated_table_marks_the_skipped_stage_as_not_run(tmp_path):
    n = 10
    cells = [_cell(tmp_path, "baseline", [False] * n), _cell(tmp_path, "sft_rlvr", [k < 5 for k in range(n)])]
    gate = _gate(tmp_path, [_row("p", "trec_ct", "eligible", [0] * 4, 2)])
    rows = passk_report.passk_rows(passk_report.load_gates([gate]), tables.group(tables.load_cells(cells)), {})
    assert rows[0]["agreed"] == "not run (gated)" and rows[0]["rlvr_gain"] is None
    assert rows[0]["skipped_cost"] is None


def test_fit_of_pass_at_k_against_gain():
    points = [{"pass_at_k": x, "rlvr_gain": 0.5 * x + 0.1 + e} for x, e in ((0.0, 0.01), (0.4, -0.02), (0.8, 0.01))]
    f = passk_report.fit(points)
    xs, ys = [p["pass_at_k"] for p in points], [p["rlvr_gain"] for p in points]
    import numpy as np
    assert f["r2"] == pytest.approx(np.corrcoef(xs, ys)[0, 1] ** 2)
    assert f["slope"] == pytest.approx(np.polyfit(xs, ys, 1)[0])
    flat = passk_report.fit([{"pass_at_k": 0.0, "rlvr_gain": g} for g in (0.0, 0.1, 0.2)])
    assert flat == {"n": 3, "reason": "pass@k is the same at every point"}
    assert "no fit" in passk_report.fit_text(flat)


def test_example_task_field_is_required_for_sampling(tmp_path):
    ex = Example("x", "lab", {"question": "q"}, {}, "r", {})
    with pytest.raises(DataError, match="names no task"):
        passk.sample("unused", [ex], {"n": 2, "k": 2, "items_per_category": None}, {}, 0, tmp_path)
