import pytest
import yaml

from ehrmind import config
from tests.conftest import REPO


def test_shipped_configs_are_valid():
    for path in (REPO / "workflow/config").glob("*.yaml"):
        cfg = config.load(path)
        assert cfg["models"] and cfg["tasks"] and cfg["stages"]


def test_defaults_are_filled():
    cfg = config.validate({"models": {"m": "tiny:1"}, "tasks": {"medcalc": {}}})
    assert cfg["reward"] == {"format_ok": 0.1, "format_bad": -2.0, "correct": 1.0, "wrong": 0.0}   # EHRMind's release
    assert cfg["grpo"]["beta"] == 0.001 and cfg["grpo"]["temperature"] == 0.6
    assert cfg["tasks"]["medcalc"]["source"] == "embedded"


def test_one_line_adds_a_model(tmp_path):
    raw = yaml.safe_load((REPO / "workflow/config/embedded.yaml").read_text())
    raw["models"]["qwen05"] = "Qwen/Qwen2.5-0.5B-Instruct"
    assert list(config.validate(raw)["models"])[-1] == "qwen05"


@pytest.mark.parametrize("patch, key, expected", [
    ({"sft": {"epochs": "two"}}, "sft.epochs", "number"),
    ({"grpo": {"num_generations": 1}}, "grpo.num_generations", "minimum"),
    ({"stages": ["baseline", "dpo"]}, "stages.1", "baseline"),
    ({"tasks": {"medcalc": {"train_per_category": "x"}}}, "tasks.medcalc.train_per_category", "integer"),
    ({"tasks": {"nosuch": {}}}, "tasks", "medcalc"),
    ({"models": {"bad name!": "x"}}, "models", "pattern"),
    ({"sft": {"learning_rte": 1e-5}}, "sft", "'learning_rte' was unexpected"),
])
def test_errors_name_key_and_expectation(tmp_path, patch, key, expected):
    raw = {"models": {"m": "tiny:1"}, "tasks": {"medcalc": {}}, **patch}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert str(path) in message and f"key '{key}'" in message and expected in message


def test_unreadable_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("models: [unclosed")
    with pytest.raises(config.ConfigError, match="bad.yaml"):
        config.load(path)
