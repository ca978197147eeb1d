"""Generation backends behind one interface: evaluation, Pass@k sampling, GRPO rollouts and
EAG-RL's tree search all call `Backend.generate` with token-id prompts (rendered by
`render_prompts`, the model's own chat template continuing a prefilled assistant turn).

- `hf`   (ehrmind.generation.hf): transformers models on CPU or GPU, a decode loop of our own
         that encodes each prompt once for its n samples and drops finished rows;
- `vllm` (ehrmind.generation.vllm_backend): vLLM on GPUs (paper scale).

`backend: auto` picks vLLM where CUDA and vLLM are both present, else hf.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

BACKENDS = ("auto", "hf", "vllm")


@dataclass(frozen=True)
class SamplingSpec:
    max_new_tokens: int
    n: int = 1                     # samples per prompt
    temperature: float = 0.0       # 0: greedy
    top_p: float = 1.0
    seed: int = 0
    watch: tuple[int, ...] = ()    # token ids whose log-probabilities are recorded at every step
    logprobs: bool = False         # record the log-probability of each sampled token
    stop: tuple[str, ...] = ()     # a row ends once its text contains one; the text keeps it (cut after it)


@dataclass(frozen=True)
class Generation:
    text: str                      # decoded without special tokens
    n_tokens: int                  # generated tokens, eos included, padding excluded
    token_ids: tuple[int, ...] = ()
    watched: tuple[tuple[float, ...], ...] = ()   # per step, log-probs of SamplingSpec.watch
    logprobs: tuple[float, ...] = ()              # per step, log-prob of the sampled token
    finished: bool = True          # ended with an end-of-sequence token or a stop string (False: cut at
                                   # max_new_tokens)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """`text` through the end of its earliest stop string (kept), and whether one occurred. Both
    backends decode the generated tokens themselves and cut here, so the text ends with the stop
    string even where the token that completed it carried more characters."""
    ends = [i + len(s) for s in stop if (i := text.find(s)) >= 0]
    return (text[:min(ends)], True) if ends else (text, False)


class Backend(Protocol):
    name: str
    tokenizer: Any

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Generation]]:
        """`spec.n` generations per prompt, in prompt order."""
        ...


@dataclass
class Stats:
    """What a backend did, for provenance and the benchmark."""
    prompts: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    prefill_seconds: float = 0.0   # of `seconds`, encoding the prompts (hf; 0 where a backend does not separate it)
    extra: dict[str, Any] = field(default_factory=dict)


def choose(name: str) -> str:
    """Resolve `auto`: vLLM where CUDA and the vllm package are both present, else hf."""
    if name not in BACKENDS:
        raise ValueError(f"generation backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name != "auto":
        return name
    import importlib.util
    try:
        import torch
        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    return "vllm" if cuda and importlib.util.find_spec("vllm") is not None else "hf"


def load(model: str, name: str = "auto", *, precision: str = "auto", trust_remote_code: bool = False,
         batch_size: int = 32, engine_args: dict[str, Any] | None = None) -> Backend:
    """A backend serving `model` (a checkpoint directory or a model reference JSON)."""
    name = choose(name)
    if name == "vllm":
        from ehrmind.generation.vllm_backend import VLLMBackend
        return VLLMBackend.from_model(model, precision=precision, trust_remote_code=trust_remote_code,
                                      **(engine_args or {}))
    from ehrmind import models
    from ehrmind.generation.hf import HFBackend
    net, tokenizer = models.load(model, trust_remote_code, precision=precision)
    return HFBackend(net, tokenizer, batch_size=batch_size)
