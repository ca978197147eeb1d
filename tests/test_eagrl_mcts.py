"""Stage-1 MCTS on a scripted sampler (hand-checkable tree) and on a tiny random model."""
import json
import math
from random import Random

import pytest

from ehrmind.io import read_jsonl
from ehrmind.methods.eagrl import format as fmt
from ehrmind.methods.eagrl import mcts
from ehrmind.methods.eagrl.mcts import MCTSConfig, Patient, SamplingSpec
from ehrmind.methods.eagrl.reward import RewardConfig

QUESTION = "Will the patient die in hospital?"
FEATURES = ("LDH", "CRP", "Age")
EXPERTS = {"p1": ["LDH", "CRP"], "p2": ["Age", "LDH"], "p3": ["CRP"], "p4": ["LDH"]}
STEP = "<Subquestion>Is the {0} marker raised?</Subquestion>\n<Answer>It is {0}.</Answer>"
FINAL = ("Will the patient die?</Final subquestion>\n<Important Features>LDH</Important Features>\n"
         "<Final answer>{p}</Final answer>")
END_OF_PROMPT = "Question: " + QUESTION


class Scripted:
    """Expansions offer a "good" then a "bad" step; rollouts and forced finals answer
    p = 0.5 + 0.2·(#good − #bad) steps so far, listing LDH. Records every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, n, spec):
        self.calls.append((list(prompts), n, spec))
        out = []
        for prompt in prompts:
            steps = prompt.split(END_OF_PROMPT, 1)[1]
            good, bad = steps.count("It is good"), steps.count("It is bad")
            if prompt.endswith(mcts.FINAL_PREFIX):
                p = round(min(max(0.5 + 0.2 * (good - bad), 0.0), 1.0), 2)
                out.append([FINAL.format(p=p)] * n)
            else:
                out.append([STEP.format(["good", "bad"][i % 2]) for i in range(n)])
        return out


def r(p, r_att=0.5):
    """The paper reward by hand for a label-1 patient (λ 0.6, β 0.5, LDH vs expert {LDH, CRP})."""
    return 0.6 * (math.log(p) + (0.5 * (p - 0.5) if p > 0.5 else 0.0)) + 0.4 * r_att


CFG = MCTSConfig(iterations=4, max_depth=2, branching=2, rollouts=1, c_uct=1.0, keep=2, min_confidence=0.0,
                 min_att=0.0, correct_only=True)


def _by_path(root):
    """Nodes named by their steps' good/bad letters, "F" for a final block: "", "G", "GB", "GGF"."""
    out = {}
    for node in root.nodes():
        name = "".join("G" if "It is good" in s else "B" for s in node.steps) + ("F" if node.terminal else "")
        out[name] = node
    return out


def test_values_back_propagate_on_a_scripted_sampler():
    sampler = Scripted()
    trees, calls = mcts.search([Patient("p1", "LDH 612 U/L", 1, FEATURES)], EXPERTS, sampler, QUESTION, CFG)
    nodes = _by_path(trees[0].root)
    # it 1: expand root → G (rollout p .7), B (.3)
    # it 2: UCT picks G (same bonus, higher value) → GG (.9), GB (.5)
    # it 3: G: 0.0290 + √(ln4/3) = 0.709 vs B: −0.522 + √ln4 = 0.655 → G; GG over GB → GG sits at
    #       max depth: forced final, two identical candidates merge into one terminal GGF (.9)
    # it 4: G: 0.0859 + √(ln5/4) = 0.720 vs B: −0.522 + √ln5 = 0.746 → B → BG (.5), BB (.1)
    visits = {name: node.visits for name, node in nodes.items()}
    assert visits == {"": 7, "G": 4, "B": 3, "GG": 2, "GB": 1, "GGF": 1, "BG": 1, "BB": 1}
    expected = {"G": r(.7) + r(.9) + r(.5) + r(.9), "B": r(.3) + r(.5) + r(.1), "GG": 2 * r(.9),
                "GB": r(.5), "GGF": r(.9), "BG": r(.5), "BB": r(.1)}
    expected[""] = expected["G"] + expected["B"]
    for name, total in expected.items():
        assert nodes[name].value_sum == pytest.approx(total), name
    # cost: two calls an iteration (expansion, then all rollouts), one when only terminals were added
    assert calls == 7 and len(sampler.calls) == 7
    assert [n for _, n, _ in sampler.calls] == [2, 1, 2, 1, 2, 2, 1]
    assert trees[0].sampler_calls == 7 and trees[0].completions == 2 + 2 + 2 + 2 + 2 + 2 + 2
    assert sampler.calls[4][0][0].endswith("It is good.</Answer>\n" + mcts.FINAL_PREFIX)   # forced final


def test_kept_trajectories_parse_score_and_filter(tmp_path):
    patient = Patient("p1", "LDH 612 U/L", 1, FEATURES)
    stats = mcts.build([patient], EXPERTS, Scripted(), QUESTION, tmp_path / "sft.jsonl", CFG)
    rows = read_jsonl(tmp_path / "sft.jsonl")
    # distinct complete trajectories: G .7, B .3, GG .9 (= GGF), GB .5, BG .5, BB .1; correct (ŷ > .5): GG, G
    assert [row["probability"] for row in rows] == [0.9, 0.7]
    assert [row["reward"] for row in rows] == pytest.approx([r(.9), r(.7)])
    for row in rows:
        text = row["completion"][0]["content"]
        parsed = fmt.parse_completion(text, FEATURES)
        assert parsed.ok and len(parsed.steps) == row["steps"] and parsed.matched == ("LDH",)
        assert row["prompt"] == fmt.build_messages("LDH 612 U/L", QUESTION, FEATURES)
        assert row["r_att"] == 0.5 and row["correct"] and row["patient_id"] == "p1" and row["label"] == 1
        json.dumps(row)
    assert stats["per_patient"]["p1"] == {"sampler_calls": 7, "completions": 14, "nodes": 8, "candidates": 6,
                                          "kept": 2}
    # ŷ .3, .5, .5, .1 are wrong for label 1; CFG keeps any confidence; every r_att is 0.5
    assert stats["rejected_by_filter"] == {"wrong_label": 4, "low_confidence": 0, "low_r_att": 0}
    strict = mcts.rejected_by_filter([mcts.search([patient], EXPERTS, Scripted(), QUESTION, CFG)[0][0]],
                                     MCTSConfig(**{**CFG.__dict__, "min_confidence": 0.3, "min_att": 0.6}))
    assert strict == {"wrong_label": 4, "low_confidence": 4, "low_r_att": 6}   # |ŷ−.5| < .3: .7, .5, .5, .3
    tree = mcts.search([patient], EXPERTS, Scripted(), QUESTION, CFG)[0][0]

    def probs(**changes):
        return [s.probability for _, s, _ in mcts.kept(tree, MCTSConfig(**{**CFG.__dict__, **changes}))]

    assert probs(min_confidence=0.3) == [0.9]
    assert probs(min_att=0.6) == []
    assert probs(correct_only=False, keep=4) == [0.9, 0.7, 0.5, 0.5]
    assert probs(correct_only=False, keep=10, min_confidence=0.25) == [0.9, 0.1]   # |.3−.5| < .25
    assert probs(keep=1) == [0.9]


class Randomized(Scripted):
    """Like Scripted, but each candidate is a step, a final block or junk at random."""

    def __init__(self, seed):
        super().__init__()
        self.rng = Random(seed)

    def __call__(self, prompts, n, spec):
        out = super().__call__(prompts, n, spec)
        if prompts[0].endswith(mcts.FINAL_PREFIX) and spec.stop == (f"</{fmt.FINAL}>",):
            return out
        pick = [lambda: STEP.format(self.rng.choice(["good", "bad", "odd", "new"])),
                lambda: "<Final subquestion>q</Final subquestion><Important Features>LDH</Important Features>"
                        f"<Final answer>{self.rng.random():.2f}</Final answer>",
                lambda: "I am not sure."]
        return [[self.rng.choice(pick)() if not p.endswith(mcts.FINAL_PREFIX) else c for c in row]
                for p, row in zip(prompts, out)]


@pytest.mark.parametrize("seed", range(4))
def test_tree_respects_its_budget(seed):
    cfg = MCTSConfig(iterations=12, max_depth=3, branching=3, rollouts=2, c_uct=1.4)
    patients = [Patient(f"p{i}", "rec", i % 2, FEATURES) for i in (1, 2, 3)]
    sampler = Randomized(seed)
    trees, calls = mcts.search(patients, EXPERTS, sampler, QUESTION, cfg)
    assert calls == len(sampler.calls) <= 2 * cfg.iterations
    for prompts, n, spec in sampler.calls:
        assert len(prompts) <= len(patients)                       # one prompt per tree per call
        assert (n, spec) in ((cfg.branching, cfg.step), (cfg.rollouts, cfg.rollout))
    for tree in trees:
        assert tree.sampler_calls <= 2 * cfg.iterations
        expanded = [node for node in tree.root.nodes() if node.expanded]
        assert 1 <= len(expanded) <= cfg.iterations
        for node in tree.root.nodes():
            assert len(node.children) <= cfg.branching and node.depth <= cfg.max_depth
            assert not (node.terminal and node.children) and node.visits >= 1
            if node is not tree.root and not node.terminal:   # its own rollout value, then its subtree's
                assert node.visits == 1 + sum(c.visits for c in node.children)
                own = node.value_sum - sum(c.value_sum for c in node.children)
                assert own <= 0.6 * (0.5 * 0.49) + 0.4 + 1e-9    # one rollout mean: at most the best reward
        assert tree.root.visits == sum(c.visits for c in tree.root.children)
        assert tree.root.value_sum == pytest.approx(sum(c.value_sum for c in tree.root.children))
        for text, (scored, steps) in tree.candidates.items():
            assert steps <= cfg.max_depth and math.isfinite(scored.reward)


def test_balanced_patient_selection():
    patients = [Patient(f"p{i}", "r", int(i % 4 == 0), ()) for i in range(20)]   # 5 positive, 15 negative
    chosen = mcts.balanced_patients(patients, seed=1)
    assert sum(p.label for p in chosen) == 5 and len(chosen) == 10
    assert [p.id for p in chosen] == [p.id for p in patients if p in chosen]   # order kept
    assert mcts.balanced_patients(patients, seed=1) == chosen != mcts.balanced_patients(patients, seed=2)
    three = mcts.balanced_patients(patients, per_class=3, seed=0)
    assert sorted(p.label for p in three) == [0, 0, 0, 1, 1, 1]
    assert len(mcts.balanced_patients(patients, per_class=8)) == 5 + 8   # a class can run short
    assert mcts.balanced_patients([]) == []


def test_patient_from_example_and_config_keys():
    class Ex:
        id, fields, gold = "tjh_mortality-p9", {"record": "Day 1: LDH 612"}, {"label": 1, "features": ["LDH"],
                                                                              "patient_id": "p9"}
    assert Patient.from_example(Ex()) == Patient("p9", "Day 1: LDH 612", 1, ("LDH",))
    cfg = MCTSConfig.from_dict({"iterations": 3, "rollout": {"max_new_tokens": 64, "stop": ["</Final answer>"]}})
    assert cfg.iterations == 3 and cfg.rollout == SamplingSpec(64, 0.7, 0.95, ("</Final answer>",))
    with pytest.raises(ValueError, match="unknown MCTS keys"):
        MCTSConfig.from_dict({"depth": 3})
    with pytest.raises(KeyError, match="no expert features"):
        mcts.search([Patient("zz", "r", 1, ())], EXPERTS, Scripted(), QUESTION, CFG)


def test_split_candidate():
    step = STEP.format("good")
    assert mcts.split_candidate("\n" + step + "\n<Subquestion>next") == ("step", step)
    final = ("<Final subquestion>q</Final subquestion><Important Features>a</Important Features>"
             "<Final answer>1</Final answer>")
    assert mcts.split_candidate(final + " junk") == ("final", final)
    for junk in ["<Subquestion>q</Subquestion><Answer>no close", "text first " + step,
                 "<Subquestion>a<Answer>b</Subquestion><Answer>c</Answer>"]:
        assert mcts.split_candidate(junk)[0] == "dead"


def hf_sampler(model, tokenizer, seed=0):
    """A minimal HF `generate` adapter to the Sampler contract (batched, n samples per prompt)."""
    import torch

    def sample(prompts, n, spec):
        torch.manual_seed(seed + len(prompts))
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**enc, do_sample=True, temperature=spec.temperature, top_p=spec.top_p, top_k=0,
                             max_new_tokens=spec.max_new_tokens, num_return_sequences=n,
                             stop_strings=list(spec.stop) or None, tokenizer=tokenizer,
                             pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]

    return sample


def test_search_runs_on_a_tiny_model(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ehrmind import models
    location = models.resolve(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(location)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(location).eval()
    calls = []

    def counted(prompts, n, spec):
        out = hf_sampler(model, tokenizer)(prompts, n, spec)
        calls.append((len(prompts), n, [len(c) for c in out]))
        return out

    def render(messages):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    spec = SamplingSpec(max_new_tokens=12, temperature=1.0, top_p=1.0)
    cfg = MCTSConfig(iterations=3, max_depth=2, branching=2, rollouts=2,
                     step=SamplingSpec(**{**spec.__dict__, "stop": MCTSConfig.step.stop}),
                     rollout=SamplingSpec(**{**spec.__dict__, "stop": MCTSConfig.rollout.stop}))
    patients = [Patient("p1", "LDH 612 U/L", 1, FEATURES), Patient("p2", "Age 81", 0, FEATURES)]
    stats = mcts.build(patients, EXPERTS, counted, QUESTION, tmp_path / "sft.jsonl", cfg, RewardConfig(), render)
    # a random model never writes a step: every candidate is a dead terminal child with the
    # unparseable reward, so later iterations only re-back-up terminals and sample nothing
    assert calls == [(2, 2, [2, 2])] and stats["sampler_calls"] == 1
    assert stats["per_patient"]["p1"] == {"sampler_calls": 1, "completions": 2, "nodes": 3, "candidates": 2,
                                          "kept": 0}
    assert read_jsonl(tmp_path / "sft.jsonl") == []
    floor = RewardConfig().unparseable_reward
    trees, _ = mcts.search(patients, EXPERTS, counted, QUESTION, cfg, RewardConfig(), render)
    for tree in trees:
        assert tree.root.visits == len(tree.root.children) + cfg.iterations - 1 == 4
        assert all(s.reward == floor for s, _ in tree.candidates.values())


def test_kept_rows_train_with_trls_sft_trainer(tiny_model, tmp_path):
    """The rows' prompt/completion columns are TRL's conversational prompt-completion format."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from ehrmind import models
    patients = [Patient("p1", "LDH 612 U/L", 1, FEATURES), Patient("p4", "LDH 300 U/L", 1, FEATURES)]
    mcts.build(patients, EXPERTS, Scripted(), QUESTION, tmp_path / "sft.jsonl", CFG)
    rows = read_jsonl(tmp_path / "sft.jsonl")
    assert len(rows) == 4
    location = models.resolve(tiny_model)
    net = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    args = SFTConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4, learning_rate=1e-3,
                     report_to="none", save_strategy="no", use_cpu=True, bf16=False, max_length=512)
    data = Dataset.from_list([{"prompt": row["prompt"], "completion": row["completion"]} for row in rows])
    SFTTrainer(model=net, args=args, train_dataset=data, processing_class=AutoTokenizer.from_pretrained(location)).train()
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())
