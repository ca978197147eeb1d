"""EAG-RL reward against hand-computed values (log values to 8 places: log 0.8 = −0.22314355,
log 0.99 = −0.01005034, log 0.5 = −0.69314718, log 0.01 = −4.60517019)."""
import json
import math

import pytest

from ehrmind.methods.eagrl import format as fmt
from ehrmind.methods.eagrl.reward import RewardConfig, Tally, expert_top, jaccard, judge, trl_reward

FEATURES = ["LDH", "Lymphocyte", "CRP", "Age", "Urea", "Ferritin", "D-dimer"]
EXPERT = ["LDH", "Lymphocyte", "CRP", "Age", "Urea", "Ferritin", "D-dimer"]   # top 5: LDH … Urea
PAPER, CODE = RewardConfig(), RewardConfig.from_dict({"preset": "code"})


def completion(p, features=("LDH", "CRP")):
    return fmt.render_completion([("Is LDH high?", "Yes.")], "Will the patient die?", features, p)


def reward(p, label, features=("LDH", "CRP"), cfg=PAPER):
    return judge(completion(p, features), label, FEATURES, EXPERT, cfg)


def test_paper_preset_hand_computed():
    s = reward("0.8", 1)   # correct positive; C = {LDH, CRP}, C_exp = top 5 → J = 2/5
    assert s.correct and s.r_att == pytest.approx(0.4)
    assert s.r_cls == pytest.approx(-0.22314355 + 0.5 * 0.3)
    assert s.reward == pytest.approx(0.6 * (-0.22314355 + 0.15) + 0.4 * 0.4)   # 0.11611387
    wrong = reward("0.8", 0)   # wrong: no Δ
    assert not wrong.correct and wrong.reward == pytest.approx(0.6 * math.log(0.2) + 0.4 * 0.4)
    neg = reward("20%", 0)     # correct negative: Δ = β(0.5 − 0.2)
    assert neg.reward == pytest.approx(0.6 * (math.log(0.8) + 0.5 * 0.3) + 0.4 * 0.4)
    half = reward("0.5", 1)    # 0.5 is correct for neither class
    assert not half.correct and half.reward == pytest.approx(0.6 * -0.69314718 + 0.16)


def test_code_preset_hand_computed():
    s = reward("0.8", 1, cfg=CODE)
    assert s.reward == pytest.approx(1.0 * -0.22314355 + 0.5 * 0.3 + 0.1 * 0.4)   # −0.03314355
    assert reward("0.8", 0, cfg=CODE).reward == pytest.approx(math.log(0.2) + 0.1 * 0.4)
    assert CODE.unparseable_reward == pytest.approx(-4.60517019)


@pytest.mark.parametrize("cfg, certain_right, certain_wrong", [
    (PAPER, 0.6 * (-0.01005034 + 0.5 * 0.49) + 0.4 * 0.4, 0.6 * -4.60517019 + 0.4 * 0.4),
    (CODE, -0.01005034 + 0.5 * 0.49 + 0.1 * 0.4, -4.60517019 + 0.1 * 0.4)])
def test_probability_clipped_at_0_and_1(cfg, certain_right, certain_wrong):
    for p, label in (("1", 1), ("0", 0), ("100%", 1), ("0.0", 0)):
        s = reward(p, label, cfg=cfg)
        assert s.probability in (0.01, 0.99) and s.reward == pytest.approx(certain_right)
    for p, label in (("1", 0), ("0", 1)):
        assert reward(p, label, cfg=cfg).reward == pytest.approx(certain_wrong)
    assert math.isfinite(reward("0", 1, cfg=RewardConfig(clip_eps=1e-6)).reward)


def test_empty_feature_list_gets_no_attention_reward():
    s = reward("0.8", 1, features=())
    assert s.parsed.ok and s.r_att == 0.0 and s.reward == pytest.approx(0.6 * (-0.22314355 + 0.15))
    assert jaccard([], []) == 0.0 and jaccard(["LDH"], []) == 0.0


def test_duplicate_and_differently_cased_features_count_once():
    s = reward("0.8", 1, features=("ldh", "LDH", " Ldh ", "crp", "CRP"))
    assert s.parsed.features == ("ldh", "crp") and s.parsed.matched == ("LDH", "CRP")
    assert s.r_att == pytest.approx(2 / 5)
    assert jaccard(["LDH"], ["ldh", "LDH"]) == 1.0 and expert_top(["a", "A", "b"], 2) == ["a", "b"]


def test_unmatched_names_and_top_k():
    s = reward("0.8", 1, features=("LDH", "Troponin"))          # Troponin: not a feature of this record
    assert s.parsed.unmatched == ("Troponin",) and s.r_att == pytest.approx(1 / 6)
    matched_only = RewardConfig(unmatched_count=False)
    assert reward("0.8", 1, features=("LDH", "Troponin"), cfg=matched_only).r_att == pytest.approx(1 / 5)
    # Ferritin is the expert's 6th feature: outside the top 5, inside the top 6
    assert reward("0.8", 1, features=("Ferritin",)).r_att == 0.0
    assert reward("0.8", 1, features=("Ferritin",), cfg=RewardConfig(top_k=6)).r_att == pytest.approx(1 / 6)


def test_unparseable_output_has_a_defined_reward_and_is_counted():
    tally = Tally()
    for text in ["no tags", completion("nan"), completion("1.7"), completion("0.8") + " trailing"]:
        s = tally.add(judge(text, 1, FEATURES, EXPERT, PAPER))
        assert not s.parsed.ok and s.reward == pytest.approx(0.6 * -4.60517019)
    tally.add(reward("0.8", 1))
    assert tally.scored == 5 and tally.unparseable == 4
    assert tally.reasons == {"expected (<Subquestion><Answer>)* <Final subquestion> <Important Features> "
                             "<Final answer>, found": 1, "final answer is not a probability": 1,
                             "final answer outside [0, 1]": 1, "text outside the tags": 1}
    # never above a parseable answer: equal to the worst one (confidently wrong, no feature agreement)
    assert PAPER.unparseable_reward == pytest.approx(reward("1", 0, features=()).reward)
    custom = RewardConfig(unparseable=-3.0)
    assert judge("garbage", 0, FEATURES, EXPERT, custom).reward == -3.0


def test_config_keys_and_presets():
    assert RewardConfig.from_dict(None) == RewardConfig()
    tuned = RewardConfig.from_dict({"preset": "paper", "lam": 0.5, "beta": 1.0})
    assert reward("0.8", 1, cfg=tuned).reward == pytest.approx(0.5 * (-0.22314355 + 0.3) + 0.5 * 0.4)
    with pytest.raises(ValueError, match="unknown reward keys"):
        RewardConfig.from_dict({"lambda": 0.6})
    with pytest.raises(ValueError, match="unknown reward preset"):
        RewardConfig.from_dict({"preset": "mine"})
    with pytest.raises(ValueError, match="clip_eps"):
        RewardConfig(clip_eps=0.0)


def test_trl_reward_function_reads_dataset_columns():
    fn, tally = trl_reward(PAPER, {"p1": EXPERT})
    gold = json.dumps({"label": 1, "features": FEATURES})
    out = fn([[{"role": "assistant", "content": completion("0.8")}], "garbage"], ["p1", "p1"], [gold, gold])
    assert out == pytest.approx([0.11611387, 0.6 * -4.60517019])
    assert tally.scored == 2 and tally.unparseable == 1
    with pytest.raises(KeyError, match="no expert features"):
        fn(["x"], ["p2"], [gold])
