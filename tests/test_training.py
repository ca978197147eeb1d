"""SFT and GRPO really update weights (TRL on a tiny local model, a couple of steps)."""
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ehrmind import answer, models, training
from ehrmind.tasks import Example, Score

REWARD = {"format_ok": 0.1, "format_bad": -2.0, "correct": 1.0}


class AddOne:
    name = "add_one"
    answer_instructions = 'The answer JSON is {"answer": <number>}.'

    def score(self, obj, gold):
        return Score(obj.get("answer") == gold["x"], None, obj.get("answer"))


EXAMPLES = [Example(f"t{i}", "c", f"What is {i} plus 1?", {"x": i + 1}, f"{i} plus 1 is {i + 1}.",
                    {"answer": i + 1}) for i in range(8)]
SFT = {"method": "full", "epochs": 1, "learning_rate": 1e-3, "batch_size": 4, "max_length": 128,
       "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
       "gradient_checkpointing": False}
GRPO = {"max_steps": 2, "prompts_per_step": 2, "num_generations": 4, "max_completion_length": 8,
        "learning_rate": 1e-2, "beta": 0.001, "epsilon": 0.2, "temperature": 1.0, "top_p": 1.0,
        "use_vllm": False, "gradient_checkpointing": False}


def _weights(model_ref_or_dir: Path) -> dict:
    return load_file(Path(models.resolve(model_ref_or_dir)) / "model.safetensors")


def _changed(before: dict, after: dict) -> list[str]:
    return [k for k in before if not (before[k] == after[k]).all()]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_sft_updates_weights(tiny_model, tmp_path, method):
    summary = training.sft(AddOne(), str(tiny_model), EXAMPLES, {**SFT, "method": method}, 0,
                           tmp_path / "ckpt", tmp_path / "logs")
    after = _weights(tmp_path / "ckpt")
    changed = _changed(_weights(tiny_model), after)
    assert changed, "SFT left every weight unchanged"
    if method == "lora":   # adapter merged: plain keys, attention/MLP changed, embeddings frozen
        assert not any("lora" in k for k in after) and "model.embed_tokens.weight" not in changed
    assert summary["steps"] == 2 and summary["trained_tokens"] > 0
    log = [json.loads(line) for line in open(tmp_path / "logs/train_log.jsonl")]
    assert any("loss" in row for row in log)
    assert (tmp_path / "logs/training_curves.png").stat().st_size > 0


def test_grpo_updates_weights(tiny_model, tmp_path, monkeypatch):
    # A random tiny model never writes the format, so every rollout would get the same
    # reward and a zero advantage. Reward the letter count instead, to exercise the update.
    real_judge = answer.judge

    def varied(task, text, gold, cfg):
        j = real_judge(task, text, gold, cfg)
        return answer.Judged(j.parsed, j.score, float(len(text) % 5))

    monkeypatch.setattr(answer, "judge", varied)
    summary = training.grpo(AddOne(), str(tiny_model), EXAMPLES, GRPO, REWARD, 0, tmp_path / "ckpt",
                            tmp_path / "logs", "rlvr")
    assert _changed(_weights(tiny_model), _weights(tmp_path / "ckpt"))
    assert summary["steps"] == 2 and summary["generated_tokens"] > 0
    log = [json.loads(line) for line in open(tmp_path / "logs/train_log.jsonl")]
    assert any("reward" in row for row in log)


class AddTwo(AddOne):
    name = "add_two"
    answer_instructions = 'Reply {"answer": <number>}.'


def test_multi_task_examples_keep_their_own_task(tiny_model, tmp_path, monkeypatch):
    """`multi` training mixes tasks: each example is prompted and rewarded by its own task."""
    registry = {"add_one": AddOne, "add_two": AddTwo}
    monkeypatch.setattr(training, "get_task", lambda name: registry[name]())
    mixed = [Example(ex.id, ex.category, ex.question, {**ex.gold, "task": name}, ex.reasoning, ex.answer, name)
             for i, ex in enumerate(EXAMPLES) for name in ["add_one" if i % 2 else "add_two"]]
    tasks = training._tasks(None, mixed)
    assert sorted(tasks) == ["add_one", "add_two"]
    prompts = {ex.task: answer.build_messages(tasks[ex.task], ex)[0]["content"] for ex in mixed}
    assert prompts["add_one"] != prompts["add_two"]
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
