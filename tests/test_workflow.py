"""Small end-to-end Snakemake runs: two tiny models x three tasks x all four stages,
plus the transfer matrix with the `multi` training task and the pass@k gate in
audit mode; and a smaller run with the gate in gated mode (a Snakemake checkpoint)."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, SNAKEMAKE, run_snakemake as _snakemake, run_stages, run_tiny_grid as _run


def test_every_table_cell_is_filled(tiny_run):
    _, results, cfg = tiny_run
    main = list(csv.DictReader(open(results / "tables/main.csv")))
    stages = run_stages(cfg)
    assert [(r["model"], r["stage"]) for r in main] == [(m, s) for m in cfg["models"] for s in stages]
    for row in main:   # one seed: no sd over seeds; the baseline has no test against itself
        assert all(v != "" for k, v in row.items() if not k.endswith(("_p_holm_vs_baseline", "_sd_over_seeds"))), row
        for task in cfg["tasks"]:
            assert row[f"{task}_p_holm_vs_baseline"] != "" or row["stage"] == "baseline"
    assert {main[0][f"{t}_metric"] for t in cfg["tasks"]} == {"accuracy", "balanced_accuracy", "auroc"}
    per = list(csv.DictReader(open(results / "tables/per_category_medcalc.csv")))
    assert set(per[0]) >= {"lab", "physical", "risk", "severity", "diagnosis", "date", "dosage"}
    assert all(v != "" for r in per for v in r.values())
    sig = list(csv.DictReader(open(results / "tables/significance.csv")))
    n_tasks = len(cfg["tasks"])
    pairs = len(stages) * (len(stages) - 1) // 2
    assert sum(r["family"] == "stages" for r in sig) == n_tasks * 2 * pairs  # per task, stage pairs per model
    assert sum(r["family"] == "models" for r in sig) == n_tasks * len(stages)  # per task, one model pair per stage
    for ext in ("md", "tex"):
        assert (results / f"tables/main.{ext}").read_text().count("tiny-b") == len(stages)


def test_transfer_matrix_is_complete(tiny_run):
    _, results, cfg = tiny_run
    rows = list(csv.DictReader(open(results / "tables/transfer.csv")))
    trained = ["sft", "rlvr", "sft_rlvr"]
    text = [t for t in cfg["tasks"] if t != "tjh_mortality"]   # one structured task: nothing to transfer to
    assert [(r["model"], r["train_task"], r["stage"]) for r in rows] == [
        (m, t, s) for m in cfg["models"] for t in [*text, "multi"] for s in trained]
    for row in rows:   # every checkpoint on every task of its family, each compared with the baseline
        assert all(row[f"{e}_{k}"] != "" for e in text for k in ("value", "p_holm")), row
    cls = list(csv.DictReader(open(results / "tables/classification.csv")))
    assert len(cls) == 2 * len(run_stages(cfg)) and all(r["ehrshot_balanced_accuracy"] != "" for r in cls)
    assert all(r["ehrshot_auroc"] != "" and r["tjh_mortality_auroc"] != "" for r in cls)
    metrics = yaml.safe_load(open(results / "transfer/tiny-b/multi/sft/seed0/ehrshot/metrics.json"))
    assert metrics["cell"] == {"model": "tiny-b", "task": "ehrshot", "stage": "sft", "seed": "0", "train_task": "multi"}


def test_structured_ehr_task_with_expert_and_robustness(tiny_run):
    _, results, cfg = tiny_run
    expert = yaml.safe_load(open(results / "experts/tjh_mortality/metrics.json"))
    assert 0 <= expert["test"]["auroc"] <= 1 and expert["task"] == "tjh_mortality"
    assert "precision_at_5" in expert["planted"]   # the embedded cohort's drivers are known
    ranked = [yaml.safe_load(l) for l in open(results / "experts/tjh_mortality/ranked_features.jsonl")]
    assert ranked and all(len(r["top_k"]) <= cfg["expert"].get("top_k", 5) for r in ranked)
    ehr = list(csv.DictReader(open(results / "tables/ehr.csv")))
    stages = run_stages(cfg)
    assert ehr[0]["model"] == "expert" and [r["method"] for r in ehr[1:1 + len(stages)]] == stages
    assert all(r["tjh_mortality_auroc_mean"] != "" for r in ehr)
    robust = list(csv.DictReader(open(results / "tables/robustness.csv")))
    assert [(r["model"], r["stage"]) for r in robust] == [(m, "sft_rlvr") for m in cfg["models"]]
    assert all(r["shuffle_0.5"] != "" and r["shuffle_0"] != "" for r in robust)
    shuffled = [yaml.safe_load(l) for l in open(results / "data/tjh_mortality/test_shuffle0.5.jsonl")]
    plain = [yaml.safe_load(l) for l in open(results / "data/tjh_mortality/test.jsonl")]
    assert [e["id"] for e in shuffled] == [e["id"] for e in plain]
    assert any(a["fields"]["record"] != b["fields"]["record"] for a, b in zip(shuffled, plain))


def test_eagrl_stages_and_tables(tiny_run):
    _, results, cfg = tiny_run
    methods = cfg["eagrl"]["methods"]
    rows = list(csv.DictReader(open(results / "tables/eagrl.csv")))
    assert rows[0]["model"] == "expert"
    assert [(r["model"], r["method"]) for r in rows[1:]] == [(m, x) for m in cfg["models"] for x in methods]
    assert all(r["tjh_mortality_auroc_mean"] != "" for r in rows)
    ablation = list(csv.DictReader(open(results / "tables/eagrl_ablation.csv")))
    assert [r["variant"] for r in ablation if r["model"] == "tiny-a"] == ["eag_rl", "eag_sft", "eag_rl_no_att"]
    assert all(r["auroc_shuffle_0.5"] != "" for r in ablation if r["variant"] == "eag_rl")
    log = [yaml.safe_load(l) for l in open(results / "training/tiny-a/tjh_mortality/eag_rl/seed0/train_log.jsonl")]
    assert any("rewards/r_att/mean" in row for row in log)        # R_att over training, for the curves
    warm = [yaml.safe_load(l) for l in open(results / "data/tjh_mortality/eag_warmup.jsonl")]
    assert warm and all("<Final answer>" in r["completion"][0]["content"] for r in warm)
    mcts = yaml.safe_load(open(results / "eagrl/mcts/tiny-a/tjh_mortality/seed0/mcts.json"))
    assert mcts["patients"] and (results / "eagrl/mcts/tiny-a/tjh_mortality/seed0/trajectories.jsonl").exists()


def test_passk_audit_tables(tiny_run):
    _, results, cfg = tiny_run
    for model in cfg["models"]:
        rows = [r for r in csv.DictReader(open(results / f"tables/passk_{model}.csv")) if r["category"] == "all"]
        base, primer = ([r for r in rows if r["start"] == s] for s in ("base", "primer"))
        assert [r["task"] for r in base] == [*cfg["tasks"], "multi"] and [r["task"] for r in primer] == [*cfg["tasks"]]
        assert all(r["decision"] in ("rlvr", "sft_rlvr") and r["pass_at_k"] != "" for r in base)
        assert all(r["decision"] in ("primer_rlvr", "sft_rlvr") and r["pass_at_k"] != "" for r in primer)
        for r in base[:-1] + primer:   # every task's own pipelines ran: a verdict
            assert r["agreed"] in ("yes", "no", "tie") and r["rlvr_gain"] != "" and r["sft_rlvr_gain"] != ""
    costs = list(csv.DictReader(open(results / "tables/passk_cost.csv")))
    assert len(costs) == 2 * (2 * len(cfg["tasks"]) + 1) and all(int(r["passk_generated_tokens"]) > 0 for r in costs)
    assert all(float(r["skipped_wall_time_s"]) > 0 for r in costs)
    assert (results / "tables/passk_vs_rlvr_gain.png").stat().st_size > 0
    samples = [l for l in open(results / "passk/tiny-a/medcalc/samples.jsonl")]
    assert len(samples) == 7 and all(len(yaml.safe_load(l)["samples"]) == 2 for l in samples)


def test_reproduction_verdict_on_the_same_run(tiny_run):
    from ehrmind import reproduce
    _, results, _ = tiny_run
    result = reproduce.compare(results, results)
    assert result["verdict"] == "reproduced within noise" and result["identical_bytes"] == result["cells_compared"]
    assert "REPRODUCED WITHIN NOISE" in reproduce.report(result)


def test_seeds_axis(tmp_path, model_cache):
    """Two run seeds: every trained stage per seed, the greedy baseline once; mean ± sd in the
    main table, one row per seed in main_seeds, the stage tests pooled over seeds."""
    tasks = yaml.safe_load((REPO / "workflow/config/tiny.yaml").read_text())["tasks"]
    _, results, _ = _run(tmp_path, model_cache, models={"tiny-a": "tiny:1"}, tasks={"medcalc": tasks["medcalc"]},
                         seeds=[0, 1], transfer={"enabled": False}, passk={"enabled": False})
    cells = sorted(str(p.relative_to(results / "cells")) for p in (results / "cells").glob("*/*/*/*"))
    assert cells == ["tiny-a/medcalc/baseline/seed0"] + [f"tiny-a/medcalc/{s}/seed{k}" for s in
                                                          ("rlvr", "sft", "sft_rlvr") for k in (0, 1)]
    main = {r["stage"]: r for r in csv.DictReader(open(results / "tables/main.csv"))}
    assert main["baseline"]["medcalc_seeds"] == "1" and main["sft"]["medcalc_seeds"] == "2"
    assert main["sft"]["medcalc_sd_over_seeds"] != ""
    seeds = [(r["stage"], r["seed"]) for r in csv.DictReader(open(results / "tables/main_seeds.csv"))]
    assert ("sft", "1") in seeds and ("baseline", "1") not in seeds
    assert (results / "training/tiny-a/medcalc/sft/seed1/train_summary.json").exists()


def test_a_new_gate_threshold_reuses_the_stored_samples(tiny_run, tmp_path):
    _, results, cfg = tiny_run
    changed = tmp_path / "threshold.yaml"
    changed.write_text(yaml.safe_dump({**cfg, "passk": {**cfg["passk"], "threshold": 0.9}}, sort_keys=False))
    proc = _snakemake(changed, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = proc.stdout[proc.stdout.index("Job stats"):].split("\n\n")[0]   # the table up to its blank line
    jobs = {line.split()[0] for line in stats.splitlines()[3:]}
    assert {"gate", "gate_primer", "tables"} <= jobs and not jobs & {"passk", "passk_primer", "grpo"}, stats


def test_gated_mode_runs_only_the_chosen_pipeline(tmp_path, model_cache):
    """The gate is a checkpoint: medcalc (threshold 0) gets rlvr alone; ehrshot and multi
    (threshold above any pass@k of a random model) get the SFT warm-up first."""
    tasks = yaml.safe_load((REPO / "workflow/config/tiny.yaml").read_text())["tasks"]
    config, results, _ = _run(tmp_path, model_cache, models={"tiny-a": "tiny:1"},
                              tasks={t: tasks[t] for t in ("medcalc", "ehrshot")},
                              stages=["baseline", "rlvr", "sft_rlvr"],
                              passk={"mode": "gated", "k": 2, "n": 2, "items_per_category": 1,
                                     "thresholds": {"medcalc": 0.0, "ehrshot": 1.0, "multi": 1.0}})
    models = results / "models/tiny-a"
    assert (models / "medcalc/rlvr/seed0").is_dir() and not (models / "medcalc/sft_rlvr").exists()
    assert not (models / "medcalc/sft").exists()
    for task in ("ehrshot", "multi"):
        assert (models / f"{task}/sft_rlvr/seed0").is_dir() and not (models / f"{task}/rlvr").exists()
    rows = {r["task"]: r for r in csv.DictReader(open(results / "tables/passk_tiny-a.csv")) if r["category"] == "all"}
    assert {t: r["decision"] for t, r in rows.items()} == {"medcalc": "rlvr", "ehrshot": "sft_rlvr", "multi": "sft_rlvr"}
    assert rows["medcalc"]["agreed"] == "not run (gated)" and rows["medcalc"]["rlvr_gain"] != ""
    main = {r["stage"]: r for r in csv.DictReader(open(results / "tables/main.csv"))}
    assert main["rlvr"]["medcalc_value"] != "" and main["rlvr"]["ehrshot_value"] == ""
    assert main["sft_rlvr"]["ehrshot_value"] != "" and main["sft_rlvr"]["medcalc_value"] == ""
    transfer = {(r["train_task"], r["stage"]) for r in csv.DictReader(open(results / "tables/transfer.csv"))}
    assert transfer == {("medcalc", "rlvr"), ("ehrshot", "sft_rlvr"), ("multi", "sft_rlvr")}
    proc = _snakemake(config, "--dry-run")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr


def test_cells_hold_predictions_and_provenance(tiny_run):
    _, results, _ = tiny_run
    cell = results / "cells/tiny-a/medcalc/sft_rlvr/seed0"
    preds = [l for l in open(cell / "predictions.jsonl")]
    metrics = yaml.safe_load(open(cell / "metrics.json"))
    assert len(preds) == metrics["n"] == 7
    assert metrics["cell"] == {"model": "tiny-a", "task": "medcalc", "stage": "sft_rlvr", "seed": "0"}
    assert metrics["headline"]["metric"] == "accuracy" and metrics["prefill"].endswith("<think>")
    assert metrics["provenance"]["packages"]["trl"] and metrics["provenance"]["device"]["isa"] is not None
    assert (results / "training/tiny-a/medcalc/sft/seed0/training_curves.png").exists()


def test_rerun_with_nothing_changed_does_nothing(tiny_run):
    config, _, _ = tiny_run
    proc = _snakemake(config, "--dry-run")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr


def test_bad_config_fails_before_any_job(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"results_dir": str(tmp_path / "r"), "models": {"m": "tiny:1"},
                                      "tasks": {"medcalc": {}}, "grpo": {"max_steps": "many"}}))
    proc = _snakemake(config)
    assert proc.returncode != 0
    assert "grpo.max_steps" in proc.stderr and "integer" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_jobs_inherit_the_allocator_environment(tiny_run):
    """glibc reads its tunables as a process starts: the workflow sets them for the jobs it starts,
    with none in the caller's environment, and the cell's provenance records them."""
    from ehrmind import allocator
    config, results, _ = tiny_run
    cell = results / "cells/tiny-a/medcalc/baseline/seed0"
    env = {k: v for k, v in os.environ.items() if k not in allocator.ENV}
    env.update(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", HF_HUB_OFFLINE="1")
    proc = subprocess.run([SNAKEMAKE, str(cell / "metrics.json"), "--configfile", str(config), "--cores", "2", "--nolock",
                           "--forcerun", "evaluate"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(re.findall(r"^(local)?rule evaluate:", proc.stdout + proc.stderr, re.M)) == 1   # that cell alone
    device = yaml.safe_load(open(cell / "metrics.json"))["provenance"]["device"]
    assert device["glibc_tunables"] == allocator.ENV["GLIBC_TUNABLES"]
