"""EAG-RL stage 2's entropy-aware adaptive upper clip, as a small extension of TRL's GRPO loss.

Paper (arXiv 2508.13579): per trajectory τ, the mean predictive entropy H̄(τ) over its key clinical
tokens (the tokens of the <Important Features> list), min-max normalized across the batch, maps
linearly to an upper clip bound ε_high(τ) ∈ [ε_min, ε_max] = [0.2, 0.4]; the lower bound stays
fixed (0.2). Uncertain trajectories may move further; over-confident ones are held back.

This suite's choices:
- The entropy is the policy's own, from the forward pass TRL makes for the loss (TRL computes it
  there anyway), detached: the bound is a constant of the objective, not something to optimize.
- "The batch" is the micro-batch the loss sees on one process (with the suite's EAG-RL settings,
  one optimizer step's mini-batch: half of a generation round's rollouts, since
  updates_per_generation is 2; see grpo.py). Across GPUs it is per process: the statistics are
  not gathered.
- Feature tokens: the completion's tokens whose decoded characters overlap the stripped body of
  its first <Important Features>…</Important Features> block (case-insensitive tags, as the
  parser). Offsets come from decoding token prefixes, found by bisection, so the token ids TRL
  sampled are used as they are (no re-tokenization).
- A sequence with no feature tokens (no closed block, or an empty one) gets ε_min_high = 0.2, the
  same as the lower clip, i.e. plain symmetric GRPO clipping: with no feature entropy there is no
  evidence that it is uncertain-but-informative, and widening the trust region of malformed
  outputs would reward the wrong thing. It is left out of the min-max statistics. When all
  sequences with features have the same mean entropy (or only one has any), the range is empty and
  they get ε_min_high too (no evidence of relative uncertainty).
Everything else (advantages, KL, aggregation by `loss_type`, logging) is TRL's own code: the
subclass only sets TRL's `epsilon_high` to a per-sequence (B, 1) tensor for the duration of one
`_compute_loss` call. `args.epsilon_high` is therefore ignored; `args.epsilon` stays the lower clip.
"""
from __future__ import annotations

import bisect
import logging
import re
from functools import lru_cache
from typing import Callable, Sequence

import torch
from trl import GRPOTrainer

log = logging.getLogger(__name__)

FEATURE_BLOCK = re.compile(r"<important\s+features>(.*?)</important\s+features>", re.I | re.S)
CLIPPED_LOSSES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")   # TRL losses with a PPO-style clamp


def feature_char_span(text: str) -> tuple[int, int] | None:
    """Character span of the stripped body of the first <Important Features> block, or None."""
    m = FEATURE_BLOCK.search(text)
    if m is None:
        return None
    body = m.group(1)
    start = m.start(1) + len(body) - len(body.lstrip())
    end = m.end(1) - (len(body) - len(body.rstrip()))
    return (start, end) if start < end else None


def span_token_mask(decode: Callable[[Sequence[int]], str], ids: Sequence[int],
                    span: tuple[int, int]) -> list[bool]:
    """Which of `ids` overlap characters [start, end) of decode(ids). Token i covers
    [len(decode(ids[:i])), len(decode(ids[:i+1]))); prefixes are found by bisection."""
    start, end = span
    prefix_len = lru_cache(maxsize=None)(lambda k: len(decode(ids[:k])))
    prefixes = range(len(ids) + 1)
    first = bisect.bisect_right(prefixes, start, key=prefix_len) - 1   # first token ending after start
    stop = bisect.bisect_left(prefixes, end, key=prefix_len)           # tokens before stop start before end
    return [first <= i < stop for i in range(len(ids))]


def feature_token_mask(tokenizer, completion_ids: torch.Tensor, completion_mask: torch.Tensor,
                       span_of: Callable[[str], tuple[int, int] | None] = feature_char_span) -> torch.Tensor:
    """(B, T) 0/1 mask of each completion's tokens inside its <Important Features> block."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)   # processors wrap a tokenizer

    def decode(ids):
        return tokenizer.decode(list(ids), skip_special_tokens=True)

    mask = torch.zeros_like(completion_mask)
    for row, (ids, keep) in enumerate(zip(completion_ids.tolist(), completion_mask.tolist())):
        ids = ids[:int(sum(keep))]
        span = span_of(decode(ids))
        if span is not None:
            mask[row, :len(ids)] = torch.tensor(span_token_mask(decode, ids, span), dtype=mask.dtype)
    return mask * completion_mask


def adaptive_eps_high(entropies: torch.Tensor, feature_mask: torch.Tensor, eps_min_high: float = 0.2,
                      eps_max_high: float = 0.4, eps_no_features: float | None = None) -> torch.Tensor:
    """Per-sequence upper clip (B,) from per-token entropies (B, T) and a feature-token mask (B, T)."""
    feature_mask = feature_mask.to(entropies.dtype)
    counts = feature_mask.sum(-1)
    has = counts > 0
    mean_entropy = (entropies * feature_mask).sum(-1) / counts.clamp(min=1.0)
    base = eps_min_high if eps_no_features is None else eps_no_features
    eps = torch.full_like(mean_entropy, base)
    if has.any():
        h = mean_entropy[has]
        spread = h.max() - h.min()
        norm = (h - h.min()) / spread if spread > 0 else torch.zeros_like(h)
        eps[has] = eps_min_high + (eps_max_high - eps_min_high) * norm
    return eps


class EntropyClipGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer with EAG-RL's per-trajectory upper clip bound."""

    def __init__(self, *args, eps_min_high: float = 0.2, eps_max_high: float = 0.4,
                 eps_no_features: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.loss_type not in CLIPPED_LOSSES:
            raise ValueError(f"the adaptive upper clip needs a clipped loss ({', '.join(CLIPPED_LOSSES)}), "
                             f"not loss_type={self.loss_type!r}")
        if not 0.0 <= eps_min_high <= eps_max_high:
            raise ValueError("need 0 <= eps_min_high <= eps_max_high")
        if self.args.epsilon_high is not None:
            log.warning("GRPOConfig.epsilon_high=%s is ignored: the upper clip is set per sequence",
                        self.args.epsilon_high)
        self.eps_min_high, self.eps_max_high, self.eps_no_features = eps_min_high, eps_max_high, eps_no_features
        self._pending_feature_mask: torch.Tensor | None = None

    def feature_char_span(self, text: str) -> tuple[int, int] | None:
        return feature_char_span(text)

    def feature_token_mask(self, completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
        return feature_token_mask(self.processing_class, completion_ids, completion_mask, self.feature_char_span)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        output["feature_mask"] = self.feature_token_mask(output["completion_ids"], output["completion_mask"])
        return output

    def _compute_loss(self, model, inputs):
        low, high = self.epsilon_low, self.epsilon_high
        feature_mask = inputs.get("feature_mask")
        self._pending_feature_mask = (torch.zeros_like(inputs["completion_mask"]) if feature_mask is None
                                      else feature_mask)
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self.epsilon_low, self.epsilon_high, self._pending_feature_mask = low, high, None

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        logps, entropies, aux = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        if self._pending_feature_mask is not None and entropies is not None:   # inside _compute_loss
            feature_mask, self._pending_feature_mask = self._pending_feature_mask, None
            eps = adaptive_eps_high(entropies.detach().float(), feature_mask, self.eps_min_high,
                                    self.eps_max_high, self.eps_no_features)
            # torch.clamp takes both bounds as numbers or both as tensors
            self.epsilon_low = torch.tensor(float(self.epsilon_low), device=eps.device, dtype=eps.dtype)
            self.epsilon_high = eps.unsqueeze(1)
            self.last_eps_high = eps
            mode = "train" if self.model.training else "eval"
            for name, value in (("mean", eps.mean()), ("min", eps.min()), ("max", eps.max())):
                self._metrics[mode][f"eagrl/eps_high/{name}"].append(self.accelerator.gather(value).mean().item())
            has = (feature_mask.sum(-1) > 0).float().mean()
            self._metrics[mode]["eagrl/with_feature_tokens"].append(self.accelerator.gather(has).mean().item())
        return logps, entropies, aux
