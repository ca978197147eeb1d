"""Evaluation: the probability of the positive class is read at the step that wrote the
label digit; classification metrics land in metrics.json; one load serves several tasks."""
import json
import math

import pytest

from ehrmind import models
from ehrmind.evaluate import EvalJob, _digit_tokens, _p_positive, evaluate
from ehrmind.generation import Generation
from ehrmind.io import read_jsonl
from ehrmind.methods.ehrmind import answer
from ehrmind.tasks import Example, Score
from tests.helpers import ECHO_PROMPT

REWARD = {"format_ok": 0.1, "format_bad": -2.0, "correct": 1.0, "wrong": 0.0}


class YesNo:
    name = "yes_no"
    labels = ("no", "yes")
    label_key = "label"
    prompt = ECHO_PROMPT
    answer_keys = ("label",)

    def score(self, obj, gold):
        label = obj.get("label")
        ok = label in (0, 1) and not isinstance(label, bool)
        return Score(ok and label == gold["label"], None if ok else "bad label", label if ok else None,
                     obj.get("p") if isinstance(obj.get("p"), float) else None)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return models.load(tiny_model, for_generation=True)[1]


def _generation(tokenizer, text: str, digits: dict[int, str], p_one_at_label: float) -> Generation:
    """A fake generation of `text` whose watched log-probs give `p_one_at_label` to '1' vs '0' everywhere."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    row = []
    for t in digits.values():
        p = p_one_at_label if t.strip() == "1" else 1 - p_one_at_label
        row.append(math.log(p / 2))   # the other half of the mass is elsewhere: renormalization matters
    return Generation(text, len(ids), tuple(ids), tuple(tuple(row) for _ in ids))


@pytest.mark.parametrize("label", [0, 1])
def test_probability_is_read_at_the_label_digit(tokenizer, label):
    digits = _digit_tokens(tokenizer)
    assert {t.strip() for t in digits.values()} == {"0", "1"}
    text = f'the 10 risk factors</think>\n<answer>{{"prediction": "x", "label": {label}}}</answer>'
    gen = _generation(tokenizer, text, digits, 0.8)
    judged = answer.judge(YesNo(), text, {"label": label}, REWARD)
    p, source = _p_positive(tokenizer, gen, judged, "label", digits)
    assert source == "logits" and p == pytest.approx(0.8)


def test_probability_falls_back_without_a_label(tokenizer):
    digits = _digit_tokens(tokenizer)
    text = "no answer</think>\n<answer>{}</answer>"
    judged = answer.judge(YesNo(), text, {"label": 1}, REWARD)
    assert _p_positive(tokenizer, _generation(tokenizer, text, digits, 0.9), judged, "label", digits) == (0.5, "none")


def test_a_stated_probability_is_used_as_is(tokenizer):
    digits = _digit_tokens(tokenizer)
    text = 'x</think>\n<answer>{"label": 1, "p": 0.35}</answer>'
    judged = answer.judge(YesNo(), text, {"label": 1}, REWARD)
    assert _p_positive(tokenizer, _generation(tokenizer, text, digits, 0.9), judged, "label", digits) == (0.35, "stated")


def test_evaluate_several_tasks_with_one_load(tiny_model, tmp_path):
    examples = [Example(f"e{i}", "c", {"question": f"Is {i} odd?"}, {"label": i % 2}, "", {"label": i % 2}, "yes_no")
                for i in range(6)]
    gen = {"max_new_tokens": 6, "batch_size": 4, "temperature": 0.0, "top_p": 1.0, "max_prompt_tokens": 256}
    jobs = [EvalJob(YesNo(), examples, gen, tmp_path / name, {"model": "tiny", "task": name, "stage": "baseline"})
            for name in ("a", "b")]
    first, second = evaluate(str(tiny_model), jobs, REWARD)
    assert first["n"] == second["n"] == 6
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["backend"] == "hf" and m["prefill"] == "Let me solve this step by step.\n<think>" and m["prompts_cut"] == 0
    assert set(m["classification"]) == {"confusion", "balanced_accuracy", "macro_f1", "cohen_kappa", "auroc"}
    assert len(m["classification"]["confusion"]) == 2 and len(m["classification"]["confusion"][0]) == 3
    preds = read_jsonl(tmp_path / "b" / "predictions.jsonl")
    assert all(0.0 <= p["p_positive"] <= 1.0 and p["gold_label"] in (0, 1) for p in preds)
    assert (tmp_path / "a" / "predictions.jsonl").read_bytes() == (tmp_path / "b" / "predictions.jsonl").read_bytes()
