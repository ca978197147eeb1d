"""Prompts as token ids: the model's own chat template, a prefilled assistant turn continued,
and over-long prompts shortened inside the record, never in the instructions."""
from __future__ import annotations

from typing import Callable

from ehrmind.tasks.base import DataError

# Chat templates that print today's date (Llama 3.x) would change every prompt with the
# calendar; they get this fixed date instead (the day Llama 3.1 was released).
DATE_STRING = "26 Jul 2024"
CUT_MARK = " [...]"

Messages = list[dict[str, str]]


def encode(tokenizer, messages: Messages) -> list[int]:
    """Token ids of `messages`; a final assistant message is continued, not closed."""
    prefilled = messages[-1]["role"] == "assistant"
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                              add_generation_prompt=not prefilled,
                                              continue_final_message=prefilled,
                                              date_string=DATE_STRING)["input_ids"])


def fit(tokenizer, build: Callable[[dict[str, str]], Messages], fields: dict[str, str],
        record_fields: tuple[str, ...], max_tokens: int | None, where: str = "prompt") -> tuple[list[int], int]:
    """Encode build(fields); when that is longer than max_tokens, keep the same share of each
    record field (its beginning, then CUT_MARK), the largest share that fits.
    Returns the ids and the number of record characters cut."""
    ids = encode(tokenizer, build(fields))
    if max_tokens is None or len(ids) <= max_tokens:
        return ids, 0

    def shortened(share: float) -> dict[str, str]:
        return {k: (v[:int(len(v) * share)].rstrip() + CUT_MARK if k in record_fields else v)
                for k, v in fields.items()}

    lo, hi, best = 0.0, 1.0, None
    for _ in range(20):   # bisection on the kept share, to about a millionth
        mid = (lo + hi) / 2
        trial = encode(tokenizer, build(shortened(mid)))
        if len(trial) <= max_tokens:
            lo, best = mid, trial
        else:
            hi = mid
    if best is None:
        floor = encode(tokenizer, build(shortened(0.0)))
        if len(floor) > max_tokens:
            raise DataError(f"{where}: the instructions alone take {len(floor)} tokens, more than "
                            f"max_prompt_tokens = {max_tokens}; raise max_prompt_tokens")
        best = floor
    cut = sum(len(v) for k, v in fields.items() if k in record_fields) - \
        sum(int(len(v) * lo) for k, v in fields.items() if k in record_fields)
    return best, cut
