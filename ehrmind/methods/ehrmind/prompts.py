"""EHRMind's prompts, exactly as published (../shared/reference/ehrmind_prompts.md; the EHRMind
code release, files named on each task's template).

Every RL, evaluation and SFT prompt has the same shape:

    [system]     SYSTEM
    [user]       the task prompt (the task's template filled with the example's fields)
                 + "\\n" + the format instruction (with its example of the answer layout)
    [assistant]  PREFILL, which the model continues

EHRMind writes the Llama-3 chat layout by hand; this suite renders the same messages with the
model's own chat template and continues the prefilled assistant turn
(`continue_final_message=True`), so no special token is written by hand. The reward judges
PREFILL + completion, as EHRMind's `extract_solution` does (it parses everything after the
assistant header): the opening <think> comes from the prefill.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SYSTEM = ("You are a helpful assistant. You first think about the reasoning process in the mind and then "
          "provide the user with the answer.")
PREFILL = "Let me solve this step by step.\n<think>"

FORMAT_HEAD = ("Please show your entire reasoning process in **a single** <think> </think> block (do not open or "
               "close the tag more than once). Your final response must be in JSON format within <answer> </answer> "
               "tags. For example,\n")


@dataclass(frozen=True)
class PromptTemplate:
    """A task's EHRMind prompt. `task_prompt` is a str.format template over the example's
    fields; `record_fields` are the fields a too-long prompt may be shortened in (the note,
    the trial, the timeline), never the instructions, the format example or the prefill."""
    task_prompt: str
    format_instruction: str
    sft_format_instruction: str          # EHRMind's SFT prompt may differ (MedCalc drops a sentence)
    record_fields: tuple[str, ...]
    clean_tail: bool                     # reward: nothing but whitespace may follow </answer>
    source: str                          # where the strings come from

    def user(self, fields: dict[str, str], sft: bool = False) -> str:
        body = self.task_prompt.format(**fields)
        return body + "\n" + (self.sft_format_instruction if sft else self.format_instruction)


def messages(template: PromptTemplate, fields: dict[str, str], sft: bool = False) -> list[dict[str, str]]:
    """System, user and the prefilled assistant turn (continue it: `render(..., continue_final_message)`)."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": template.user(fields, sft)},
            {"role": "assistant", "content": PREFILL}]


def sft_target(reasoning: str, answer: dict[str, Any]) -> str:
    """The continuation after PREFILL that SFT trains on (EHRMind's sft/data_preprocess.py layout):
    '\\n{explanation}\\n</think>\\n<answer>\\n{json}\\n</answer>'."""
    import json
    return f"\n{reasoning.strip()}\n</think>\n<answer>\n{json.dumps(answer, ensure_ascii=False)}\n</answer>"


def encode(tokenizer, template: PromptTemplate, fields: dict[str, str], max_prompt_tokens: int | None,
           sft: bool = False, where: str = "prompt") -> tuple[list[int], int]:
    """Token ids of the prompt through PREFILL, shortened inside the record to fit
    max_prompt_tokens; and the number of record characters cut."""
    from ehrmind.generation import chat
    return chat.fit(tokenizer, lambda f: messages(template, f, sft), fields, template.record_fields,
                    max_prompt_tokens, where)
