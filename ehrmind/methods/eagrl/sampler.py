"""The MCTS `Sampler` served by a generation backend (`ehrmind.generation`).

MCTS (mcts.py) speaks in prompt text: the rendered chat prompt of a patient (`render`) followed
by the partial trajectory it continues. This adapter turns each prompt back into what the model
is shown: the patient's EAG-RL messages with the partial trajectory as an assistant message that
is continued (`chat.encode`, the model's own chat template; the root, with no partial trajectory,
gets the plain generation prompt). So the token ids are those generation and SFT see for the same
text, not a re-tokenization of the rendered string.

One sampler call is one `Backend.generate` call with n samples per prompt, seeded by the sampler's
seed and the call's number, so a search is repeatable; completions keep the stop string that
ended them (the backends' contract).
"""
from __future__ import annotations

from typing import Any

from ehrmind.generation import SamplingSpec as GenerationSpec
from ehrmind.generation import chat
from ehrmind.methods.eagrl.mcts import SamplingSpec

Messages = list[dict[str, str]]


class BackendSampler:
    def __init__(self, backend, seed: int = 0):
        self.backend, self.tokenizer, self.seed = backend, backend.tokenizer, seed
        self.calls = 0
        self.prompt_tokens = 0
        self._messages: dict[str, Messages] = {}   # rendered prompt -> its messages

    def render(self, messages: Messages) -> str:
        """The prompt text of `messages` (chat template, generation prompt); remembered, so the
        sampler can tell which patient a prompt continues."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  date_string=chat.DATE_STRING)
        self._messages[text] = messages
        return text

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a prompt that starts with a rendered prompt and continues it."""
        rendered = max((r for r in self._messages if prompt.startswith(r)), key=len, default=None)
        if rendered is None:
            raise ValueError(f"prompt does not start with a prompt rendered by this sampler: {prompt[:80]!r}")
        messages, partial = self._messages[rendered], prompt[len(rendered):]
        if not partial:
            return chat.encode(self.tokenizer, messages)
        return chat.encode(self.tokenizer, [*messages, {"role": "assistant", "content": partial}])

    def __call__(self, prompts: list[str], n: int, spec: SamplingSpec) -> list[list[str]]:
        ids = [self.encode(p) for p in prompts]
        self.prompt_tokens += sum(map(len, ids))
        gen = GenerationSpec(max_new_tokens=spec.max_new_tokens, n=n, temperature=spec.temperature,
                             top_p=spec.top_p, seed=self.seed * 100_003 + self.calls, stop=tuple(spec.stop))
        self.calls += 1
        return [[g.text for g in gens] for gens in self.backend.generate(ids, gen)]

    def stats(self) -> dict[str, Any]:
        s = getattr(self.backend, "stats", None)
        return {"sampler_calls": self.calls, "prompt_tokens": self.prompt_tokens,
                "generated_tokens": getattr(s, "generated_tokens", None),
                "generation_seconds": round(s.seconds, 2) if s is not None else None}
