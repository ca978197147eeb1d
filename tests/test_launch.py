"""Multi-GPU training: `ehrmind launch` runs a verb plainly on 0-1 GPU and under accelerate
(FSDP, workflow/accelerate/fsdp.yaml) on more; accelerate accepts the config and the argv, and
the workers claim no device the launcher already holds."""
import json
import os
import stat
import sys

import pytest
import yaml

from ehrmind import cli, devices, launch
from tests.conftest import REPO

CONFIG = REPO / "workflow/accelerate/fsdp.yaml"


def test_no_prefix_for_zero_or_one_gpu():
    assert launch.launch_prefix(0, CONFIG) == [] and launch.launch_prefix(1, CONFIG) == []


def test_prefix_for_several_gpus():
    argv = launch.launch_prefix(4, CONFIG)
    port = int(argv[argv.index("--main_process_port") + 1])
    assert argv == ["accelerate", "launch", "--config_file", str(CONFIG), "--num_processes", "4",
                    "--num_machines", "1", "--main_process_port", str(port), "-m", "ehrmind.cli"]
    assert 1024 < port < 65536


def test_the_fsdp_config_is_what_accelerate_needs():
    raw = yaml.safe_load(CONFIG.read_text())
    assert raw["distributed_type"] == "FSDP" and raw["mixed_precision"] == "bf16" and raw["use_cpu"] is False
    fsdp = raw["fsdp_config"]
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True          # full shard
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT" and fsdp["fsdp_offload_params"] is False
    assert "# fsdp_offload_params: true" in CONFIG.read_text()                               # the option, commented
    from accelerate.commands.config.config_args import load_config_from_file
    assert type(load_config_from_file(str(CONFIG))).__name__ == "ClusterConfig"


def test_accelerate_turns_the_prefix_into_an_fsdp_launch(monkeypatch):
    """accelerate's own parser and checks on our argv, then the FSDP plugin its workers build."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env
    argv = launch.launch_prefix(2, CONFIG)
    args = launch_command_parser().parse_args(argv[2:] + ["sft", "--task", "medcalc"])
    args, *_ = _validate_launch_command(args)
    assert (args.use_fsdp, args.num_processes, args.module) == (True, 2, True)
    assert (args.training_script, args.training_script_args) == ("ehrmind.cli", ["sft", "--task", "medcalc"])
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    assert launch.fsdp_active()
    plugin = FullyShardedDataParallelPlugin()
    plugin.set_mixed_precision("bf16")
    import torch
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"
    assert plugin.mixed_precision_policy.param_dtype == torch.bfloat16


@pytest.fixture
def fake_accelerate(tmp_path, monkeypatch):
    """An `accelerate` on PATH that records its argv and environment."""
    record = tmp_path / "call.json"
    exe = tmp_path / "bin" / "accelerate"
    exe.parent.mkdir()
    exe.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                   f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(record)!r}, 'w'))\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    return record


def test_two_gpus_run_the_verb_under_accelerate(fake_accelerate, monkeypatch):
    monkeypatch.setenv("EHRMIND_GPUS", "2")
    monkeypatch.setenv("SLURM_JOB_ID", "1")   # the scheduler's devices: nothing to claim here
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.chdir(REPO)
    assert cli.main(["launch", "grpo", "--task", "medcalc", "--seed", "3"]) == 0
    call = json.loads(fake_accelerate.read_text())
    assert call["argv"][:2] == ["launch", "--config_file"]
    assert call["argv"][-7:] == ["-m", "ehrmind.cli", "grpo", "--task", "medcalc", "--seed", "3"]
    assert call["argv"][call["argv"].index("--num_processes") + 1] == "2"
    assert call["env"]["CUDA_VISIBLE_DEVICES"] == "2,3" and call["env"][launch.CLAIMED] == "2,3"


def test_workers_claim_nothing_the_launcher_holds(monkeypatch, tmp_path):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("EHRMIND_GPUS", "2")
    monkeypatch.setenv(launch.CLAIMED, "0,1")
    monkeypatch.setenv("EHRMIND_GPU_LOCK_DIR", str(tmp_path))
    assert devices.claim_for_job() == [] and list(tmp_path.iterdir()) == []


def test_one_gpu_runs_in_this_process(capsys):
    assert cli.main(["launch", "--gpus", "1", "validate-config", str(REPO / "workflow/config/tiny.yaml")]) == 0
    assert capsys.readouterr().out.strip().endswith("tiny.yaml: valid")


def test_more_processes_than_visible_gpus_is_an_error(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit, match="2 GPU processes asked for, but CUDA_VISIBLE_DEVICES shows 1"):
        launch.run(["sft", "--task", "medcalc"], 2)


def test_generation_verbs_are_not_launched_on_several_gpus():
    with pytest.raises(SystemExit, match="not 'evaluate'.*vLLM"):
        cli.main(["launch", "--gpus", "2", "evaluate", "--model", "m"])
