"""EAG-RL's stages as verbs: MCTS served by a generation backend (`ehrmind mcts`), SFT on its
trajectories, GRPO with the EAG reward (EAG-RL, plain GRPO, DAPO) and EAG-RL evaluation with the
prompting baselines. Tiny models and scripted backends; every model call counted."""
import json

import pytest

from ehrmind import cli, models
from ehrmind.generation import Generation, chat
from ehrmind.io import read_json, read_jsonl, write_jsonl
from ehrmind.methods.eagrl import format as fmt
from ehrmind.methods.eagrl import mcts
from ehrmind.methods.eagrl.mcts import MCTSConfig, Patient
from ehrmind.methods.eagrl.sampler import BackendSampler
from ehrmind.tasks import get_task
from tests.test_eagrl_mcts import CFG, EXPERTS, FEATURES, QUESTION, Scripted, _by_path


@pytest.fixture(scope="module")
def tok(tiny_model):
    _, tokenizer = models.load(tiny_model, precision="fp32")
    return tokenizer


class ScriptedBackend:
    """A Backend whose model is test_eagrl_mcts.Scripted reading the decoded token ids."""
    name = "scripted"

    def __init__(self, tokenizer):
        self.tokenizer, self.calls, self.script = tokenizer, [], Scripted()

    def generate(self, prompts, spec):
        self.calls.append((len(prompts), spec))
        texts = [self.tokenizer.decode(p) for p in prompts]
        out = self.script(texts, spec.n, mcts.SamplingSpec(spec.max_new_tokens, spec.temperature, spec.top_p,
                                                           spec.stop))
        return [[Generation(t, 1) for t in row] for row in out]


def test_sampler_prompts_are_the_chat_continued(tok):
    sampler = BackendSampler(ScriptedBackend(tok))
    messages = fmt.build_messages("LDH 612 U/L", QUESTION, FEATURES)
    rendered = sampler.render(messages)
    assert sampler.encode(rendered) == chat.encode(tok, messages)          # the root: the generation prompt
    partial = fmt.render_step("Is LDH raised?", "Yes.") + "\n" + mcts.FINAL_PREFIX
    ids = sampler.encode(rendered + partial)
    assert ids == chat.encode(tok, [*messages, {"role": "assistant", "content": partial}])
    assert tok.decode(ids) == rendered + partial                           # exactly the text MCTS composed
    with pytest.raises(ValueError, match="does not start with a prompt rendered"):
        sampler.encode("some other prompt")


def test_search_through_the_backend_equals_search_on_the_text(tok):
    """The adapter changes nothing MCTS sees: same tree, same values, one generate call per
    sampler call with n samples per prompt, the stop strings passed on, a new seed each call."""
    direct, _ = mcts.search([Patient("p1", "LDH 612 U/L", 1, FEATURES)], EXPERTS, Scripted(), QUESTION, CFG)
    backend = ScriptedBackend(tok)
    sampler = BackendSampler(backend, seed=5)
    trees, calls = mcts.search([Patient("p1", "LDH 612 U/L", 1, FEATURES)], EXPERTS, sampler, QUESTION, CFG,
                               render=sampler.render)
    ours, theirs = _by_path(trees[0].root), _by_path(direct[0].root)
    assert {k: (v.visits, pytest.approx(v.value_sum)) for k, v in ours.items()} == \
        {k: (v.visits, v.value_sum) for k, v in theirs.items()}
    assert calls == sampler.calls == len(backend.calls) == 7
    assert [spec.n for _, spec in backend.calls] == [2, 1, 2, 1, 2, 2, 1]
    assert backend.calls[0][1].stop == CFG.step.stop and backend.calls[1][1].stop == CFG.rollout.stop
    assert len({spec.seed for _, spec in backend.calls}) == 7


def ehr_split(tmp_path, split="train", n=6):
    task = get_task("tjh_mortality")
    examples = task.load_split(split, {f"{split}_examples": n, "n_patients": 60}, 0)
    path = tmp_path / f"{split}.jsonl"
    write_jsonl(path, [ex.to_json() for ex in examples])
    return examples, path


def fake_experts(tmp_path, examples):
    """A ranked_features.jsonl naming each patient's record features, last first."""
    path = tmp_path / "ranked_features.jsonl"
    write_jsonl(path, [{"patient_id": ex.gold["patient_id"], "label": ex.gold["label"], "probability": 0.5,
                        "ranked": [[f, 1.0 / (i + 1)] for i, f in enumerate(reversed(ex.gold["features"]))],
                        "top_k": list(reversed(ex.gold["features"]))[:5]} for ex in examples])
    return path


def test_mcts_verb_on_a_tiny_model(tiny_model, tmp_path):
    examples, train = ehr_split(tmp_path)
    experts = fake_experts(tmp_path, examples)
    settings = {"iterations": 2, "max_depth": 1, "branching": 2, "rollouts": 1, "patients_per_class": 1,
                "step": {"max_new_tokens": 8}, "rollout": {"max_new_tokens": 8}, "batch_size": 8, "backend": "hf"}
    out = tmp_path / "mcts"
    assert cli.main(["mcts", "--model", str(tiny_model), "--train", str(train), "--experts", str(experts),
                     "--settings", json.dumps(settings), "--reward", "{}", "--seed", "1", "--out", str(out)]) == 0
    meta = read_json(out / "mcts.json")
    assert meta["patients"] == 2 and meta["per_class"] == {"0": 1, "1": 1}
    # a random model writes no step: the first call's candidates are all dead ends, nothing more is sampled
    assert meta["sampler_calls"] == 1 and meta["completions"] == 4 and meta["completions_per_patient"] == 2
    assert meta["format_rate"] == 0.0 and meta["kept"] == 0 and read_jsonl(out / "trajectories.jsonl") == []
    assert meta["generated_tokens"] > 0 and meta["settings"]["step"]["max_new_tokens"] == 8
    assert meta["settings"]["step"]["stop"] == list(MCTSConfig.step.stop) and meta["reward_config"]["lam"] == 0.6
    assert meta["provenance"]["packages"] and meta["seed"] == 1
    bad = {**settings, "depth": 3}
    with pytest.raises(SystemExit, match="unknown MCTS keys"):
        cli.main(["mcts", "--model", str(tiny_model), "--train", str(train), "--experts", str(experts),
                  "--settings", json.dumps(bad), "--out", str(out)])
    write_jsonl(experts, [])
    assert cli.main(["mcts", "--model", str(tiny_model), "--train", str(train), "--experts", str(experts),
                     "--settings", json.dumps(settings), "--out", str(out)]) == 2   # no ranking: a data error


SFT = {"method": "full", "epochs": 1, "learning_rate": 1e-3, "batch_size": 4, "max_length": 512,
       "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "gradient_checkpointing": False}


def scripted_trajectories(tmp_path):
    patients = [Patient("p1", "LDH 612 U/L", 1, FEATURES), Patient("p4", "LDH 300 U/L", 1, FEATURES)]
    trees, _ = mcts.search(patients, EXPERTS, Scripted(), QUESTION, CFG)
    path = tmp_path / "trajectories.jsonl"
    write_jsonl(path, mcts.sft_rows(trees, CFG))
    return path


def test_trajectory_rows_train_the_completion_after_the_generation_prompt(tok, tmp_path):
    from ehrmind import training
    rows = read_jsonl(scripted_trajectories(tmp_path))
    tokenized = training.trajectory_rows(tok, rows, 512)
    assert len(tokenized) == len(rows) == 4
    for row, t in zip(rows, tokenized):
        n_prompt = sum(label == -100 for label in t["labels"])
        assert t["input_ids"][:n_prompt] == chat.encode(tok, row["prompt"])   # what generation is prompted with
        assert t["labels"][:n_prompt] == [-100] * n_prompt and t["labels"][n_prompt:] == t["input_ids"][n_prompt:]
        assert tok.decode(t["labels"][n_prompt:-1]) == row["completion"][0]["content"]
        assert t["labels"][-1] == tok.eos_token_id
    with pytest.raises(ValueError, match="exceed sft max_length 64"):
        training.trajectory_rows(tok, rows, 64)
    from ehrmind.tasks import DataError
    with pytest.raises(DataError, match="row 1 .*field 'prompt'"):
        training.trajectory_rows(tok, [{**rows[0], "prompt": rows[0]["prompt"] + rows[0]["completion"]}], 512)
    with pytest.raises(DataError, match="field 'completion'"):
        training.trajectory_rows(tok, [{**rows[0], "completion": []}], 512)


def _weights(ref_or_dir):
    from pathlib import Path
    from safetensors.torch import load_file
    return load_file(Path(models.resolve(ref_or_dir)) / "model.safetensors")


def test_sft_verb_on_trajectories(tiny_model, tmp_path):
    path = scripted_trajectories(tmp_path)
    args = ["sft", "--model", str(tiny_model), "--settings", json.dumps(SFT), "--seed", "0"]
    assert cli.main([*args, "--trajectories", str(path), "--out", str(tmp_path / "ckpt"),
                     "--log-dir", str(tmp_path / "logs")]) == 0
    before, after = _weights(tiny_model), _weights(tmp_path / "ckpt")
    assert any(not (before[k] == after[k]).all() for k in before)
    summary = read_json(tmp_path / "logs/train_summary.json")
    assert summary["stage"] == "eag_sft" and summary["examples"] == 4 and summary["patients"] == 2
    assert summary["steps"] == 1 and summary["supervised_tokens"] > 0
    # nothing kept: nothing to train on, the checkpoint is the input model and the summary says so
    write_jsonl(path, [])
    assert cli.main([*args, "--trajectories", str(path), "--out", str(tmp_path / "same"),
                     "--log-dir", str(tmp_path / "same_logs")]) == 0
    assert all((before[k] == v).all() for k, v in _weights(tmp_path / "same").items())
    assert read_json(tmp_path / "same_logs/train_summary.json")["unchanged"] is True
    with pytest.raises(SystemExit, match="give either --task and --train"):
        cli.main([*args, "--trajectories", str(path), "--train", str(path), "--out", "x", "--log-dir", "y"])
