"""Run configuration: YAML validated against ehrmind/schemas/config.schema.yaml,
defaults filled in. Errors name the file, the key and what was expected."""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    pass


def schema() -> dict[str, Any]:
    return yaml.safe_load(resources.files("ehrmind").joinpath("schemas/config.schema.yaml").read_text())


def _fill_defaults(instance: Any, node: dict[str, Any]) -> None:
    if not isinstance(instance, dict):
        return
    for key, sub in node.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in node.get("properties", {}):
                _fill_defaults(value, extra)


def validate(config: dict[str, Any], origin: str = "config") -> dict[str, Any]:
    """Return a validated copy of `config` with defaults filled in, or raise ConfigError."""
    config = copy.deepcopy(config)
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            expected = e.schema.get("type") or e.schema.get("enum") or e.validator
            lines.append(f"  key '{key}': {e.message} (expected {expected})")
        raise ConfigError(f"{origin}: invalid configuration\n" + "\n".join(lines))
    _fill_defaults(config, schema())
    _check_rules(config, origin)
    _check_task_overrides(config, origin)
    return config


def _check_task_overrides(config: dict[str, Any], origin: str) -> None:
    """A task's `sft:` / `grpo:` block overrides keys of the global block: each key must exist
    there, and the merged block must still be valid."""
    problems = []
    for task, block in config["tasks"].items():
        for name in ("sft", "grpo"):
            own = block.get(name) or {}
            node = schema()["properties"][name]
            for key in sorted(set(own) - set(node["properties"])):
                problems.append(f"key 'tasks.{task}.{name}.{key}': not a key of the {name} block "
                                f"(expected one of {', '.join(node['properties'])})")
            merged = {**config[name], **own}
            for e in jsonschema.Draft202012Validator(node).iter_errors(merged):
                key = ".".join(str(p) for p in e.absolute_path)
                if key.split(".")[0] in own:
                    problems.append(f"key 'tasks.{task}.{name}.{key}': {e.message}")
    if problems:
        raise ConfigError(f"{origin}: invalid configuration\n" + "\n".join(f"  {line}" for line in problems))


def _check_rules(config: dict[str, Any], origin: str) -> None:
    """Rules the schema cannot express: n >= k, a gate needs both stages it chooses between (the
    primer's audit, sft and sft_rlvr), and GRPO on several GPUs needs vLLM rollouts."""
    problems = []
    if config["resources"]["gpu"] > 1 and not config["grpo"]["use_vllm"]:
        problems.append("key 'grpo.use_vllm': a job on several GPUs (resources.gpu > 1) trains under FSDP, where "
                        "each rank's own decoding loop would stop at a different step; expected true (vLLM rollouts)")
    p = config["passk"]
    if p["enabled"] and p["n"] < p["k"]:
        problems.append(f"key 'passk.n': {p['n']} samples per item is fewer than passk.k = {p['k']} "
                        f"(expected n >= k for the unbiased pass@k estimator)")
    missing = [s for s in ("rlvr", "sft_rlvr") if s not in config["stages"]]
    if p["enabled"] and p["mode"] == "gated" and missing:
        problems.append(f"key 'stages': passk.mode 'gated' chooses between rlvr and sft_rlvr, "
                        f"but stages lacks {', '.join(missing)}")
    lacking = [s for s in ("sft", "sft_rlvr") if s not in config["stages"]]
    if p["enabled"] and p["primer_steps"] and lacking:
        problems.append(f"key 'passk.primer_steps': the primer's audit compares primer_rlvr with sft_rlvr, "
                        f"but stages lacks {', '.join(lacking)}")
    if problems:
        raise ConfigError(f"{origin}: invalid configuration\n" + "\n".join(f"  {line}" for line in problems))


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate(raw, str(path))
