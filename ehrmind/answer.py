"""EHRMind's answer format, prompt and rule-checked reward, shared by every task.

A completion must hold exactly one <think>...</think> followed by exactly one
<answer>{json object}</answer>. The JSON is read with `json.loads` only: model
text is never evaluated.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ehrmind.tasks import Example, Score, Task

# Kept short on purpose: every prompt token is paid for in evaluation, SFT and every GRPO rollout.
SYSTEM_PROMPT = ("Reason step by step inside <think> </think>, then give the final answer "
                 "inside <answer> </answer>. {answer_instructions}")

_TAG = re.compile(r"</?(think|answer)>")
_LAYOUT = re.compile(r"\s*<think>(?P<think>.*)</think>\s*<answer>(?P<answer>.*)</answer>\s*", re.S)


@dataclass(frozen=True)
class Parsed:
    answer: dict[str, Any] | None   # the answer JSON object, None when the format is wrong
    error: str | None               # why the format is wrong


def build_messages(task: Task, example: Example) -> list[dict[str, str]]:
    system = SYSTEM_PROMPT.format(answer_instructions=task.answer_instructions)
    return [{"role": "system", "content": system}, {"role": "user", "content": example.question}]


def sft_completion(example: Example) -> str:
    return f"<think>\n{example.reasoning.strip()}\n</think>\n<answer>{json.dumps(example.answer)}</answer>"


def parse_completion(text: str) -> Parsed:
    tags = [m.group(0) for m in _TAG.finditer(text)]
    if tags != ["<think>", "</think>", "<answer>", "</answer>"]:
        found = " ".join(tags) if tags else "no tags"
        return Parsed(None, f"expected <think></think><answer></answer> once each, found: {found}"[:200])
    layout = _LAYOUT.fullmatch(text)
    if layout is None:
        return Parsed(None, "text outside <think> and <answer>")
    body = layout.group("answer").strip()
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return Parsed(None, f"answer is not valid JSON: {exc}"[:200])
    if not isinstance(obj, dict):
        return Parsed(None, f"answer JSON is a {type(obj).__name__}, expected an object")
    return Parsed(obj, None)


@dataclass(frozen=True)
class Judged:
    parsed: Parsed
    score: Score
    reward: float

    @property
    def error(self) -> str | None:
        return self.parsed.error or self.score.error


def judge(task: Task, completion: str, gold: dict[str, Any], reward_cfg: dict[str, float]) -> Judged:
    """Parse, score and reward one completion (EHRMind: format ok +0.1, bad −2, correct +1)."""
    parsed = parse_completion(completion)
    if parsed.answer is None:
        return Judged(parsed, Score(False, parsed.error), float(reward_cfg["format_bad"]))
    score = task.score(parsed.answer, gold)
    reward = reward_cfg["format_ok"] + (reward_cfg["correct"] if score.correct else 0.0)
    return Judged(parsed, score, float(reward))
