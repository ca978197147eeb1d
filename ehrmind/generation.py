"""Batched generation with transformers: left padding, KV cache, items sorted by
prompt length so batches waste little padding. Order of results = order of prompts."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    text: str
    n_tokens: int      # generated tokens, eos included, padding excluded
    token_ids: tuple[int, ...] = ()
    # per generated step, the log-probabilities of the `watch` token ids (when asked for)
    watched: tuple[tuple[float, ...], ...] = ()


class _Watch:
    """A logits processor that records the log-probabilities of a few token ids at
    every step and leaves the scores unchanged. Cheap: no full logits are kept."""

    def __init__(self, ids: list[int]):
        self.ids, self.steps = ids, []

    def __call__(self, input_ids, scores):
        import torch
        self.steps.append(torch.log_softmax(scores.float(), dim=-1)[:, self.ids].cpu())
        return scores


def encode_chats(tokenizer, chats: list[list[dict[str, str]]]) -> list[list[int]]:
    return [tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"] for chat in chats]


def generate(model, tokenizer, chats: list[list[dict[str, str]]], *, max_new_tokens: int,
             batch_size: int, num_samples: int = 1, temperature: float = 0.0, top_p: float = 1.0,
             seed: int = 0, max_prompt_tokens: int | None = None,
             watch: list[int] | None = None) -> list[list[Generation]]:
    """Return `num_samples` generations per chat. temperature 0 means greedy.
    `watch`: token ids whose log-probabilities are recorded at every step."""
    import torch
    prompts = encode_chats(tokenizer, chats)
    if max_prompt_tokens:
        too_long = sum(len(p) > max_prompt_tokens for p in prompts)
        if too_long:
            log.warning("%d prompts longer than %d tokens were cut from the left", too_long, max_prompt_tokens)
        prompts = [p[-max_prompt_tokens:] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    sampling = temperature > 0
    gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=sampling,
                      num_return_sequences=num_samples, pad_token_id=tokenizer.pad_token_id)
    if sampling:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    else:  # keep the model's generation_config from adding sampling knobs to greedy runs
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    eos_ids = {tokenizer.eos_token_id} | set(_as_list(getattr(model.generation_config, "eos_token_id", None)))
    results: list[list[Generation]] = [[] for _ in prompts]
    per_batch = max(1, batch_size // num_samples)   # batch_size counts sequences, not prompts
    started, done_tokens = time.perf_counter(), 0
    torch.manual_seed(seed)
    for b in range(0, len(order), per_batch):
        idx = order[b:b + per_batch]
        batch = tokenizer.pad({"input_ids": [prompts[i] for i in idx]}, padding=True,
                              return_tensors="pt").to(model.device)
        watcher = _Watch(watch) if watch else None
        with torch.inference_mode():
            out = model.generate(**batch, **gen_kwargs, logits_processor=[watcher] if watcher else None)
        new = out[:, batch["input_ids"].shape[1]:].tolist()
        steps = torch.stack(watcher.steps, dim=1).tolist() if watcher else None   # rows x steps x ids
        for row, tokens in enumerate(new):
            n = _length(tokens, eos_ids)
            results[idx[row // num_samples]].append(Generation(
                tokenizer.decode(tokens[:n], skip_special_tokens=True), n, tuple(tokens[:n]),
                tuple(map(tuple, steps[row][:n])) if steps else ()))
            done_tokens += n
        elapsed = time.perf_counter() - started
        log.info("generated %d/%d prompts, %d tokens, %.1f tokens/s",
                 min(b + per_batch, len(order)), len(order), done_tokens, done_tokens / max(elapsed, 1e-9))
    return results


def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]


def _length(tokens: list[int], eos_ids: set[int]) -> int:
    """Tokens up to and including the first eos; the rest is padding."""
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return i + 1
    return len(tokens)
