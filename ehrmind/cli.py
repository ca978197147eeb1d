"""The `ehrmind` command line. Every Snakemake rule is one call of a verb here.

Settings reach the verbs as JSON strings (one config block each), so Snakemake
sees them as rule params and reruns exactly the jobs whose settings changed."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger("ehrmind")
PRECISIONS = ("auto", "bf16", "fp32")   # the config schema's `precision` values


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def _examples(path: str):
    from ehrmind.io import read_jsonl
    from ehrmind.tasks import Example
    return [Example.from_json(row) for row in read_jsonl(path)]


def cmd_validate_config(a) -> None:
    from ehrmind import config
    cfg = config.load(a.config)
    print(json.dumps(cfg, indent=2) if a.show else f"{a.config}: valid")


def cmd_prepare_data(a) -> None:
    from dataclasses import replace
    from ehrmind.io import write_jsonl
    from ehrmind.tasks import get_task
    task = get_task(a.task)
    for split, out in (("train", a.train_out), ("test", a.test_out)):
        if out is None:
            continue
        examples = task.load_split(split, a.data, a.seed)
        if not examples:
            raise SystemExit(f"error: task {a.task}: the {split} split is empty")
        write_jsonl(out, [replace(ex, task=task.name).to_json() for ex in examples])
        log.info("%s %s: %d examples -> %s", a.task, split, len(examples), out)


def cmd_prepare_model(a) -> None:
    from ehrmind import models
    ref = models.prepare(a.spec, a.out, Path(a.cache) if a.cache else None)
    log.info("model %s ready at %s", a.spec, ref["path"])


def _training_task(name: str):
    """The task to train on; None for `multi`, whose examples each name their own task."""
    from ehrmind.tasks import MULTI, get_task
    return None if name == MULTI else get_task(name)


def cmd_merge_train(a) -> None:
    from ehrmind.io import read_jsonl, write_jsonl
    rows = [row for path in a.inputs for row in read_jsonl(path)]
    missing = [row["id"] for row in rows if not row.get("task")]
    if missing:
        raise SystemExit(f"error: examples without a task field, e.g. {missing[0]}; rerun prepare-data")
    write_jsonl(a.out, rows)
    log.info("multi: %d training examples from %d tasks -> %s", len(rows), len(a.inputs), a.out)


def cmd_sft(a) -> None:
    from ehrmind import training
    from ehrmind.tasks.base import balanced_subsample
    if (a.train is None) == (a.trajectories is None) or (a.train is not None and a.task is None):
        raise SystemExit("error: sft: give either --task and --train (the EHRMind warm-up) or --trajectories "
                         "(EAG-RL stage 1: the rows `ehrmind mcts` kept)")
    if a.trajectories is not None:
        from ehrmind.io import read_jsonl
        summary = training.sft_trajectories(a.model, read_jsonl(a.trajectories), a.settings, a.seed, Path(a.out),
                                            Path(a.log_dir), a.trust_remote_code, a.precision, where=a.trajectories,
                                            stage=a.stage or "eag_sft")
        log.info("sft done: %s", summary)
        return
    train = balanced_subsample(_examples(a.train), a.settings.get("examples_per_category"), a.seed)
    summary = training.sft(_training_task(a.task), a.model, train, a.settings, a.seed,
                           Path(a.out), Path(a.log_dir), a.trust_remote_code, a.precision, stage=a.stage or "sft")
    log.info("sft done: %s", summary)


def cmd_grpo(a) -> None:
    from ehrmind import training
    if a.method == "ehrmind":
        if a.reward is None or a.experts or a.method_settings:
            raise SystemExit("error: grpo --method ehrmind: give --reward (the reward block); --experts and "
                             "--method-settings are EAG-RL's")
        summary = training.grpo(_training_task(a.task), a.model, _examples(a.train), a.settings, a.reward,
                                a.seed, Path(a.out), Path(a.log_dir), a.stage or "rlvr", a.trust_remote_code,
                                a.precision)
        log.info("grpo done: %s", summary)
        return
    from ehrmind.methods.eagrl import grpo as eag
    from ehrmind.methods.eagrl.reward import read_experts
    if not a.experts:
        raise SystemExit(f"error: grpo --method {a.method}: give --experts (ranked_features.jsonl)")
    train, experts = _examples(a.train), read_experts(a.experts)
    eag.check_experts(train, experts, a.experts)
    try:
        method = eag.method(a.method, experts, a.reward, a.method_settings, a.settings["max_prompt_length"])
    except ValueError as exc:
        raise SystemExit(f"error: grpo: {exc}") from None
    summary = training.run_grpo(method, a.model, train, a.settings, a.seed, Path(a.out), Path(a.log_dir),
                                a.stage or a.method, a.trust_remote_code, a.precision)
    log.info("grpo done: %s", summary)


def cmd_evaluate(a) -> None:
    from ehrmind.evaluate import EvalJob, evaluate
    from ehrmind.tasks import DataError, get_task
    if not len(a.task) == len(a.test) == len(a.settings) == len(a.out):
        raise SystemExit("error: give --task, --test, --settings and --out once per evaluation, in the same order")
    cell = dict(kv.split("=", 1) for kv in a.cell)
    jobs = [EvalJob(get_task(t), _examples(test), settings, Path(out), {**cell, "task": t})
            for t, test, settings, out in zip(a.task, a.test, a.settings, a.out)]
    if a.method == "ehrmind":
        if a.reward is None or a.experts or a.style:
            raise SystemExit("error: evaluate --method ehrmind: give --reward (the reward block); --experts and "
                             "--style are EAG-RL's")
        evaluate(a.model, jobs, a.reward, a.seed, a.trust_remote_code, a.precision)
        return
    from ehrmind.methods.eagrl import evaluate as eag
    from ehrmind.methods.eagrl.reward import read_experts
    if len(a.experts or []) != len(jobs):
        raise SystemExit("error: evaluate --method eagrl: give --experts (ranked_features.jsonl) once per --task")
    try:
        eag.evaluate(a.model, jobs, [read_experts(path) for path in a.experts], a.reward, a.style or "decompose",
                     a.seed, a.trust_remote_code, a.precision)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise SystemExit(f"error: evaluate: {exc}") from None


def cmd_passk(a) -> None:
    from ehrmind.methods.ehrmind import passk
    passk.sample(a.model, _examples(a.train), a.settings, a.reward, a.seed, Path(a.out),
                 a.trust_remote_code, a.precision)


def cmd_gate(a) -> None:
    from ehrmind.methods.ehrmind import passk
    passk.gate(a.samples, a.settings, a.train_task, Path(a.out), a.model_name, a.start)


def cmd_tables(a) -> None:
    from ehrmind import tables
    written = tables.build(a.metrics, Path(a.out), seed=a.seed, transfer_dirs=a.transfer,
                           gate_files=a.passk, training_dirs=a.training, expert_files=a.experts,
                           robustness_paths=a.robustness, n_resamples=a.n_resamples, eagrl_paths=a.eagrl,
                           eagrl_training=a.eagrl_training)
    for path in written:
        print(path)


def cmd_figures(a) -> None:
    from ehrmind.report import figures
    for path in figures.write(a.outputs, cells=a.cells, transfer_table=a.transfer_table, training=a.training):
        print(path)


def cmd_report_pages(a) -> None:
    from ehrmind.report import pages
    for path in pages.write(a.outputs, a.tables, a.config, a.config_file, a.cells):
        print(path)


def cmd_expert(a) -> None:
    from ehrmind.experts import concare, data
    from ehrmind.tasks import DataError
    from ehrmind.tasks.ehr import cohort
    if a.task not in cohort.SPECS:
        raise SystemExit(f"error: expert: task {a.task!r} is not a structured-EHR task ({', '.join(cohort.SPECS)})")
    if (a.train is None) != (a.test is None) or (a.train is None and a.data is None):
        raise SystemExit("error: expert: give --train and --test (prepare-data JSONL) or --data")
    spec = cohort.SPECS[a.task]
    planted = None
    try:
        if a.train is not None:
            train, test = data.from_examples(_examples(a.train), a.train), data.from_examples(_examples(a.test), a.test)
        else:
            train, test = (data.from_records(cohort.records_for(spec, split, a.data, a.seed), spec.target)
                           for split in ("train", "test"))
        if a.data is not None and str(a.data.get("source") or "embedded") == "embedded":
            planted = cohort.planted(spec)   # the generator's drivers: precision@k of the ranking
        expert, metrics = concare.train_expert(train, test, a.settings, a.seed)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise SystemExit(f"error: expert: {exc}") from None
    metrics = concare.write_results(a.out, expert, {**metrics, "task": a.task,
                                                    "input": "jsonl" if a.train else "data config"},
                                    {"train": train, "test": test}, planted)
    t = metrics["test"]
    log.info("expert %s: test AUROC %.3f (sd %.3f), AUPRC %.3f (sd %.3f), %.1f s -> %s", a.task, t["auroc"],
             t["auroc_sd"], t["auprc"], t["auprc_sd"], metrics["train_seconds"], a.out)


def cmd_subsample(a) -> None:
    from ehrmind.io import write_jsonl
    from ehrmind.tasks.base import balanced_subsample
    examples = _examples(a.split)
    kept = balanced_subsample(examples, a.per_category or None, a.seed)
    write_jsonl(a.out, [ex.to_json() for ex in kept])
    log.info("%s: %d of %d examples (%s per category) -> %s", a.split, len(kept), len(examples),
             a.per_category or "all", a.out)


def cmd_eag_warmup(a) -> None:
    from ehrmind.io import write_jsonl
    from ehrmind.methods.eagrl import warmup
    rows = warmup.rows(_examples(a.train))
    write_jsonl(a.out, rows)
    log.info("EAG-RL format warm-up: %d rule-built trajectories -> %s", len(rows), a.out)


def cmd_compare_reference(a) -> None:
    from ehrmind import reproduce
    result = reproduce.compare(Path(a.reference), Path(a.run), Path(a.out) if a.out else None)
    print(reproduce.report(result))


def cmd_mcts(a) -> None:
    from ehrmind.methods.eagrl import stage1
    from ehrmind.tasks import DataError
    try:
        stage1.run(a.model, _examples(a.train), a.experts, a.settings, a.reward, a.seed, Path(a.out),
                   a.trust_remote_code, a.precision)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise SystemExit(f"error: mcts: {exc}") from None


def cmd_bench(a) -> None:
    from ehrmind import bench
    bench.run(a.model, [int(b) for b in a.batch_sizes.split(",")], a.new_tokens, a.passk_n, a.precision,
              Path(a.out) if a.out else None, training=not a.no_training, profile=a.profile)


def cmd_prefetch(a) -> None:
    from ehrmind import prefetch
    prefetch.run(a.config, a.dry_run)


def cmd_unlock_stale(a) -> None:
    from ehrmind import runlock
    outcome = runlock.clear_stale(a.directory)
    if outcome.holders:
        raise SystemExit(f"error: {outcome.message}; wait for that run or stop it")
    print(outcome.message)


def cmd_launch(a) -> None:
    import os
    from ehrmind import launch
    n = a.gpus if a.gpus is not None else int(os.environ.get("EHRMIND_GPUS") or 0)
    code = launch.run(a.command, n, a.accelerate_config)
    if code:
        raise SystemExit(code)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ehrmind", description=(
        "EHRMind reproducibility suite: data, training (SFT, GRPO), evaluation and tables. "
        "Normally called by the Snakemake workflow; see README.md."))
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, func, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    def common(sp, *, seed=True, trust=True, task=True):
        if task:
            sp.add_argument("--task", required=True, help="task name: medcalc, trec_ct, ehrshot; for sft "
                            "and grpo also multi (examples keep their own task)")
        if seed:
            sp.add_argument("--seed", type=int, default=0)
        if trust:
            sp.add_argument("--trust-remote-code", action="store_true")
            sp.add_argument("--precision", choices=PRECISIONS, default="auto",
                            help="auto: bf16 where the hardware does it natively (CUDA, AVX512-BF16/AMX CPUs)")

    sp = verb("validate-config", cmd_validate_config, "check a run config against the schema")
    sp.add_argument("config")
    sp.add_argument("--show", action="store_true", help="print the config with defaults filled in")

    sp = verb("prepare-data", cmd_prepare_data, "write a task's train and test splits as JSONL")
    common(sp, trust=False)
    sp.add_argument("--data", type=_json, default={}, help="the task's config block as JSON")
    sp.add_argument("--train-out", help="where the train split goes (omit to skip it)")
    sp.add_argument("--test-out", help="where the test split goes (omit to skip it)")

    sp = verb("merge-train", cmd_merge_train, "concatenate training splits into the `multi` training set")
    sp.add_argument("inputs", nargs="+", help="train.jsonl files of the tasks")
    sp.add_argument("--out", required=True)

    sp = verb("prepare-model", cmd_prepare_model, "materialize a model spec once; write a reference JSON")
    sp.add_argument("--spec", required=True, help="embedded:NAME, tiny:SEED, hub id or local path")
    sp.add_argument("--cache", help="folder for materialized local models (default .cache/ehrmind)")
    sp.add_argument("--out", required=True, help="reference JSON to write")

    sp = verb("sft", cmd_sft, "SFT with TRL SFTTrainer (full or LoRA): EHRMind's warm-up on a task's training "
              "split (--task, --train), or EAG-RL stage 1 on MCTS trajectories (--trajectories)")
    common(sp, task=False)
    sp.add_argument("--task", help="task name: medcalc, trec_ct, ehrshot or multi (with --train)")
    sp.add_argument("--model", required=True, help="checkpoint dir or model reference JSON")
    sp.add_argument("--train", help="training split JSONL")
    sp.add_argument("--trajectories", help="trajectories.jsonl written by `ehrmind mcts` (instead of --task/--train)")
    sp.add_argument("--stage", help="label for the summary: sft (default) or primer; with --trajectories, eag_sft "
                    "(default) or eag_warmup")
    sp.add_argument("--settings", type=_json, required=True, help="the config's sft block as JSON")
    sp.add_argument("--out", required=True, help="checkpoint directory to write")
    sp.add_argument("--log-dir", required=True, help="directory for train_log.jsonl, summary, curves PNG")

    sp = verb("grpo", cmd_grpo, "RL with TRL's GRPOTrainer: EHRMind's RLVR with the task's rule-checked reward "
              "(--method ehrmind), or EAG-RL stage 2 and its baselines with the EAG reward (--method eagrl, "
              "grpo_baseline, dapo; ehrmind/methods/eagrl/grpo.py)")
    common(sp)
    sp.add_argument("--method", choices=("ehrmind", "eagrl", "grpo_baseline", "dapo"), default="ehrmind")
    sp.add_argument("--model", required=True)
    sp.add_argument("--train", required=True)
    sp.add_argument("--settings", type=_json, required=True, help="the config's grpo block as JSON")
    sp.add_argument("--reward", type=_json, help="ehrmind: the config's reward block as JSON (required); EAG-RL "
                    "methods: the EAG reward JSON (preset, lam, beta, w_loglik, w_sep, w_att, clip_eps, top_k, "
                    "unparseable, unmatched_count; default: the paper preset)")
    sp.add_argument("--experts", help="EAG-RL methods: ranked_features.jsonl written by `ehrmind expert`")
    sp.add_argument("--method-settings", type=_json, default={},
                    help="EAG-RL methods, JSON: adaptive_clip, eps_min_high, eps_max_high, eps_no_features (eagrl), "
                         "loss_type, epsilon, epsilon_high, beta, mask_truncated_completions, updates_per_generation "
                         "(over the method's defaults; ehrmind/methods/eagrl/grpo.py)")
    sp.add_argument("--stage", help="label for logs (rlvr or sft_rlvr; EAG-RL methods: default the method)")
    sp.add_argument("--out", required=True, help="checkpoint directory to write")
    sp.add_argument("--log-dir", required=True, help="directory for train_log.jsonl, summary, curves PNG")

    sp = verb("evaluate", cmd_evaluate, "evaluate a model on test splits: predictions.jsonl, metrics.json "
              "for each. Repeat --task/--test/--settings/--out to evaluate one loaded model on several tasks.")
    common(sp, task=False)
    sp.add_argument("--model", required=True)
    sp.add_argument("--task", action="append", required=True, help="task name (repeatable)")
    sp.add_argument("--test", action="append", required=True, help="test split JSONL (repeatable)")
    sp.add_argument("--settings", action="append", type=_json, required=True,
                    help="the generation block as JSON, with the task's overrides (repeatable)")
    sp.add_argument("--reward", type=_json, help="ehrmind: the reward block as JSON (required); eagrl: the EAG "
                    "reward JSON, for R_att's top_k (default: the paper preset)")
    sp.add_argument("--method", choices=("ehrmind", "eagrl"), default="ehrmind",
                    help="eagrl: EAG-RL's evaluation of structured-EHR tasks (AUROC, AUPRC, R_att; "
                         "ehrmind/methods/eagrl/evaluate.py)")
    sp.add_argument("--style", choices=("decompose", "think", "vanilla"),
                    help="eagrl: prompt style (default decompose, EAG-RL's format; think and vanilla are the "
                         "prompting baselines)")
    sp.add_argument("--experts", action="append", help="eagrl: ranked_features.jsonl (repeatable, one per --task)")
    sp.add_argument("--cell", nargs="*", default=[], metavar="KEY=VALUE",
                    help="labels stored in metrics.json (the task label is added per evaluation)")
    sp.add_argument("--out", action="append", required=True,
                    help="directory for predictions.jsonl and metrics.json (repeatable)")

    sp = verb("passk", cmd_passk, "Pass@k diagnostic: sample n completions per training item from a model, "
              "score them; writes samples.jsonl and sampling.json")
    common(sp, task=False)
    sp.add_argument("--model", required=True, help="the base model (reference JSON or checkpoint)")
    sp.add_argument("--train", required=True, help="training split JSONL (each example names its task)")
    sp.add_argument("--settings", type=_json, required=True,
                    help="JSON: n, k, temperature, top_p, items_per_category, batch_size, max_new_tokens, "
                         "max_prompt_tokens")
    sp.add_argument("--reward", type=_json, required=True)
    sp.add_argument("--out", required=True, help="directory for samples.jsonl and sampling.json")

    sp = verb("gate", cmd_gate, "summarize stored pass@k samples (pass@1, pass@k, reliable pass@k, entropy) "
              "and decide: rlvr alone, or sft_rlvr (SFT warm-up first); writes gate.json")
    sp.add_argument("samples", nargs="+", help="samples.jsonl files (several for the multi training task)")
    sp.add_argument("--train-task", required=True, help="the training task the decision is for")
    sp.add_argument("--model-name", required=True, help="the model's name in the config (a label for tables)")
    sp.add_argument("--start", choices=["base", "primer"], default="base",
                    help="the checkpoint sampled: the base model (EHRMind), or the suite's primer (passk.primer_steps)")
    sp.add_argument("--settings", type=_json, required=True,
                    help="JSON: k, threshold, thresholds (per task), reliable (rules)")
    sp.add_argument("--out", required=True, help="gate.json to write")

    sp = verb("tables", cmd_tables, "build Markdown, LaTeX and CSV tables from metrics.json files")
    sp.add_argument("metrics", nargs="+", help="metrics.json files (predictions.jsonl beside each)")
    sp.add_argument("--transfer", nargs="*", default=[], metavar="DIR",
                    help="transfer rule outputs (<DIR>/<task>/metrics.json) for the transfer matrix")
    sp.add_argument("--passk", nargs="*", default=[], metavar="GATE_JSON",
                    help="gate.json files: pass@k tables per model and the pass@k-vs-RLVR-gain figure")
    sp.add_argument("--training", nargs="*", default=[], metavar="DIR",
                    help="training log dirs (<model>/<task>/<stage>) for the skipped pipeline's cost")
    sp.add_argument("--experts", nargs="*", default=[], metavar="METRICS_JSON",
                    help="the expert model's metrics.json per structured-EHR task (its row of the ehr table)")
    sp.add_argument("--robustness", nargs="*", default=None, metavar="METRICS_JSON",
                    help="cells on shuffled-feature-order test records (the robustness table)")
    sp.add_argument("--eagrl", nargs="*", default=[], metavar="METRICS_JSON",
                    help="EAG-RL cells (ehrmind evaluate --method eagrl): the eagrl and eagrl_ablation tables")
    sp.add_argument("--eagrl-training", nargs="*", default=[], metavar="DIR",
                    help="EAG-RL training log dirs (<model>/<task>/<method>/seed<S>): rollout R_att per step")
    sp.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples for AUROC/AUPRC mean ± sd")
    sp.add_argument("--out", required=True, help="folder for the tables")
    sp.add_argument("--seed", type=int, default=0, help="bootstrap seed")

    sp = verb("figures", cmd_figures, "draw the report's figures from result files; each output's name says "
              "which: stages_<task>, roc_pr_<task>, transfer, training_<model> (.svg, .png or .pdf)")
    sp.add_argument("outputs", nargs="+", metavar="OUT", help="figure files to write")
    sp.add_argument("--cells", nargs="*", default=[], metavar="PATH",
                    help="metrics.json files, folders holding them, or globs (predictions.jsonl beside each)")
    sp.add_argument("--transfer-table", help="tables/transfer.csv, for the transfer heatmap")
    sp.add_argument("--training", nargs="*", default=[], metavar="PATH",
                    help="train_log.jsonl files, training log folders, or globs, for the GRPO curves")

    sp = verb("report-pages", cmd_report_pages, "write the report's HTML pages: <table>.html from "
              "<tables>/<table>.md, run.html (config, versions, commit, device), landing.html (the main table)")
    sp.add_argument("outputs", nargs="+", metavar="OUT", help="pages to write")
    sp.add_argument("--tables", required=True, help="the run's tables folder")
    sp.add_argument("--config", type=_json, required=True, help="the validated run config as JSON")
    sp.add_argument("--config-file", nargs="*", default=[], help="the config files the run was given")
    sp.add_argument("--cells", nargs="*", default=[], metavar="PATH",
                    help="metrics.json files, folders or globs (their provenance: versions, commit, device)")

    sp = verb("expert", cmd_expert, "train the ConCare expert on a structured-EHR task (tjh_mortality, "
              "mimic4_mortality, mimic4_readmission); writes metrics.json (test AUROC, AUPRC) and "
              "ranked_features.jsonl (each patient's features ranked by attention, with the top k)")
    sp.add_argument("--task", required=True, help="tjh_mortality, mimic4_mortality or mimic4_readmission")
    sp.add_argument("--train", help="training split JSONL written by prepare-data (with --test)")
    sp.add_argument("--test", help="test split JSONL written by prepare-data (with --train)")
    sp.add_argument("--data", type=_json, help="the task's data config as JSON: the data, without --train/--test; "
                    "with them, only to know whether the cohort is embedded (then precision@k of the planted features)")
    sp.add_argument("--settings", type=_json, default={},
                    help="JSON: hidden, heads, ff, attention_hidden, dropout, epochs, batch_size, lr, weight_decay, "
                         "decov_weight, top_k, n_resamples, final_values (defaults in ehrmind/experts/concare.py)")
    sp.add_argument("--seed", type=int, default=0, help="training seed; with --data also the data seed")
    sp.add_argument("--out", required=True, help="folder for metrics.json and ranked_features.jsonl")

    sp = verb("subsample", cmd_subsample, "a fixed, seeded, category-balanced subset of a split (the transfer "
              "matrix's test items)")
    sp.add_argument("split", help="a split JSONL written by prepare-data")
    sp.add_argument("--per-category", type=int, default=0, help="examples per category (0: all)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", required=True, help="the subset JSONL to write")

    sp = verb("eag-warmup", cmd_eag_warmup, "rule-built EAG-RL trajectories for a format warm-up (this suite's "
              "device for models that never write EAG-RL's layout; ehrmind/methods/eagrl/warmup.py), in the "
              "layout `sft --trajectories` trains on")
    sp.add_argument("--train", required=True, help="a structured-EHR task's training split JSONL (prepare-data)")
    sp.add_argument("--out", required=True, help="the trajectories JSONL to write")

    sp = verb("compare-reference", cmd_compare_reference, "compare a run's cells with the committed reference: "
              "a paired test per cell on the same items (Holm-adjusted) and the verdict, reproduced within noise "
              "or which cells differ; byte identity reported apart, with the hardware of each side")
    sp.add_argument("--reference", default="results/reference/embedded", help="the reference run's results folder")
    sp.add_argument("--run", default="results/embedded", help="this run's results folder")
    sp.add_argument("--out", help="also write the comparison as JSON here")


    sp = verb("mcts", cmd_mcts, "EAG-RL stage 1: expert-guided MCTS over reasoning steps on a structured-EHR "
              "task's training split; writes trajectories.jsonl (the kept trajectories, the rows `sft "
              "--trajectories` trains on) and mcts.json (cost and yield)")
    common(sp, task=False)
    sp.add_argument("--model", required=True, help="the model that samples (reference JSON or checkpoint)")
    sp.add_argument("--train", required=True, help="training split JSONL (prepare-data)")
    sp.add_argument("--experts", required=True, help="ranked_features.jsonl written by `ehrmind expert`")
    sp.add_argument("--settings", type=_json, default={},
                    help="JSON: iterations, max_depth, branching, rollouts, c_uct, keep, min_confidence, min_att, "
                         "correct_only, step and rollout ({max_new_tokens, temperature, top_p, stop}), "
                         "patients_per_class, batch_size, backend (defaults: ehrmind/methods/eagrl/mcts.py, stage1.py)")
    sp.add_argument("--reward", type=_json, default={},
                    help="EAG-RL reward JSON: preset (paper|code), lam, beta, w_loglik, w_sep, w_att, clip_eps, top_k, "
                         "unparseable, unmatched_count (defaults: ehrmind/methods/eagrl/reward.py)")
    sp.add_argument("--out", required=True, help="folder for trajectories.jsonl and mcts.json")

    sp = verb("bench", cmd_bench, "measure this machine's ceiling (matmul GFLOP/s, memory GB/s) and the suite's "
              "workloads against it: greedy evaluation, pass@k sampling (each with its matmul bound: the "
              "tokens/s its FLOPs allow at the matmul rates of its own row counts), an SFT step, a GRPO step")
    sp.add_argument("--model", default="embedded:smollm2-135m-instruct", help="model spec or checkpoint")
    sp.add_argument("--batch-sizes", default="1,8,32,64", help="greedy evaluation batch sizes")
    sp.add_argument("--new-tokens", type=int, default=64, help="new tokens per generation")
    sp.add_argument("--passk-n", type=int, default=12, help="samples per prompt for the pass@k workload")
    sp.add_argument("--precision", choices=PRECISIONS, default="auto")
    sp.add_argument("--no-training", action="store_true", help="skip the SFT and GRPO steps")
    sp.add_argument("--profile", action="store_true", help="also print the operators by self CPU time of one greedy batch "
                    "(the largest) and of the GRPO steps: where the gap to the ceiling goes")
    sp.add_argument("--out", help="also write the figures as JSON here")

    sp = verb("prefetch", cmd_prefetch, "download every hub model and dataset a run config names into the "
              "hub, datasets and ir_datasets caches, so the run works with HF_HUB_OFFLINE=1; with "
              "HF_HUB_OFFLINE=1 set, check that they are cached")
    sp.add_argument("--config", required=True, help="run config (YAML)")
    sp.add_argument("--dry-run", action="store_true", help="list what would be fetched; download nothing")

    sp = verb("unlock-stale", cmd_unlock_stale, "remove the Snakemake lock a killed run left in a directory, "
              "only when no live Snakemake process works there (fails, naming it, when one does)")
    sp.add_argument("--directory", default=".", help="the workflow's working directory (default: here)")

    sp = verb("launch", cmd_launch, "run a training verb (sft, grpo) on the job's GPUs: plainly on 0 or 1, "
              "under accelerate launch with FSDP on more (one process per GPU)")
    sp.add_argument("--gpus", type=int, help="number of GPUs (default: EHRMIND_GPUS, which the GPU rules set)")
    sp.add_argument("--accelerate-config", default="workflow/accelerate/fsdp.yaml",
                    help="accelerate config for more than one GPU (default: %(default)s)")
    sp.add_argument("command", nargs=argparse.REMAINDER, metavar="VERB ...", help="the ehrmind verb and its arguments")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # TRL still calls transformers APIs deprecated for v6; the notices only bury the progress lines.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    from ehrmind.config import ConfigError
    from ehrmind.tasks import DataError
    from ehrmind import devices
    from ehrmind.prefetch import PrefetchError
    from ehrmind import allocator, exact
    exact.apply()
    allocator.keep_freed_memory()   # large activations reuse freed memory instead of fresh pages
    try:
        devices.claim_for_job()   # a GPU rule's own device(s) before anything starts CUDA
        args.func(args)
    except (ConfigError, DataError, devices.GPUUnavailable, PrefetchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
