"""SFT and GRPO really update weights (TRL on a tiny local model, a couple of steps); SFT
trains only the continuation after the prefill; GRPO's rollouts come from the suite's
backend; micro-batches and accumulation follow the config."""
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ehrmind import models, training
from ehrmind.generation.hf import HFBackend
from ehrmind.methods.ehrmind import answer, prompts
from ehrmind.tasks import Example
from tests.helpers import EchoTask

REWARD = {"format_ok": 0.1, "format_bad": -2.0, "correct": 1.0, "wrong": 0.0}


class AddOne(EchoTask):
    name = "add_one"


EXAMPLES = [Example(f"t{i}", "c", {"question": f"What is {i} plus 1?"}, {"x": i + 1}, f"{i} plus 1 is {i + 1}.",
                    {"answer": i + 1}) for i in range(8)]
SFT = {"method": "full", "epochs": 1, "learning_rate": 1e-3, "batch_size": 4, "max_length": 256,
       "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "gradient_checkpointing": False}
GRPO = {"max_steps": 2, "prompts_per_step": 2, "num_generations": 4, "max_completion_length": 8,
        "max_prompt_length": 256, "learning_rate": 1e-2, "beta": 0.001, "epsilon": 0.2, "temperature": 1.0,
        "top_p": 1.0, "loss_type": "dapo", "micro_batch_size": None, "rollout_batch_size": None,
        "use_vllm": False, "gradient_checkpointing": False}


def _weights(model_ref_or_dir: Path) -> dict:
    return load_file(Path(models.resolve(model_ref_or_dir)) / "model.safetensors")


def _changed(before: dict, after: dict) -> list[str]:
    return [k for k in before if not (before[k] == after[k]).all()]


def test_sft_rows_train_only_the_continuation(tiny_model):
    _, tok = models.load(tiny_model)
    (row,) = training.sft_rows(tok, AddOne(), EXAMPLES[:1], 256)
    n_prompt = sum(label == -100 for label in row["labels"])
    prompt_ids, _ = prompts.encode(tok, AddOne.prompt, EXAMPLES[0].fields, None, sft=True)
    assert row["input_ids"][:n_prompt] == prompt_ids   # exactly what generation is prompted with
    assert tok.decode(row["input_ids"][:n_prompt]).endswith(prompts.PREFILL)
    target = tok.decode([t for t in row["labels"] if t != -100], skip_special_tokens=True)
    assert target == prompts.sft_target(EXAMPLES[0].reasoning, EXAMPLES[0].answer)
    assert row["labels"][-1] == tok.eos_token_id


@pytest.mark.parametrize("method", ["full", "lora"])
def test_sft_updates_weights(tiny_model, tmp_path, method):
    summary = training.sft(AddOne(), str(tiny_model), EXAMPLES, {**SFT, "method": method}, 0,
                           tmp_path / "ckpt", tmp_path / "logs")
    after = _weights(tmp_path / "ckpt")
    changed = _changed(_weights(tiny_model), after)
    assert changed, "SFT left every weight unchanged"
    if method == "lora":   # adapter merged: plain keys, attention/MLP changed, embeddings frozen
        assert not any("lora" in k for k in after) and "model.embed_tokens.weight" not in changed
    assert summary["steps"] == 2 and summary["trained_tokens"] > summary["supervised_tokens"] > 0
    log = [json.loads(line) for line in open(tmp_path / "logs/train_log.jsonl")]
    assert any("loss" in row for row in log)
    assert (tmp_path / "logs/training_curves.png").stat().st_size > 0
    assert not training.resume_dir(tmp_path / "ckpt").exists()


def test_sft_loss_is_the_mean_log_loss_of_the_labelled_tokens(tiny_model, tmp_path):
    """The first logged loss (before any update) equals a direct computation of the labelled
    tokens' mean negative log-likelihood: TRL's fused head scores only them (training.py)."""
    import torch
    net, tok = models.load(tiny_model, for_generation=False, precision="fp32")
    rows = training.sft_rows(tok, AddOne(), EXAMPLES[:4], 256)
    nll, count = 0.0, 0
    with torch.no_grad():
        for r in rows:
            logits = net(input_ids=torch.tensor([r["input_ids"]])).logits[0, :-1]
            labels = torch.tensor(r["labels"][1:])
            nll += torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum").item()
            count += int((labels != -100).sum())
    import trl.trainer.utils as trl_utils
    switch = trl_utils._use_triton
    training.sft(AddOne(), str(tiny_model), EXAMPLES[:4], {**SFT, "learning_rate": 1e-9}, 0, tmp_path / "ckpt",
                 tmp_path / "logs", precision="fp32")
    assert trl_utils._use_triton is switch   # TRL's switch is only turned for the SFT run
    first = next(json.loads(line) for line in open(tmp_path / "logs/train_log.jsonl") if "loss" in line)
    assert float(first["loss"]) == pytest.approx(nll / count, rel=1e-3)


def test_grpo_updates_weights_with_rollouts_from_the_backend(tiny_model, tmp_path, monkeypatch):
    # A random tiny model never writes the format, so every rollout would get the same
    # reward and a zero advantage. Reward the letter count instead, to exercise the update.
    real_judge = answer.judge
    seen = []

    def varied(task, text, gold, cfg):
        seen.append(text)
        j = real_judge(task, text, gold, cfg)
        return answer.Judged(j.parsed, j.score, float(len(text) % 5))

    monkeypatch.setattr(answer, "judge", varied)
    calls = []
    real_generate = HFBackend.generate

    def spy(self, prompts_, spec):
        calls.append((len(prompts_), spec.n))
        return real_generate(self, prompts_, spec)

    monkeypatch.setattr(HFBackend, "generate", spy)
    summary = training.grpo(AddOne(), str(tiny_model), EXAMPLES, GRPO, REWARD, 0, tmp_path / "ckpt",
                            tmp_path / "logs", "rlvr")
    assert calls == [(2, 4), (2, 4)]   # each step: 2 prompts, each encoded once for its 4 samples
    assert _changed(_weights(tiny_model), _weights(tmp_path / "ckpt"))
    assert summary["steps"] == 2 and summary["generated_tokens"] > 0
    log = [json.loads(line) for line in open(tmp_path / "logs/train_log.jsonl")]
    assert any("reward" in row for row in log) and len(seen) == 2 * 2 * 4 * 2   # two reward functions


def test_grpo_micro_batches_and_accumulation(tmp_path):
    cfg = {**GRPO, "prompts_per_step": 32, "num_generations": 12, "micro_batch_size": 2, "save_steps": 50,
           "use_vllm": True, "vllm_gpu_memory_utilization": 0.3, "vllm_enable_sleep_mode": True,
           "vllm_max_model_length": 5548}
    args = training.grpo_arguments(cfg, 0, "fp32", tmp_path)
    assert args["per_device_train_batch_size"] == 2 and args["gradient_accumulation_steps"] == 192
    assert args["steps_per_generation"] == 192 and args["num_iterations"] == 1
    assert args["vllm_mode"] == "colocate" and args["vllm_enable_sleep_mode"] and args["save_strategy"] == "steps"
    with pytest.raises(ValueError, match="not a multiple of micro_batch_size 5"):
        training.grpo_arguments({**cfg, "micro_batch_size": 5}, 0, "fp32", tmp_path)


class AddTwo(AddOne):
    name = "add_two"


def test_multi_task_examples_keep_their_own_task(tiny_model, tmp_path, monkeypatch):
    """`multi` training mixes tasks: each example is prompted and rewarded by its own task."""
    registry = {"add_one": AddOne, "add_two": AddTwo}
    monkeypatch.setattr(training, "get_task", lambda name: registry[name]())
    mixed = [Example(ex.id, ex.category, ex.fields, {**ex.gold, "task": name}, ex.reasoning, ex.answer, name)
             for i, ex in enumerate(EXAMPLES) for name in ["add_one" if i % 2 else "add_two"]]
    tasks = training._tasks(None, mixed)
    assert sorted(tasks) == ["add_one", "add_two"]
    judged_by = []
    real_judge = answer.judge

    def spy(task, text, gold, cfg):
        judged_by.append((task.name, gold["task"]))
        return real_judge(task, text, gold, cfg)

    monkeypatch.setattr(answer, "judge", spy)
    training.grpo(None, str(tiny_model), mixed, {**GRPO, "max_steps": 1}, REWARD, 0, tmp_path / "ckpt",
                  tmp_path / "logs", "rlvr")
    assert judged_by and all(by == owner for by, owner in judged_by)
    with pytest.raises(ValueError, match="names no task"):
        training._tasks(None, EXAMPLES)


RESUMABLE_JOB = """
import sys
from ehrmind import training
from ehrmind.methods.ehrmind import answer
from tests.test_training import EXAMPLES, GRPO, REWARD, AddOne
real = answer.judge   # a reward that varies within groups: a random tiny model never writes the format
answer.judge = lambda task, text, gold, cfg, j=None: answer.Judged(
    real(task, text, gold, cfg).parsed, real(task, text, gold, cfg).score, float(len(text) % 5))
training.grpo(AddOne(), sys.argv[1], EXAMPLES, {**GRPO, "max_steps": 3, "save_steps": 1}, REWARD, 0,
              training.Path(sys.argv[2]), training.Path(sys.argv[2] + "_logs"), "rlvr")
"""


def test_a_killed_grpo_job_resumes_from_its_checkpoint(tiny_model, tmp_path):
    """kill -9 after the first checkpoint; the rerun continues from it (not step 0) and ends with
    the weights of an uninterrupted run: rollouts are seeded by (seed, step), and the trainer
    restores optimizer, scheduler and RNG states and skips the batches already seen."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO
    script = tmp_path / "job.py"
    script.write_text(RESUMABLE_JOB)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def job(out: Path) -> list[str]:
        return [sys.executable, str(script), str(tiny_model), str(out)]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(job(killed), env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = training.resume_dir(killed) / "checkpoint-1" / "trainer_state.json"
    deadline = time.time() + 600
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert state.exists(), "no checkpoint was written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not killed.exists()   # the output is written only at the end, atomically
    subprocess.run(job(killed), env=env, cwd=REPO, check=True, capture_output=True)
    summary = json.loads((tmp_path / "killed_logs" / "train_summary.json").read_text())
    assert summary["resumed_from"] and summary["resumed_from"].endswith(("checkpoint-1", "checkpoint-2"))
    assert summary["steps"] == 3 and not training.resume_dir(killed).exists()
    whole = tmp_path / "whole"
    subprocess.run(job(whole), env=env, cwd=REPO, check=True, capture_output=True)
    assert _changed(_weights(tiny_model), _weights(whole)), "GRPO left the weights unchanged: nothing to compare"
    assert not _changed(_weights(whole), _weights(killed)), "the resumed run ended with other weights"


def test_shared_prompt_log_probabilities_equal_trls(tiny_model):
    """Each distinct prompt forwarded once gives TRL's per-token log-probs and entropies, and the
    same gradients, on left-padded prompts of two lengths, interleaved as TRL's shuffle leaves
    them, and right-padded completions."""
    import torch
    from trl.trainer.utils import add_fused_lm_head

    from ehrmind.shared_prompt import prompt_groups, shared_prompt_logps
    net, _ = models.load(tiny_model, for_generation=False, precision="fp32")
    torch.manual_seed(0)
    short, long = torch.randint(10, 500, (5,)), torch.randint(10, 500, (9,))
    prompts = torch.zeros(6, 9, dtype=torch.long)
    pmask = torch.zeros(6, 9, dtype=torch.long)
    for row in range(6):
        p = short if row in (0, 2, 5) else long
        prompts[row, 9 - len(p):], pmask[row, 9 - len(p):] = p, 1
    completions = torch.randint(10, 500, (6, 7))
    cmask = torch.ones(6, 7, dtype=torch.long)
    cmask[1, 4:] = 0
    cmask[4, 2:] = 0
    ids, mask = torch.cat([prompts, completions], 1), torch.cat([pmask, cmask], 1)
    groups, first = prompt_groups(prompts, pmask)
    assert [g == groups[0] for g in groups] == [True, False, True, False, False, True] and sorted(first) == [0, 1]

    ours, ours_h = shared_prompt_logps(net, ids, mask, 7, 0.7, compute_entropy=True)
    (ours * cmask).sum().backward()
    ours_grad = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    add_fused_lm_head(net, temperature=0.7, outputs=("log_probs", "entropy"))
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-7] = -100
    out = net(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    theirs, theirs_h = out.log_probs[:, -7:], out.entropy[:, -7:]
    (theirs * cmask).sum().backward()
    keep = cmask.bool()
    assert torch.allclose(ours[keep], theirs[keep], atol=1e-4) and torch.allclose(ours_h[keep], theirs_h[keep], atol=1e-4)
    for name, p in net.named_parameters():
        assert torch.allclose(ours_grad[name], p.grad, atol=1e-4, rtol=1e-3), name
