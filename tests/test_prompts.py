"""EHRMind's prompts, exactly: golden files pin the rendered prompt of one embedded item of
each task (SmolLM2's chat template, the prefilled assistant turn continued), and the
published strings of ../shared/reference/ehrmind_prompts.md appear verbatim."""
import os
import re
from pathlib import Path

import pytest

from ehrmind import models
from ehrmind.generation import chat
from ehrmind.methods.ehrmind import prompts
from ehrmind.tasks import get_task
from ehrmind.tasks.base import DataError

GOLDEN = Path(__file__).parent / "golden"
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ehrmind_prompts.md"
DATA = {"medcalc": {"test_per_category": 1}, "trec_ct": {"n_patients": 10, "test_per_category": 1},
        "ehrshot": {"test_per_category": 1}}


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return models.load(tiny_model)[1]


@pytest.mark.parametrize("name", sorted(DATA))
def test_rendered_prompt_matches_golden_file(tokenizer, name):
    task = get_task(name)
    example = task.load_split("test", DATA[name], 0)[0]
    ids, cut = prompts.encode(tokenizer, task.prompt, example.fields, None)
    text = tokenizer.decode(ids)
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("EHRMIND_UPDATE_GOLDEN"):
        path.write_text(text)
    assert cut == 0 and text == path.read_text()
    assert text.startswith("<|im_start|>system\n" + prompts.SYSTEM)
    assert text.endswith("<|im_start|>assistant\n" + prompts.PREFILL)   # continued, not closed


def _reference_blocks() -> list[str]:
    """Every fenced block of the reference file (the prompt strings as published)."""
    if not REFERENCE.exists():
        pytest.skip(f"{REFERENCE} not found (it sits beside the checkout in CI)")
    text = REFERENCE.read_text()
    return [b.strip("\n") for b in re.findall(r"^```\n(.*?)^```$", text, re.S | re.M)]


def test_published_strings_appear_verbatim():
    published = "\n".join(_reference_blocks())
    medcalc, trec = get_task("medcalc").prompt, get_task("trec_ct").prompt
    for line in medcalc.format_instruction.splitlines() + trec.format_instruction.splitlines():
        assert line in published, line
    for line in trec.task_prompt.splitlines():
        if "{" not in line:
            assert line in published, line
    reference = REFERENCE.read_text()
    assert f"[system]    {prompts.SYSTEM}\n" in reference
    escaped = prompts.PREFILL.replace("\n", "\\n")   # the file writes the newline as \n
    assert f"prefilled** with `{escaped}`" in reference
    assert medcalc.task_prompt.startswith("You are a helpful assistant for calculating a score for a given "
                                          "patient note. Please think step-by-step")
    assert medcalc.sft_format_instruction + "\n\nDo not output anything after the </answer> tag." == \
        medcalc.format_instruction


def test_long_record_is_cut_inside_the_record_not_the_instructions(tokenizer):
    task = get_task("medcalc")
    example = task.load_split("test", DATA["medcalc"], 0)[0]
    fields = {**example.fields, "note": "Fever and cough. " * 6000}   # ~100,000 characters
    ids, cut = prompts.encode(tokenizer, task.prompt, fields, 512)
    text = tokenizer.decode(ids)
    assert len(ids) <= 512 and cut > 90_000
    assert chat.CUT_MARK + "```" in text
    for kept in (prompts.SYSTEM, task.prompt.format_instruction, example.fields["question"], prompts.PREFILL):
        assert kept in text
    with pytest.raises(DataError, match="instructions alone"):
        prompts.encode(tokenizer, task.prompt, fields, 64)


def test_date_string_is_fixed_for_templates_that_print_one(tokenizer):
    template = "{{ date_string }}|{% for m in messages %}{{ m['content'] }}{% endfor %}"
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], chat_template=template, tokenize=False,
                                        date_string=chat.DATE_STRING)
    assert ids.startswith(chat.DATE_STRING)
