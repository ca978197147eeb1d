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
    assert len(meta["unparseable_examples"]) == 3 and all(len(t) <= 300 for t in meta["unparseable_examples"])
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


GRPO = {"max_steps": 1, "prompts_per_step": 2, "num_generations": 4, "max_completion_length": 256,
        "max_prompt_length": 1024, "learning_rate": 1e-2, "beta": 0.001, "epsilon": 0.2, "temperature": 1.0,
        "top_p": 1.0, "loss_type": "dapo", "micro_batch_size": None, "rollout_batch_size": None,
        "use_vllm": False, "gradient_checkpointing": False}


def scripted_completions(prompt_text: str) -> list[str]:
    """Four rollouts for one EAG-RL prompt: three well formed, naming different features of the
    record with different probabilities, and one unparseable."""
    import re
    features = re.search(r"Features in this record: (.*)\n", prompt_text).group(1).split(", ")
    final = "Will this patient die in hospital?"
    return [fmt.render_completion([("Is the last value abnormal?", "Yes.")], final, features[-2:], 0.8),
            fmt.render_completion([], final, features[:3], 0.3),
            fmt.render_completion([("Which values are high?", "Several.")], final, features[-5:], 0.6),
            "I am not sure."]


@pytest.fixture()
def scripted_rollouts(monkeypatch):
    """HFBackend.generate answering with scripted_completions (token ids of the text, then eos)."""
    from ehrmind.generation.hf import HFBackend
    seen = []

    def generate(self, prompts, spec):
        out = []
        for ids in prompts:
            prompt = self.tokenizer.decode(ids)
            texts = scripted_completions(prompt)[:spec.n]
            seen.extend((prompt, text) for text in texts)
            gens = []
            for text in texts:
                tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
                gens.append(Generation(text, len(tokens), tuple(tokens), (), tuple([-1.0] * len(tokens)), True))
            out.append(gens)
        return out

    monkeypatch.setattr(HFBackend, "generate", generate)
    return seen


def _grpo(tiny_model, tmp_path, name, method, *extra):
    examples, train = ehr_split(tmp_path, n=4)
    experts = fake_experts(tmp_path, examples)
    out, logs = tmp_path / f"{name}_ckpt", tmp_path / f"{name}_logs"
    assert cli.main(["grpo", "--method", method, "--task", "tjh_mortality", "--model", str(tiny_model),
                     "--train", str(train), "--experts", str(experts), "--settings", json.dumps(GRPO),
                     "--out", str(out), "--log-dir", str(logs), *extra]) == 0
    return examples, read_jsonl(logs / "train_log.jsonl"), read_json(logs / "train_summary.json"), out


def test_eagrl_grpo_logs_r_att_and_clips_adaptively(tiny_model, tmp_path, scripted_rollouts):
    from ehrmind.methods.eagrl.reward import RewardConfig, judge
    examples, history, summary, out = _grpo(tiny_model, tmp_path, "eagrl", "eagrl")
    assert summary["method"] == "eagrl" and summary["adaptive_clip"] and summary["stage"] == "eagrl"
    assert summary["generation_rounds"] == 1 and summary["steps"] == 2 == summary["updates_per_generation"]
    first, second = [h for h in history if "loss" in h]
    # the logged R_att, R_cls and parse-failure rate are those of the step's rollouts, judged by hand
    scored = []
    for prompt, text in scripted_rollouts:
        (ex,) = [e for e in examples if e.fields["record"].strip() in prompt]
        ranked = list(reversed(ex.gold["features"]))   # fake_experts
        scored.append(judge(text, ex.gold["label"], ex.gold["features"], ranked, RewardConfig()))
    parsed = [s for s in scored if s.parsed.ok]
    assert len(scored) == 8 and len(parsed) == 6
    assert first["rewards/parse_failure/mean"] == pytest.approx(2 / 8)
    assert first["rewards/r_att/mean"] == pytest.approx(sum(s.r_att for s in scored) / 8, rel=1e-5)
    assert first["rewards/r_cls/mean"] == pytest.approx(sum(s.r_cls for s in parsed) / 6, rel=1e-5)
    assert first["reward"] == pytest.approx(sum(s.reward for s in scored) / 8, rel=1e-5)
    assert summary["unparseable_rollouts"] == 2 and summary["r_att_first_step"] == first["rewards/r_att/mean"]
    # the adaptive clip saw feature tokens; its bounds lie in [0.2, 0.4]; the first update is on-policy
    # (ratio 1, nothing clipped), the second is not, so the bounds can act
    assert (first["eagrl/with_feature_tokens"] + second["eagrl/with_feature_tokens"]) / 2 == pytest.approx(3 / 4)
    assert all(0.2 - 1e-6 <= h["eagrl/eps_high/min"] <= h["eagrl/eps_high/max"] <= 0.4 + 1e-6 for h in (first, second))
    assert first["clip_ratio/region_mean"] == 0.0
    before, after = _weights(tiny_model), _weights(out)
    assert any(not (before[k] == after[k]).all() for k in before)


def test_dapo_runs_on_trls_trainer(tiny_model, tmp_path, scripted_rollouts):
    _, history, summary, _ = _grpo(tiny_model, tmp_path, "dapo", "dapo", "--reward", '{"lam": 1.0}')
    assert summary["method"] == "dapo" and not summary["adaptive_clip"] and summary["dynamic_sampling"] is False
    assert summary["method_settings"] == {"loss_type": "dapo", "epsilon_high": 0.28, "mask_truncated_completions": True,
                                          "beta": 0.0, "updates_per_generation": 2}
    assert summary["reward_config"]["lam"] == 1.0                      # the "without R_att" ablation's reward
    assert not any("eagrl/eps_high/mean" in h for h in history)
    assert any("rewards/r_att/mean" in h for h in history)             # still logged, weight 0


def test_method_settings_and_trainer_arguments(tmp_path):
    from ehrmind import training
    from ehrmind.methods.eagrl import grpo as eag
    from ehrmind.methods.eagrl.clip import EntropyClipGRPOTrainer
    from trl import GRPOConfig
    experts = {"1": ["LDH"]}

    def built(name, settings=None):
        m = eag.method(name, experts, {}, settings, 512)
        args = GRPOConfig(**training.grpo_arguments({**GRPO, **m.overrides}, 0, "fp32", tmp_path,
                                                    len(m.reward_funcs)), **m.config)
        return m, args

    m, args = built("eagrl")
    assert m.trainer_class is EntropyClipGRPOTrainer and m.trainer_kwargs == {"eps_min_high": 0.2, "eps_max_high": 0.4,
                                                                             "eps_no_features": None}
    assert args.loss_type == "dapo" and args.epsilon_high is None and args.reward_weights == [1.0, 0.0, 0.0, 0.0]
    assert [f.__name__ for f in m.reward_funcs] == ["eagrl_reward", "r_att", "r_cls", "parse_failure"]
    # two optimizer steps per round of 8 rollouts; max_steps counts rounds
    assert (args.max_steps, args.per_device_train_batch_size, args.gradient_accumulation_steps,
            args.steps_per_generation) == (2, 4, 1, 2)
    m, args = built("eagrl", {"adaptive_clip": False})
    assert m.trainer_class is None and m.trainer_kwargs == {} and args.epsilon == 0.2
    m, args = built("grpo_baseline")
    assert m.trainer_class is None and args.loss_type == "grpo" and args.epsilon_high is None and args.beta == 0.001
    m, args = built("dapo")
    assert args.loss_type == "dapo" and args.epsilon_high == 0.28 and args.mask_truncated_completions and args.beta == 0
    with pytest.raises(ValueError, match="unknown method settings"):
        built("dapo", {"adaptive_clip": True})
    with pytest.raises(ValueError, match="set per sequence"):
        built("eagrl", {"epsilon_high": 0.3})
    with pytest.raises(ValueError, match="unknown GRPO method"):
        built("ppo")


GEN = {"max_new_tokens": 8, "max_prompt_tokens": 1024, "batch_size": 8, "temperature": 0.0, "top_p": 1.0,
       "backend": "hf"}


def _evaluate(tiny_model, tmp_path, test, experts, style=None, name="eval"):
    out = tmp_path / name
    args = ["evaluate", "--method", "eagrl", "--model", str(tiny_model), "--task", "tjh_mortality", "--test",
            str(test), "--settings", json.dumps(GEN), "--experts", str(experts), "--cell", "model=tiny",
            "stage=eagrl", "--out", str(out)] + (["--style", style] if style else [])
    assert cli.main(args) == 0
    return read_jsonl(out / "predictions.jsonl"), read_json(out / "metrics.json")


def test_evaluation_scores_stated_probabilities(tok, tiny_model, tmp_path, monkeypatch):
    """Scripted answers: AUROC/AUPRC from the stated probabilities, 0.5 for the unparseable one,
    R_att against the expert's top 5, every field of a prediction."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    from ehrmind import generation
    examples, test = ehr_split(tmp_path, "test", n=6)
    experts = fake_experts(tmp_path, examples)
    stated = {0: 0.2, 1: 0.8, 2: 0.7, 3: None, 4: 0.9, 5: 0.1}   # by example; None: unparseable
    texts = [fmt.render_completion([("Is LDH high?", "Yes.")], "q", ex.gold["features"][-2 - i % 3:], stated[i])
             if stated[i] is not None else "The patient is very ill." for i, ex in enumerate(examples)]

    class Fake:
        name, tokenizer = "scripted", tok

        def generate(self, prompts, spec):
            assert spec.temperature == 0.0 and len(prompts) == len(examples)
            return [[Generation(t, 7)] for t in texts]

    monkeypatch.setattr(generation, "load", lambda *a, **k: Fake())
    rows, metrics = _evaluate(tiny_model, tmp_path, test, experts)
    labels = [ex.gold["label"] for ex in examples]
    scores = [0.5 if stated[i] is None else stated[i] for i in range(6)]
    assert [r["probability"] for r in rows] == scores and [r["gold_label"] for r in rows] == labels
    assert rows[3]["p_source"] == "unparseable" and rows[3]["stated_probability"] is None and rows[3]["parse_error"]
    assert rows[3]["r_att"] == 0.0 and rows[3]["correct"] is False
    assert metrics["auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert metrics["auprc"] == pytest.approx(average_precision_score(labels, scores))
    assert metrics["auroc_sd"] > 0 and metrics["n_valid"] > 900 and metrics["parse_failures"] == 1
    r_att = []
    for i, ex in enumerate(examples):   # stated: the last 2, 3 or 4 features; expert top 5: the last 5
        k = len(ex.gold["features"][-2 - i % 3:])
        r_att.append(0.0 if stated[i] is None else k / 5)
        assert rows[i]["r_att"] == pytest.approx(r_att[-1]) and rows[i]["patient_id"] == ex.gold["patient_id"]
        assert rows[i]["correct"] == (stated[i] is not None and (stated[i] > 0.5) == bool(ex.gold["label"]))
    assert metrics["mean_r_att"] == pytest.approx(sum(r_att) / 6)
    assert metrics["mean_r_att_parsed"] == pytest.approx(sum(r_att) / 5)
    assert metrics["accuracy"] == sum(r["correct"] for r in rows) / 6 and metrics["cell"]["stage"] == "eagrl"
    assert metrics["unparseable_probability"] == 0.5 and metrics["provenance"]["packages"]


@pytest.mark.parametrize("style", ["decompose", "think", "vanilla"])
def test_prompting_baselines_on_a_tiny_model(tiny_model, tmp_path, style):
    examples, test = ehr_split(tmp_path, "test", n=4)
    experts = fake_experts(tmp_path, examples)
    rows, metrics = _evaluate(tiny_model, tmp_path, test, experts, style)
    assert len(rows) == 4 and metrics["style"] == style and metrics["processed_tokens_per_s"] > metrics["tokens_per_s"] > 0
    assert metrics["format_rate"] == 0.0 and all(r["probability"] == 0.5 for r in rows) and metrics["auroc"] == 0.5
    assert (metrics["mean_r_att"] is None) == (style != "decompose")
    assert metrics["system_prompt"] == fmt.messages_for(style, "r", "q", [])[0]["content"]
