"""EHRMind's answer format and reward, as its released reward code applies them: the judged
text is the prefill plus the completion."""
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ehrmind.methods.ehrmind import answer, prompts
from ehrmind.tasks import Example
from tests.helpers import EchoTask

REWARD = {"format_ok": 0.1, "format_bad": -2.0, "correct": 1.0, "wrong": 0.0}


def test_well_formed_text_parses():
    p = answer.parse('Let me solve this step by step.\n<think>\n2 + 2 = 4\n</think>\n<answer>\n{"answer": 4}\n</answer>')
    assert p.answer == {"answer": 4} and p.error is None


def test_the_prefill_supplies_the_opening_think_tag():
    completion = '\n2 + 2 = 4\n</think>\n<answer>\n{"answer": 4}\n</answer>'
    judged = answer.judge(EchoTask(), completion, {"x": 4}, REWARD)
    assert judged.parsed.answer == {"answer": 4} and judged.score.correct and judged.reward == 1.1
    # a completion that opens <think> again has two of them with the prefill: malformed
    assert answer.judge(EchoTask(), "<think>" + completion, {"x": 4}, REWARD).reward == -2.0


def test_sft_target_is_the_continuation_after_the_prefill():
    ex = Example("a", "lab", {"question": "q?"}, {"x": "4.5"}, "Because.", {"answer": "4.5"})
    target = prompts.sft_target(ex.reasoning, ex.answer)
    assert target == '\nBecause.\n</think>\n<answer>\n{"answer": "4.5"}\n</answer>'
    judged = answer.judge(EchoTask(), target, ex.gold, REWARD)
    assert judged.parsed.answer == {"answer": "4.5"} and judged.score.correct


def test_format_errors_have_reasons():
    cases = {
        "no tags at all": "found: no tags",
        '<answer>{"answer": 1}</answer>': "found: <answer> </answer>",
        "<think>a</think><think>b</think><answer>{}</answer>": "once each",
        "</think><think><answer>{}</answer>": "in that order",
        "<think>a</think><answer>{'answer': 1}</answer>": "not valid JSON",
        '<think>a</think><answer>{"answer": 1,}</answer>': "not valid JSON",   # the MedCalc example's comma
        "<think>a</think><answer>[1, 2]</answer>": "expected an object",
        '<think>a</think><answer>{"value": 1}</answer>': "lacks key(s) answer",
    }
    for text, reason in cases.items():
        p = answer.parse(text, ("answer",))
        assert p.answer is None and reason in p.error, (text, p.error)


def test_clean_tail_is_per_task():
    text = '<think>a</think><answer>{"answer": 1}</answer>.'
    assert answer.parse(text, ("answer",), clean_tail=False).answer == {"answer": 1}
    strict = answer.parse(text, ("answer",), clean_tail=True)
    assert strict.answer is None and "text after </answer>" in strict.error
    assert answer.parse(text[:-1] + "\n  ", ("answer",), clean_tail=True).answer == {"answer": 1}


def test_reward_values_follow_the_release():
    gold = {"x": 3}
    good = '\nx\n</think><answer>{"answer": 3}</answer>'
    wrong = '\nx\n</think><answer>{"answer": 2}</answer>'
    assert answer.judge(EchoTask(), good, gold, REWARD).reward == 1.1
    assert answer.judge(EchoTask(), wrong, gold, REWARD).reward == 0.0   # not 0.1: the release returns 0
    assert answer.judge(EchoTask(), "garbage", gold, REWARD).reward == -2.0
    custom = {"format_ok": 0.5, "format_bad": -1.0, "correct": 2.0, "wrong": 0.25}
    assert answer.judge(EchoTask(), good, gold, custom).reward == 2.5
    assert answer.judge(EchoTask(), wrong, gold, custom).reward == 0.25
    assert answer.judge(EchoTask(), "garbage", gold, custom).reward == -1.0


_pieces = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "{", "}", '"answer"', ":",
                           "__import__('os').system('touch /tmp/ehrmind_pwned')", "1e309", "[", "]",
                           "\\", "\n", " ", "NaN", "null"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(st.one_of(_pieces, st.text(max_size=5)), max_size=30)
                 .map("".join)), st.booleans())
def test_parser_never_raises_or_executes(text, clean_tail):
    parsed = answer.parse(text, ("answer",), clean_tail)
    assert (parsed.answer is None) != (parsed.error is None)
    if parsed.answer is not None:
        json.dumps(parsed.answer)   # plain JSON data only
    assert not Path("/tmp/ehrmind_pwned").exists()


def test_deeply_nested_json_is_a_parse_failure():
    text = "<think>x</think><answer>" + "[" * 100000 + "]" * 100000 + "</answer>"
    assert answer.parse(text).answer is None
