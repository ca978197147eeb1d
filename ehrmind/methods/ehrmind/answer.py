"""EHRMind's answer format and rule-checked reward, as its released reward code
(verl/utils/reward_score/{medcalc,matching,ehrshot}.py) applies them.

The judged text is PREFILL + completion: everything after the assistant header.
- Structure: <think>, </think>, <answer>, </answer> exactly once each, in that order
  (text before <think> is allowed: the prefill has some).
- The answer is the JSON inside the <answer> block, read with `json.loads` (model text is
  never evaluated); it must be an object holding the task's answer keys.
- Tasks with a clean tail (TREC CT, EHRSHOT; MedCalc's check is commented out in the
  release) allow nothing but whitespace after </answer>.
- Reward: format and answer right: format_ok + correct (0.1 + 1); format right, answer
  wrong: `wrong` (0, not 0.1: the release returns 0 there); format wrong: format_bad (−2).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ehrmind.methods.ehrmind.prompts import PREFILL
from ehrmind.tasks import Score, Task

TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_TAG = re.compile(r"</?(?:think|answer)>")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


@dataclass(frozen=True)
class Parsed:
    answer: dict[str, Any] | None   # the answer JSON object, None when the format is wrong
    error: str | None               # why the format is wrong


def parse(text: str, answer_keys: tuple[str, ...] = (), clean_tail: bool = False) -> Parsed:
    """Check the structure of `text` (prefill + completion) and read its answer JSON."""
    found = [m.group(0) for m in _TAG.finditer(text)]
    if found != list(TAGS):
        shown = " ".join(found) if found else "no tags"
        return Parsed(None, f"expected <think> </think> <answer> </answer> once each in that order, found: {shown}"[:200])
    block = _ANSWER.search(text)
    if clean_tail and text[block.end():].strip():
        return Parsed(None, f"text after </answer>: {text[block.end():].strip()!r}"[:200])
    try:
        obj = json.loads(block.group(1).strip())
    except (ValueError, RecursionError) as exc:
        return Parsed(None, f"answer is not valid JSON: {exc}"[:200])
    if not isinstance(obj, dict):
        return Parsed(None, f"answer JSON is a {type(obj).__name__}, expected an object")
    missing = [k for k in answer_keys if k not in obj]
    if missing:
        return Parsed(None, f"answer JSON lacks key(s) {', '.join(missing)}")
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
    """Parse PREFILL + completion, score the answer, and give EHRMind's reward."""
    parsed = parse(PREFILL + completion, task.answer_keys, task.prompt.clean_tail)
    if parsed.answer is None:
        return Judged(parsed, Score(False, parsed.error), float(reward_cfg["format_bad"]))
    score = task.score(parsed.answer, gold)
    reward = reward_cfg["format_ok"] + reward_cfg["correct"] if score.correct else reward_cfg["wrong"]
    return Judged(parsed, score, float(reward))
