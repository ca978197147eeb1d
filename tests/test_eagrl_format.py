from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrmind.methods.eagrl import format as fmt

FEATURES = ["Lactate dehydrogenase", "(%)lymphocyte", "High sensitivity C-reactive protein",
            "Red blood cell distribution width ", "age"]   # TJH names, trailing space included

GOOD = """<Subquestion>Is LDH raised?</Subquestion>
<Answer>Yes, 612 U/L.</Answer>
<Subquestion>Is the patient lymphopenic?</Subquestion>
<Answer>Yes, 4 %.</Answer>
<Final subquestion>Will the patient die in hospital?</Final subquestion>
<Important Features>Lactate dehydrogenase, (%)lymphocyte, LACTATE DEHYDROGENASE, Ferritin</Important Features>
<Final answer>0.82</Final answer>"""


def test_well_formed_completion_parses():
    p = fmt.parse_completion(GOOD, FEATURES)
    assert p.ok and p.steps == (("Is LDH raised?", "Yes, 612 U/L."), ("Is the patient lymphopenic?", "Yes, 4 %."))
    assert p.final_subquestion == "Will the patient die in hospital?" and p.probability == 0.82
    assert p.features == ("Lactate dehydrogenase", "(%)lymphocyte", "Ferritin")   # duplicate folded
    assert p.matched == ("Lactate dehydrogenase", "(%)lymphocyte") and p.unmatched == ("Ferritin",)


def test_tags_case_insensitive_and_no_steps_allowed():
    text = ("<final SUBQUESTION>q</final SUBQUESTION><IMPORTANT features>age</IMPORTANT features>"
            "<Final Answer>.3</Final Answer>")
    p = fmt.parse_completion(text, FEATURES)
    assert p.ok and p.steps == () and p.matched == ("age",) and p.probability == 0.3


def test_feature_lists_split_strip_fold_and_match():
    body = ("- lactate dehydrogenase\n* \"Age\"\n"
            "1. red blood cell distribution width; HIGH SENSITIVITY C-REACTIVE PROTEIN.\n\n")
    stated = fmt.split_features(body)
    assert stated == ["lactate dehydrogenase", "Age", "red blood cell distribution width",
                      "HIGH SENSITIVITY C-REACTIVE PROTEIN"]
    matched, unmatched = fmt.match_features(stated, FEATURES)
    assert matched == ["Lactate dehydrogenase", "age", "Red blood cell distribution width ",
                       "High sensitivity C-reactive protein"] and unmatched == []
    assert fmt.split_features("[LDH, CRP]") == ["LDH", "CRP"]
    assert fmt.split_features("  ") == []
    assert fmt.split_features("γ-glutamyl transpeptidase, Interleukin  1β") == ["γ-glutamyl transpeptidase",
                                                                                 "Interleukin  1β"]
    assert fmt.feature_key("Interleukin  1β ") == fmt.feature_key("INTERLEUKIN 1Β")


@pytest.mark.parametrize("body, value", [("0.73", 0.73), ("73%", 0.73), ("0.73.", 0.73), (" 73 % ", 0.73),
                                         (".5", 0.5), ("1", 1.0), ("0", 0.0), ("100%", 1.0), ("1.", 1.0)])
def test_probability_accepted(body, value):
    assert fmt.parse_probability(body) == (value, None)


@pytest.mark.parametrize("body", ["nan", "NaN", "inf", "-0.1", "1.5", "73", "101%", "1e-3", "0.7.3", "",
                                  "high", "0.73 (likely)", "9" * 400])
def test_probability_rejected(body):
    value, error = fmt.parse_probability(body)
    assert value is None and error


def test_format_errors_have_reasons():
    cases = {
        "no tags at all": "found: no tags",
        GOOD.replace("<Final answer>0.82</Final answer>", ""): "expected",
        GOOD.replace("</Answer>\n<Subquestion>Is the", "</Answer>\n<Answer>x</Answer><Subquestion>Is the"): "expected",
        "Sure! " + GOOD: "text outside",
        GOOD + " trailing": "text outside",
        GOOD.replace("0.82", "nan"): "not a probability",
        GOOD.replace("0.82", "82"): "outside [0, 1]",
    }
    for text, reason in cases.items():
        p = fmt.parse_completion(text, FEATURES)
        assert not p.ok and reason in p.error, (text, p.error)


def test_messages_hold_record_question_features_and_layout():
    system, user = fmt.build_messages("Day 1: LDH 612 U/L", "Will the patient die in hospital?", FEATURES)
    for tag in ("<Subquestion>", "<Answer>", "<Final subquestion>", "<Important Features>", "<Final answer>"):
        assert tag in system["content"]
    assert "Day 1: LDH 612 U/L" in user["content"] and "Will the patient die in hospital?" in user["content"]
    assert "Lactate dehydrogenase, (%)lymphocyte" in user["content"]
    capped = fmt.build_messages("r", "q?", FEATURES, max_features=5)[0]["content"]
    assert "at most 5" in capped and "at most" not in system["content"]
    with pytest.raises(ValueError, match="commas"):
        fmt.build_messages("r", "q?", ["a, b"])


_pieces = st.sampled_from(["<Subquestion>", "</Subquestion>", "<Answer>", "</Answer>", "<Final subquestion>",
                           "</Final subquestion>", "<Important Features>", "</Important Features>",
                           "<Final answer>", "</Final answer>", "0.5", "73%", "nan", "1e309", ",", "\n", "- ",
                           "__import__('os').system('touch /tmp/eagrl_pwned')", "age", "AGE", "<", ">", " "])


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(st.one_of(_pieces, st.text(max_size=5)), max_size=40)
                 .map("".join)))
def test_parser_never_raises_or_executes(text):
    p = fmt.parse_completion(text, FEATURES)
    assert p.ok == (p.error is None)
    if p.ok:
        assert 0.0 <= p.probability <= 1.0 and p.final_subquestion is not None
        assert set(p.matched) <= set(FEATURES)
    assert not Path("/tmp/eagrl_pwned").exists()


_plain = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).filter(
    lambda s: not fmt.TAG.search(s)).map(str.strip)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(_plain, _plain), max_size=4), final=_plain,
       features=st.lists(st.sampled_from(FEATURES), max_size=5),
       p=st.floats(0.0, 1.0, allow_nan=False))
def test_well_formed_outputs_round_trip(steps, final, features, p):
    written = f"{p:.4f}"
    parsed = fmt.parse_completion(fmt.render_completion(steps, final, features, written), FEATURES)
    assert parsed.ok, parsed.error
    assert parsed.steps == tuple(steps) and parsed.final_subquestion == final
    assert parsed.probability == float(written)
    assert list(parsed.matched) == list(dict.fromkeys(features)) and parsed.unmatched == ()


@pytest.mark.parametrize("style,text,p", [
    ("vanilla", "<Final answer>0.7</Final answer>", 0.7),
    ("vanilla", "\n <final ANSWER>35%</final ANSWER>\n", 0.35),
    ("think", "<Think>LDH is high.</Think>\n<Final answer>.9</Final answer>", 0.9),
    ("vanilla", "The answer is <Final answer>0.7</Final answer>", None),
    ("vanilla", "<Final answer>0.7</Final answer><Final answer>0.2</Final answer>", None),
    ("think", "<Final answer>0.7</Final answer>", None),
    ("think", "<Think>a</Think><Think>b</Think><Final answer>0.7</Final answer>", None),
    ("think", "<Think>a</Think><Final answer>high</Final answer>", None),
    ("vanilla", GOOD, None),
])
def test_prompting_baseline_layouts(style, text, p):
    parsed = fmt.parse_for(style, text, FEATURES)
    assert parsed.probability == p and parsed.ok == (p is not None) and parsed.features == ()


def test_prompt_styles_differ_only_in_the_instruction():
    base = fmt.messages_for("decompose", "LDH 612", "Will the patient die?", FEATURES[:2])
    assert base == fmt.build_messages("LDH 612", "Will the patient die?", FEATURES[:2])
    for style in ("think", "vanilla"):
        msgs = fmt.messages_for(style, "LDH 612", "Will the patient die?", FEATURES[:2])
        assert msgs[1] == base[1] and msgs[0]["content"] != base[0]["content"] and "<Final answer>" in msgs[0]["content"]
    assert fmt.parse_for("decompose", GOOD, FEATURES) == fmt.parse_completion(GOOD, FEATURES)
    with pytest.raises(ValueError, match="unknown prompt style"):
        fmt.messages_for("cot", "r", "q", [])
