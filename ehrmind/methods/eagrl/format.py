"""EAG-RL's prompt and answer format.

The paper's (arXiv 2508.13579, stage 1, "question decomposition prompt"): the model splits the
prediction into subquestions a physician would ask, answers each from the record, then states the
final subquestion, the features that mattered most and the final answer, in this tag layout:

    <Subquestion>…</Subquestion><Answer>…</Answer>        (repeated)
    <Final subquestion>…</Final subquestion>
    <Important Features>…</Important Features>
    <Final answer>p</Final answer>                         (p = probability of the positive outcome)

This suite's: the wording of the prompt (the paper describes the prompt but its text was not
available to us), listing the record's feature names in the user message (so stated features can
be matched to them), and every parsing rule below:
- tags are matched case-insensitively (the paper writes both "Final answer" and "Final Answer");
- zero or more subquestion/answer pairs, then the three final blocks once each, in that order,
  with nothing but whitespace between or around the blocks (strict, as the suite's EHRMind parser);
- features: split on commas, semicolons, newlines and list bullets; stripped; de-duplicated by a
  case-folded, whitespace-collapsed key; matched to the patient's feature names on that key;
- probability: `0.73`, `.73`, `73%`, a trailing period (`0.73.`); NaN, inf, > 1 (or > 100 %) and
  anything else is a parse failure (73 is not read as 73 %).
Model text is only matched with regular expressions: it is never evaluated.

Prompt styles (`STYLES`; evaluation's prompting baselines, `messages_for` / `parse_for`). The
paper compares EAG-RL with prompting baselines of three kinds: answering directly, reasoning
first, and the subquestion decomposition untrained. Their prompt texts were not available to us;
the wording and answer layouts below are this suite's. All three share the user message above
(record, feature list, question), so only the instruction differs:
  decompose  the EAG-RL prompt and format above (for a trained EAG-RL model, the same prompt);
  think      <Think>reasoning</Think> then <Final answer>p</Final answer>;
  vanilla    <Final answer>p</Final answer> alone.
think and vanilla state no features (Parsed.features is empty). Their parsing is as strict as the
EAG-RL format's: each tag once, in order, nothing but whitespace outside the tags, the same
probability rule.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

SUB, ANS, FINAL_SUB = "Subquestion", "Answer", "Final subquestion"
FEATURES, FINAL = "Important Features", "Final answer"

SYSTEM_PROMPT = (
    "You are a clinical expert who predicts patient outcomes from electronic health records. "
    "Reason like a physician: break the question into smaller subquestions, answer each one from "
    "the record, and build on the answers until you can answer the original question.\n"
    "Write each step as\n"
    "<Subquestion>a subquestion</Subquestion>\n<Answer>its answer, from the record</Answer>\n"
    "and use as many steps as you need. Then finish with exactly:\n"
    "<Final subquestion>the original question</Final subquestion>\n"
    "<Important Features>the features from the record that matter most for this prediction, "
    "separated by commas, named exactly as in the feature list</Important Features>\n"
    "<Final answer>the probability that the answer to the question is yes, a number between 0 and 1"
    "</Final answer>")

USER_PROMPT = "Patient record:\n{record}\n\nFeatures in this record: {features}\n\nQuestion: {question}"


def build_messages(record: str, question: str, feature_names: Sequence[str],
                   max_features: int | None = None) -> list[dict[str, str]]:
    """System + user message for one patient. `max_features` (not in the paper) adds a cap on
    how many features to list; by default the model is not told how many the expert keeps."""
    bad = [f for f in feature_names if _SEPARATOR.search(f)]
    if bad:
        raise ValueError(f"feature names must not contain commas, semicolons or newlines: {bad[:3]}")
    system = SYSTEM_PROMPT
    if max_features is not None:
        system = system.replace("most for this prediction,", f"most for this prediction (at most {max_features}),")
    user = USER_PROMPT.format(record=record.strip(), features=", ".join(f.strip() for f in feature_names),
                              question=question.strip())
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def render_step(subquestion: str, answer: str) -> str:
    return f"<{SUB}>{subquestion}</{SUB}>\n<{ANS}>{answer}</{ANS}>"


def render_final(final_subquestion: str, features: Sequence[str], probability: float | str) -> str:
    return (f"<{FINAL_SUB}>{final_subquestion}</{FINAL_SUB}>\n"
            f"<{FEATURES}>{', '.join(features)}</{FEATURES}>\n<{FINAL}>{probability}</{FINAL}>")


def render_completion(steps: Sequence[tuple[str, str]], final_subquestion: str, features: Sequence[str],
                      probability: float | str) -> str:
    """A well-formed completion (tests, hand-written SFT targets)."""
    return "\n".join([*(render_step(q, a) for q, a in steps), render_final(final_subquestion, features, probability)])


_NAMES = {"subquestion": SUB, "answer": ANS, "final subquestion": FINAL_SUB,
          "important features": FEATURES, "final answer": FINAL}
TAG = re.compile(r"<(/?)(subquestion|answer|final\s+subquestion|important\s+features|final\s+answer)>", re.I)
_SEPARATOR = re.compile(r"[,;\n]")
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d{1,3}[.)])\s+")
_PROBABILITY = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*\.?")


@dataclass(frozen=True)
class Parsed:
    steps: tuple[tuple[str, str], ...] = ()
    final_subquestion: str | None = None
    features: tuple[str, ...] = ()      # stated, stripped, de-duplicated (first spelling kept)
    matched: tuple[str, ...] = ()       # the patient's own feature names the stated ones match
    unmatched: tuple[str, ...] = ()     # stated names that are not the patient's features
    probability: float | None = None
    error: str | None = None            # None: well formed

    @property
    def ok(self) -> bool:
        return self.error is None


def feature_key(name: str) -> str:
    """The matching key: case-folded, whitespace collapsed ("Interleukin  6 " == "interleukin 6")."""
    return " ".join(name.casefold().split())


def split_features(body: str) -> list[str]:
    """Stated feature names from an <Important Features> body, de-duplicated by `feature_key`."""
    body = body.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    seen, out = set(), []
    for line in body.splitlines():
        for item in _SEPARATOR.split(_BULLET.sub("", line)):
            item = item.strip().strip("\"'`").strip().rstrip(".").strip()
            if item and feature_key(item) not in seen:
                seen.add(feature_key(item))
                out.append(item)
    return out


def match_features(stated: Sequence[str], feature_names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(matched patient feature names, unmatched stated names), in stated order."""
    by_key = {feature_key(f): f for f in feature_names}
    matched, unmatched = [], []
    for name in stated:
        if feature_key(name) in by_key:
            matched.append(by_key[feature_key(name)])
        else:
            unmatched.append(name)
    return matched, unmatched


def parse_probability(body: str) -> tuple[float | None, str | None]:
    body = body.strip()
    m = _PROBABILITY.fullmatch(body) if len(body) <= 40 else None
    if m is None:
        return None, f"final answer is not a probability: {body[:40]!r}"
    value = float(m.group(1)) / (100.0 if m.group(2) else 1.0)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return None, f"final answer outside [0, 1]: {body[:40]!r}"
    return value, None


def _expected(n_steps: int) -> list[tuple[str, str]]:
    order = [SUB, ANS] * n_steps + [FINAL_SUB, FEATURES, FINAL]
    return [(kind, name) for name in order for kind in ("", "/")]


def parse_completion(text: str, feature_names: Sequence[str] = ()) -> Parsed:
    """Parse one completion; never raises. `feature_names`: the patient's features, for matching."""
    tags = list(TAG.finditer(text))
    found = [(m.group(1), _NAMES[" ".join(m.group(2).lower().split())]) for m in tags]
    n_steps = (len(found) - 6) // 4
    if len(found) < 6 or (len(found) - 6) % 4 or found != _expected(n_steps):
        shown = " ".join(f"<{kind}{name}>" for kind, name in found[:12]) or "no tags"
        return Parsed(error=f"expected (<Subquestion><Answer>)* <Final subquestion> <Important Features> "
                            f"<Final answer>, found: {shown}"[:300])
    bodies = [text[tags[i].end():tags[i + 1].start()] for i in range(0, len(tags), 2)]
    gaps = [text[:tags[0].start()], text[tags[-1].end():]] + \
        [text[tags[i].end():tags[i + 1].start()] for i in range(1, len(tags) - 1, 2)]
    if any(g.strip() for g in gaps):
        return Parsed(error="text outside the tags")
    steps = tuple((bodies[2 * i].strip(), bodies[2 * i + 1].strip()) for i in range(n_steps))
    stated = split_features(bodies[-2])
    matched, unmatched = match_features(stated, feature_names)
    probability, error = parse_probability(bodies[-1])
    return Parsed(steps, bodies[-3].strip(), tuple(stated), tuple(matched), tuple(unmatched), probability, error)


THINK, STYLES = "Think", ("decompose", "think", "vanilla")
_INTRO = "You are a clinical expert who predicts patient outcomes from electronic health records. "
THINK_SYSTEM_PROMPT = (
    _INTRO + "First think step by step about the record, then give the probability that the answer to the "
    "question is yes. Write exactly:\n<Think>your reasoning</Think>\n"
    "<Final answer>the probability, a number between 0 and 1</Final answer>")
VANILLA_SYSTEM_PROMPT = (
    _INTRO + "Give the probability that the answer to the question is yes, a number between 0 and 1, "
    "and nothing else. Write exactly:\n<Final answer>the probability</Final answer>")
_THINK = re.compile(r"\s*<think>(.*?)</think>\s*<final\s+answer>(.*?)</final\s+answer>\s*", re.I | re.S)
_VANILLA = re.compile(r"\s*<final\s+answer>(.*?)</final\s+answer>\s*", re.I | re.S)
_ANY_TAG = re.compile(r"</?(?:think|final\s+answer)>", re.I)


def messages_for(style: str, record: str, question: str, feature_names: Sequence[str]) -> list[dict[str, str]]:
    """System + user message of a prompt style (STYLES)."""
    messages = build_messages(record, question, feature_names)
    if style == "decompose":
        return messages
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; known: {', '.join(STYLES)}")
    system = THINK_SYSTEM_PROMPT if style == "think" else VANILLA_SYSTEM_PROMPT
    return [{"role": "system", "content": system}, messages[1]]


def encode(tokenizer, example, max_prompt_tokens: int | None, style: str = "decompose") -> tuple[list[int], int]:
    """A structured-EHR example's prompt in `style` as token ids (chat template, generation prompt),
    the record shortened inside itself to fit max_prompt_tokens; and the record characters cut."""
    from ehrmind.generation import chat
    features = example.gold["features"]
    return chat.fit(tokenizer, lambda f: messages_for(style, f["record"], f["question"], features),
                    example.fields, ("record",), max_prompt_tokens, where=example.id)


def parse_for(style: str, text: str, feature_names: Sequence[str] = ()) -> Parsed:
    """Parse a completion written in a prompt style's layout; never raises."""
    if style == "decompose":
        return parse_completion(text, feature_names)
    pattern, tags = (_THINK, 4) if style == "think" else (_VANILLA, 2)
    m = pattern.fullmatch(text)
    if m is None or len(_ANY_TAG.findall(text)) != tags:
        shown = " ".join(_ANY_TAG.findall(text)[:6]) or "no tags"
        layout = "<Think> <Final answer>" if style == "think" else "<Final answer> alone"
        return Parsed(error=f"expected {layout}, found: {shown}"[:300])
    probability, error = parse_probability(m.group(m.lastindex))
    return Parsed(probability=probability, error=error)
