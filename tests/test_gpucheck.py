"""The GPU check's Python part runs on the CPU too: one MedCalc cell end to end (data, model,
baseline evaluation, GRPO) with the tiny model, and reports tokens/s and steps/s that match the
cell's own files. Also: the random-weights path from an exported model shape."""
import json

from ehrmind import gpucheck
from tests.conftest import REPO

FAST = ["--device", "cpu", "--test-per-category", "1", "--max-new-tokens", "6", "--grpo-steps", "1",
        "--config", str(REPO / "workflow/config/embedded.yaml")]


def test_one_medcalc_cell_on_the_cpu(tmp_path, model_cache, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert gpucheck.main([*FAST, "--model", "tiny:1", "--cache", str(model_cache), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "gpucheck.json").read_text())
    metrics = json.loads((tmp_path / "cells/baseline/metrics.json").read_text())
    assert result["device"] == "cpu" and result["eval_items"] == 7 == metrics["n"]   # one item per category
    assert result["eval_tokens_per_s"] == metrics["generated_tokens"] / metrics["wall_time_s"] > 0
    assert result["settings"]["generation"]["max_new_tokens"] == 6 and result["settings"]["grpo"]["max_steps"] == 1
    assert result["grpo_steps"] == 1 and result["grpo_steps_per_s"] > 0
    assert (tmp_path / "models/rlvr/config.json").is_file()
    assert "evaluation: " in out and "tokens/s" in out and "GRPO: " in out and "steps/s" in out


def test_random_weights_of_an_exported_shape(tmp_path, model_cache, monkeypatch):
    monkeypatch.chdir(REPO)
    shape = tmp_path / "shape"
    assert gpucheck.main(["--export-shape", str(shape), "--model", "tiny:1", "--cache", str(model_cache)]) == 0
    assert (shape / "config.json").is_file() and not list(shape.glob("*.safetensors"))
    out = tmp_path / "run"
    assert gpucheck.main([*FAST, "--model", str(shape), "--random-weights", "--out", str(out)]) == 0
    result = json.loads((out / "gpucheck.json").read_text())
    assert result["random_weights"] and result["eval_generated_tokens"] > 0
    assert list((out / "random-model").glob("*.safetensors"))


def test_settings_follow_common_smk():
    from argparse import Namespace
    from ehrmind import config
    cfg = config.load(REPO / "workflow/config/paper.yaml")
    data, gen, grpo = gpucheck.cell_settings(cfg, Namespace(test_per_category=None, max_new_tokens=None, grpo_steps=None))
    assert "max_new_tokens" not in data and data["source"] == "ncbi/MedCalc-Bench-v1.0"
    assert (gen["max_new_tokens"], gen["max_prompt_tokens"]) == (1500, 2048)      # medcalc's own lengths
    assert (grpo["max_completion_length"], grpo["max_prompt_length"]) == (1500, 2048)
