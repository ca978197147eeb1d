"""The transformers backend: a decode loop of our own over the model's forward and KV cache.

Why not `model.generate`: for n samples per prompt it repeats the prompt n times before the
prefill (Pass@k's 12 samples encode each prompt 12 times), and a static batch runs to its
longest row. Here each batch of prompts is encoded once (left-padded, one forward that keeps
only the last position's logits), its cache repeated n times, and rows that have finished are
dropped from the cache and the batch at once. Prompts are sorted by length so batches carry
little padding. Greedy decoding gives the same tokens as `model.generate` (tested).

The cache: after the prefill each plain key/value layer gets room for max_new_tokens more
positions (`reserve`), so a decode step writes its one new position in place; transformers'
DynamicCache concatenates, copying the whole cache of every layer at every step (~20 % of a
batch-32 step on a 2-core CPU, `ehrmind bench`).

Stop strings (`SamplingSpec.stop`): after each step, the live rows' last few tokens are decoded
(as many as the longest stop string has UTF-8 bytes, plus two: every token adds at least one
byte) and a row whose tail holds a stop string ends there like one that wrote end-of-sequence.
Its text is cut after the stop string (`cut_at_stop`), which it keeps.

Linear layers (bf16 on a CPU): their weights are reordered once per `generate` call into
oneDNN's blocked layout (`prepacked_linears`), which the plain bf16 matmul otherwise redoes at
every call; a decode step's matmuls at 8-64 rows ran 1.5-2x faster, the tokens identical.
RMSNorm layers normalise a prefill's activations 512 positions at a time (`chunked_norms`), and
the attention mask goes in as SDPA's own 4D additive mask (`attention_mask`): both the same
bytes, both saving time a one-thread prefill spent streaming or converting activation-sized arrays.

Sampling: temperature, then nucleus (top-p) on the sorted probabilities (the top 256 where
they hold the nucleus: sorting and drawing over the whole 49k vocabulary was ~10 % of a GRPO
step), drawn from a torch.Generator seeded per batch (`seed`, batch index), so a run is
repeatable whatever the thread count or the order other jobs run in.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import time

from ehrmind.generation import Generation, SamplingSpec, Stats, cut_at_stop

log = logging.getLogger(__name__)

NUCLEUS_CANDIDATES = 256   # tokens sorted for top-p sampling when they hold the nucleus
NORM_CHUNK_ROWS = 512      # positions per chunk of a large RMSNorm input (`chunked_norms`)


class HFBackend:
    name = "hf"

    def __init__(self, model, tokenizer, batch_size: int = 32):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.stats = Stats()
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos = [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]
        self.eos_ids = sorted({tokenizer.eos_token_id, *eos} - {None})
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Generation]]:
        """`spec.n` generations per prompt, in prompt order. `batch_size` counts sequences,
        so a batch holds batch_size // n prompts with all their samples."""
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        per_batch = max(1, self.batch_size // spec.n)
        results: list[list[Generation]] = [[] for _ in prompts]
        started, done = time.perf_counter(), 0
        with prepacked_linears(self.model, self.batch_size), chunked_norms(self.model):
            for b, first in enumerate(range(0, len(order), per_batch)):
                idx = order[first:first + per_batch]
                for i, gens in zip(idx, self._batch([prompts[i] for i in idx], spec, seed=(spec.seed, b))):
                    results[i] = gens
                    done += sum(g.n_tokens for g in gens)
                elapsed = time.perf_counter() - started
                log.info("generated %d/%d prompts x %d, %d tokens, %.1f tokens/s", min(first + per_batch, len(order)),
                         len(order), spec.n, done, done / max(elapsed, 1e-9))
        self.stats.prompts += len(prompts)
        self.stats.prompt_tokens += sum(map(len, prompts))
        self.stats.generated_tokens += done
        self.stats.seconds += time.perf_counter() - started
        return results

    def _batch(self, prompts: list[list[int]], spec: SamplingSpec, seed: tuple[int, int]) -> list[list[Generation]]:
        import torch
        model, device, n = self.model, self.model.device, spec.n
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p):] = torch.tensor(p)
            mask[r, width - len(p):] = 1
        ids, mask = ids.to(device), mask.to(device)
        generator = torch.Generator(device=device).manual_seed(seed[0] * 1_000_003 + seed[1])
        eos = torch.tensor(self.eos_ids, device=device)
        watch = torch.tensor(spec.watch, dtype=torch.long, device=device) if spec.watch else None

        rows = len(prompts) * n
        tokens = [[] for _ in range(rows)]
        watched = [[] for _ in range(rows)] if watch is not None else None
        logprobs = [[] for _ in range(rows)] if spec.logprobs else None
        finished = [False] * rows
        window = max(len(s.encode()) for s in spec.stop) + 2 if spec.stop else 0
        alive = torch.arange(rows, device=device)   # original row of each live sequence
        with torch.inference_mode():
            started = time.perf_counter()
            out = model(input_ids=ids, attention_mask=attention_mask(model, mask, queries=width),
                        position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                        use_cache=True, logits_to_keep=1)
            self.stats.prefill_seconds += time.perf_counter() - started
            cache, logits = out.past_key_values, out.logits[:, -1, :]
            if n > 1:   # one encoded prompt serves its n samples
                cache.batch_repeat_interleave(n)
                logits, mask = logits.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
            reserve(cache, spec.max_new_tokens)
            positions = mask.sum(-1, keepdim=True)
            plain_greedy = spec.temperature <= 0 and watch is None and logprobs is None
            for step in range(spec.max_new_tokens):
                if plain_greedy:   # the same token as argmax of the log-softmax, without computing it
                    nxt = logits.max(-1).indices
                else:
                    logp = torch.log_softmax(logits.float(), dim=-1)
                    nxt = self._pick(logp, spec, generator)
                chosen = nxt.tolist()
                if watch is not None:
                    seen = logp[:, watch].tolist()
                if logprobs is not None:   # of the distribution sampled from (temperature applied)
                    sampled = logp if spec.temperature <= 0 else torch.log_softmax(logp / spec.temperature, -1)
                    picked = sampled.gather(1, nxt[:, None])[:, 0].tolist()
                for j, row in enumerate(alive.tolist()):
                    tokens[row].append(chosen[j])
                    if watch is not None:
                        watched[row].append(tuple(seen[j]))
                    if logprobs is not None:
                        logprobs[row].append(picked[j])
                done = torch.isin(nxt, eos)
                if window:
                    for j, row in enumerate(alive.tolist()):
                        if not done[j] and self._stopped(tokens[row][-window:], spec.stop):
                            done[j] = True
                for j in done.nonzero()[:, 0].tolist():
                    finished[alive[j]] = True
                if step == spec.max_new_tokens - 1:
                    break
                keep = (~done).nonzero()[:, 0]
                if keep.numel() == 0:
                    break
                if keep.numel() < alive.numel():   # drop finished rows from the batch and the cache
                    cache.batch_select_indices(keep)
                    alive, nxt, mask, positions = alive[keep], nxt[keep], mask[keep], positions[keep]
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
                out = model(input_ids=nxt[:, None], attention_mask=attention_mask(model, mask, queries=1),
                            position_ids=positions,
                            past_key_values=cache, use_cache=True)
                cache, logits, positions = out.past_key_values, out.logits[:, -1, :], positions + 1
        decode = self.tokenizer.decode
        gens = [Generation(cut_at_stop(decode(t, skip_special_tokens=True), spec.stop)[0], len(t), tuple(t),
                           tuple(watched[r]) if watched is not None else (),
                           tuple(logprobs[r]) if logprobs is not None else (), finished[r])
                for r, t in enumerate(tokens)]
        return [gens[p * n:(p + 1) * n] for p in range(len(prompts))]

    def _stopped(self, tail: list[int], stop: tuple[str, ...]) -> bool:
        text = self.tokenizer.decode(tail, skip_special_tokens=True)
        return any(s in text for s in stop)

    @staticmethod
    def _pick(logp, spec: SamplingSpec, generator):
        import torch
        if spec.temperature <= 0:
            return logp.argmax(-1)
        probs = torch.softmax(logp / spec.temperature, dim=-1)
        if spec.top_p < 1.0:
            # The nucleus of a peaked distribution lies within its top few hundred tokens: sort only
            # those when they hold top_p of every row's mass (the same nucleus), else the whole vocabulary.
            sorted_p, order = probs.topk(min(NUCLEUS_CANDIDATES, probs.size(-1)), dim=-1)
            if not (sorted_p.sum(-1) >= spec.top_p).all():
                sorted_p, order = probs.sort(dim=-1, descending=True)
            # keep the smallest prefix whose mass reaches top_p (the first token always stays)
            drop = sorted_p.cumsum(-1) - sorted_p >= spec.top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            choice = torch.multinomial(sorted_p, 1, generator=generator)
            return order.gather(1, choice)[:, 0]
        return torch.multinomial(probs, 1, generator=generator)[:, 0]


@contextlib.contextmanager
def prepacked_linears(model, rows: int):
    """While inside: the bf16 `nn.Linear` layers of a CPU model multiply with a copy of their
    weights prepacked for oneDNN (the kernel PyTorch's own bf16 CPU matmul calls, which
    reorders the weight at every call), sized for `rows` rows. The weights must not change
    inside (the GRPO rollout copy is repacked at each round's `generate`). Elsewhere (a GPU,
    fp32, a PyTorch without the op) layers stay as they are."""
    import torch
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear and m.weight.dtype == torch.bfloat16
               and m.weight.device.type == "cpu"]
    pack = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None) if torch.backends.mkldnn.is_available() else None
    if pack is not None:
        try:
            for m in linears:   # an instance attribute shadows the class's forward
                m.forward = functools.partial(_packed_linear, pack(m.weight.detach(), rows), m.bias)
        except RuntimeError as exc:   # a oneDNN build without bf16 kernels for this CPU
            log.warning("linear layers not prepacked (%s); generating with the plain matmul", exc)
            _restore_forward(linears)
    try:
        yield
    finally:
        _restore_forward(linears)


@contextlib.contextmanager
def chunked_norms(model, rows: int = NORM_CHUNK_ROWS):
    """While inside: the RMSNorm layers of a CPU model normalise a large input `rows` positions
    at a time, each chunk through the layer's own forward. A prefill's norms (batch x prompt
    positions x hidden, upcast to fp32 and back) otherwise stream several arrays the size of
    the activations through memory: in chunks they stay in cache, ~4x faster, the output the
    same bytes (the norm is computed row by row either way)."""
    norms = [m for m in model.modules() if type(m).__name__.endswith("RMSNorm")
             and all(p.device.type == "cpu" for p in m.parameters())]
    for m in norms:
        m.forward = functools.partial(_chunked_norm, m.forward, rows)
    try:
        yield
    finally:
        _restore_forward(norms)


def _chunked_norm(forward, rows: int, x):
    flat = x.reshape(-1, x.shape[-1])
    if flat.shape[0] <= rows:
        return forward(x)
    chunks = flat.split(rows)
    first = forward(chunks[0])   # one chunk's intermediates in cache at a time
    out = first.new_empty((flat.shape[0], first.shape[-1]))
    out[:rows] = first
    for i, chunk in enumerate(chunks[1:], 1):
        out[i * rows:i * rows + chunk.shape[0]] = forward(chunk)
    return out.view(*x.shape[:-1], first.shape[-1])


def _packed_linear(weight, bias, x):
    import torch
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _restore_forward(modules) -> None:
    """Drop the instance `forward` that shadowed each module's class forward."""
    for m in modules:
        m.__dict__.pop("forward", None)


def attention_mask(model, mask, queries: int):
    """The attention mask for `queries` new positions per row, given the 2D mask of all of them
    (1 = a token, 0 = left padding). Where the model attends with SDPA over every position on
    the CPU: the 4D additive mask SDPA computes with, (batch, 1, queries, positions), 0 where a
    query may attend and -inf elsewhere (padding; later positions, in a prefill). transformers
    passes a 4D mask through as it is; given the 2D mask it builds the same pattern as booleans,
    which SDPA converts to these values in every layer: the same outputs, one conversion a
    forward instead of one a layer (~4 % of a one-thread trec_ct prefill). Elsewhere (sliding
    windows, other attention kernels), and where no row is padded, the 2D mask, for transformers
    to build."""
    import torch
    config = model.config
    kinds = getattr(config, "layer_types", None)
    full = all(k == "full_attention" for k in kinds) if kinds else not getattr(config, "sliding_window", None)
    if not (full and getattr(config, "_attn_implementation", None) == "sdpa" and mask.device.type == "cpu"):
        return mask
    if bool(mask.all()):   # no padding: transformers passes SDPA no mask at all (its causal flag), another kernel
        return mask
    keys = mask.shape[1]
    allowed = mask.bool()[:, None, None, :]
    if queries > 1:   # causal: query i (of the last `queries` positions) sees keys up to its own
        allowed = allowed & torch.ones(queries, keys, dtype=torch.bool, device=mask.device).tril(keys - queries)
    return torch.zeros(allowed.shape, dtype=model.dtype, device=mask.device).masked_fill(~allowed, float("-inf"))


def reserve(cache, extra: int) -> None:
    """Give each plain DynamicLayer of `cache` room for `extra` more positions, written in place
    (`_Reserved`); other layer kinds (sliding windows, linear attention) stay as they are."""
    from transformers.cache_utils import DynamicLayer
    for layer in getattr(cache, "layers", []):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.get_seq_length() > 0:
            layer.__class__ = _reserved_class()
            layer.allocate(extra)


@functools.cache   # one class (transformers is imported only when a model runs)
def _reserved_class():
    from transformers.cache_utils import DynamicLayer

    class _Reserved(DynamicLayer):
        """A DynamicLayer over a preallocated buffer: keys/values are views of its first `used`
        positions; `update` writes the new positions in place instead of concatenating."""

        def allocate(self, extra: int) -> None:
            b, h, n, d = self.keys.shape
            self.k_buf = self.keys.new_empty(b, h, n + extra, d)
            self.v_buf = self.values.new_empty(b, h, n + extra, d)
            self.k_buf[:, :, :n], self.v_buf[:, :, :n] = self.keys, self.values
            self._view(n)

        def _view(self, used: int) -> None:
            self.used = used
            self.keys, self.values = self.k_buf[:, :, :used], self.v_buf[:, :, :used]

        def update(self, key_states, value_states, *args, **kwargs):
            end = self.used + key_states.shape[-2]   # within the reserve: the decode loop sizes it
            self.k_buf[:, :, self.used:end], self.v_buf[:, :, self.used:end] = key_states, value_states
            self._view(end)
            return self.keys, self.values

        def batch_select_indices(self, indices) -> None:
            self.k_buf, self.v_buf = self.k_buf[indices], self.v_buf[indices]
            self._view(self.used)

        def batch_repeat_interleave(self, repeats: int) -> None:
            self.k_buf = self.k_buf.repeat_interleave(repeats, dim=0)
            self.v_buf = self.v_buf.repeat_interleave(repeats, dim=0)
            self._view(self.used)

    return _Reserved
