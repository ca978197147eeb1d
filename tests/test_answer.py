import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ehrmind import answer
from ehrmind.tasks import Example, Score

REWARD = {"format_ok": 0.1, "format_bad": -2.0, "correct": 1.0}


class EchoTask:
    """Correct when the answer JSON's "answer" equals gold["x"]."""
    name = "echo"
    answer_instructions = 'The answer JSON is {"answer": <number>}.'

    def score(self, obj, gold):
        if "answer" not in obj:
            return Score(False, "missing key 'answer'")
        return Score(obj["answer"] == gold["x"], None, obj["answer"])


def test_well_formed_completion_parses():
    p = answer.parse_completion('<think>\n2 + 2 = 4\n</think>\n<answer>{"answer": 4}</answer>')
    assert p.answer == {"answer": 4} and p.error is None


def test_sft_target_round_trips():
    ex = Example("a", "lab", "q?", {"x": 4.5}, "Because.", {"answer": 4.5})
    judged = answer.judge(EchoTask(), answer.sft_completion(ex), ex.gold, REWARD)
    assert judged.parsed.answer == {"answer": 4.5} and judged.score.correct


def test_messages_carry_task_instructions():
    ex = Example("a", "lab", "What is x?", {}, "", {})
    system, user = answer.build_messages(EchoTask(), ex)
    assert "<think>" in system["content"] and EchoTask.answer_instructions in system["content"]
    assert user == {"role": "user", "content": "What is x?"}


def test_format_errors_have_reasons():
    cases = {
        "no tags at all": "expected <think>",
        "<answer>{\"answer\": 1}</answer>": "expected <think>",
        "<think>a</think><think>b</think><answer>{}</answer>": "expected <think>",
        "<think>a</think><answer>{\"answer\": 1}</answer> trailing": "text outside",
        "<think>a</think><answer>{'answer': 1}</answer>": "not valid JSON",
        "<think>a</think><answer>[1, 2]</answer>": "expected an object",
    }
    for text, reason in cases.items():
        p = answer.parse_completion(text)
        assert p.answer is None and reason in p.error, (text, p.error)


def test_reward_values():
    gold = {"x": 3}
    good = '<think>x</think><answer>{"answer": 3}</answer>'
    wrong = '<think>x</think><answer>{"answer": 2}</answer>'
    assert answer.judge(EchoTask(), good, gold, REWARD).reward == 1.1
    assert answer.judge(EchoTask(), wrong, gold, REWARD).reward == 0.1
    assert answer.judge(EchoTask(), "garbage", gold, REWARD).reward == -2.0
    custom = {"format_ok": 0.5, "format_bad": -1.0, "correct": 2.0}
    assert answer.judge(EchoTask(), good, gold, custom).reward == 2.5
    assert answer.judge(EchoTask(), "garbage", gold, custom).reward == -1.0


def test_unscorable_answer_records_reason():
    judged = answer.judge(EchoTask(), '<think>x</think><answer>{"value": 3}</answer>', {"x": 3}, REWARD)
    assert not judged.score.correct and judged.error == "missing key 'answer'"
    assert judged.reward == 0.1   # format was right


_pieces = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "{", "}", '"answer"', ":",
                           "__import__('os').system('touch /tmp/ehrmind_pwned')", "1e309", "[", "]",
                           "\\", "\n", " ", "NaN", "null"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(st.one_of(_pieces, st.text(max_size=5)), max_size=30)
                 .map("".join)))
def test_parser_never_raises_or_executes(text):
    parsed = answer.parse_completion(text)
    assert (parsed.answer is None) != (parsed.error is None)
    if parsed.answer is not None:
        json.dumps(parsed.answer)   # plain JSON data only
    assert not Path("/tmp/ehrmind_pwned").exists()


def test_deeply_nested_json_is_a_parse_failure():
    text = "<think>x</think><answer>" + "[" * 100000 + "]" * 100000 + "</answer>"
    assert answer.parse_completion(text).answer is None
