"""The vLLM backend (paper scale, GPUs): the HF backend's `generate`, served by `vllm.LLM`.

Prompts go in as token ids (`{"prompt_token_ids": ids}`, vLLM's TokensPrompt), one request
per prompt with `n = spec.n`: vLLM prefills each prompt once and forks its n samples
(parallel sampling). Text is decoded here, with our tokenizer and skip_special_tokens, as the
HF backend does, so equal tokens give equal text and the same scoring downstream.

SamplingSpec -> SamplingParams (read from vLLM's vllm/sampling_params.py, the version pinned
in envs/requirements-gpu.txt, 0.31.0):
  n, temperature, top_p, max_tokens = max_new_tokens, detokenize = False;
  seed: one per prompt, `_seed(spec.seed, i, n)`; vLLM gives the k-th of the n samples
    seed + k (vllm/v1/engine/parallel_sampling.py), so no two samples of a call share a stream;
  greedy (temperature 0) with n > 1: vLLM refuses it ("n must be 1 when using greedy
    sampling"); greedy samples are identical, so one is decoded and repeated n times.
Log-probabilities come back per step as {token id: Logprob} with the sampled token always in
it. The engine is built with logprobs_mode "processed_logprobs" (vLLM's default is "raw_logprobs"):
  greedy steps (evaluation, where `watch` is used): log_softmax of the logits, exactly the HF
    backend's numbers (vLLM takes greedy logprobs before temperature either way);
  sampled steps: of the distribution sampled from, temperature applied, as the HF backend's
    `logprobs`; vLLM also renormalizes over the top-p nucleus, which raises them by at most
    -ln(top_p) (0.05 nats at top_p 0.95). Watched ids under sampling are processed the same way
    (the HF backend records them raw); a watched id outside the nucleus reads -inf.
  spec.logprobs only: logprobs = 0, the sampled token alone (TRL asks the same).
  spec.watch: logprob_token_ids = the watched ids, logprobs = their count (0.31 requires the
    two to agree): exactly those ids at every step, whatever their rank. Why not logprobs = k:
    a watched id outside the top k has no value at that step. Only where the installed vLLM
    lacks logprob_token_ids (TypeError) does the backend fall back to the top max_logprobs
    and record a missing watched id as -inf; `watch_mode` says which path ran.
  spec.stop: stop = the strings, include_stop_str_in_output = True, and detokenize = True (vLLM
    refuses stop strings without it). The text is still our own decoding of the token ids, cut
    after the first stop string (`cut_at_stop`), as the HF backend does.
`finished`: finish_reason == "stop" (an end-of-sequence token or a stop string; "length" is a cut).
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

from ehrmind.generation import Generation, SamplingSpec, Stats, cut_at_stop

log = logging.getLogger(__name__)

# vllm.LLM arguments unless the caller sets them (engine_args override each).
ENGINE_DEFAULTS: dict[str, Any] = {"gpu_memory_utilization": 0.85, "enable_prefix_caching": True,
                                   "max_logprobs": 20, "seed": 0, "logprobs_mode": "processed_logprobs"}


def _seed(seed: int, prompt: int, n: int) -> int:
    """A prompt's seed; its samples take seed .. seed + n - 1, distinct across a call's prompts."""
    return seed * 2**32 + prompt * n


def _logprob(step: dict, token: int, where: str, missing: float | None) -> float:
    entry = step.get(token)
    if entry is None:
        if missing is None:
            raise RuntimeError(f"vLLM returned no log-probability for token {token} ({where})")
        return missing
    return float(getattr(entry, "logprob", entry))


class VLLMBackend:
    name = "vllm"

    def __init__(self, engine, tokenizer, sampling_params: Callable[..., Any], dtype: str = "",
                 max_logprobs: int = 20):
        self.engine, self.tokenizer, self._sampling_params = engine, tokenizer, sampling_params
        self.dtype, self.max_logprobs = dtype, max_logprobs
        self.stats = Stats()
        self.watch_mode: str | None = None   # "token_ids" or "top_k", once watch was asked for

    @classmethod
    def from_model(cls, model: str, precision: str = "auto", trust_remote_code: bool = False,
                   **engine_args) -> "VLLMBackend":
        """A vllm.LLM on `model` (checkpoint directory or model reference JSON). engine_args go to
        vllm.LLM as they are (gpu_memory_utilization, max_model_len, enable_prefix_caching,
        tensor_parallel_size, seed, enforce_eager, ...), over ENGINE_DEFAULTS."""
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise RuntimeError("generation backend 'vllm' needs the vllm package (the GPU image has it; "
                               "envs/requirements-gpu.txt pins vllm==0.31.0); set generation.backend "
                               "to hf or auto where it is missing") from None
        from transformers import AutoTokenizer
        from ehrmind import models
        location = models.resolve(model)
        dtype = "bfloat16" if models.use_bf16(precision) else "float32"
        args = {**ENGINE_DEFAULTS, **engine_args}
        log.info("vLLM engine on %s, dtype %s, %s", location, dtype, args)
        engine = LLM(model=location, tokenizer=location, dtype=dtype, trust_remote_code=trust_remote_code, **args)
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
        return cls(engine, tokenizer, SamplingParams, dtype=dtype, max_logprobs=args["max_logprobs"])

    def sampling_params(self, spec: SamplingSpec, n: int, seed: int):
        """The SamplingParams of one prompt (n samples)."""
        greedy = spec.temperature <= 0
        kw = dict(n=n, temperature=0.0 if greedy else spec.temperature, top_p=1.0 if greedy else spec.top_p,
                  max_tokens=spec.max_new_tokens, seed=seed, detokenize=False)
        if spec.stop:
            kw.update(stop=list(spec.stop), include_stop_str_in_output=True, detokenize=True)
        watch = list(dict.fromkeys(spec.watch))
        if not watch:
            return self._sampling_params(**kw, logprobs=0 if spec.logprobs else None)
        if self.watch_mode != "top_k":
            try:
                params = self._sampling_params(**kw, logprobs=len(watch), logprob_token_ids=watch)
                self.watch_mode = "token_ids"
                return params
            except TypeError:
                log.warning("this vLLM has no SamplingParams.logprob_token_ids: watched tokens are read "
                            "from the top %d log-probabilities, -inf where absent", self.max_logprobs)
                self.watch_mode = "top_k"
        return self._sampling_params(**kw, logprobs=self.max_logprobs)

    def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Generation]]:
        """`spec.n` generations per prompt, in prompt order."""
        started = time.perf_counter()
        greedy = spec.temperature <= 0
        n = 1 if greedy else spec.n
        params = [self.sampling_params(spec, n, _seed(spec.seed, i, n)) for i in range(len(prompts))]
        outputs = self.engine.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM answered {len(outputs)} of {len(prompts)} prompts")
        results, generated = [], 0
        for i, (prompt, out) in enumerate(zip(prompts, outputs)):
            echoed = getattr(out, "prompt_token_ids", None)
            if echoed is not None and list(echoed) != list(prompt):
                raise RuntimeError(f"vLLM output {i} belongs to another prompt (outputs out of order)")
            completions = sorted(out.outputs, key=lambda c: c.index)
            if len(completions) != n:
                raise RuntimeError(f"vLLM returned {len(completions)} samples for prompt {i}, expected {n}")
            gens = [self._generation(c, spec, f"prompt {i}, sample {c.index}") for c in completions]
            generated += sum(g.n_tokens for g in gens)
            results.append(gens * spec.n if greedy else gens)   # greedy: the n samples are one
        elapsed = time.perf_counter() - started
        self.stats.prompts += len(prompts)
        self.stats.prompt_tokens += sum(map(len, prompts))
        self.stats.generated_tokens += generated
        self.stats.seconds += elapsed
        if self.watch_mode:
            self.stats.extra["watch_mode"] = self.watch_mode
        log.info("vLLM: %d prompts x %d, %d tokens, %.1f tokens/s", len(prompts), spec.n, generated,
                 generated / max(elapsed, 1e-9))
        return results

    def _generation(self, c, spec: SamplingSpec, where: str) -> Generation:
        ids = tuple(int(t) for t in c.token_ids)
        wanted = bool(spec.watch or spec.logprobs)
        steps = list(c.logprobs or []) if wanted else []
        if wanted and len(steps) != len(ids):
            raise RuntimeError(f"vLLM returned log-probabilities for {len(steps)} of {len(ids)} steps ({where})")
        missing = -math.inf if self.watch_mode == "top_k" else None
        watched = tuple(tuple(_logprob(s, t, where, missing) for t in spec.watch) for s in steps) if spec.watch else ()
        logprobs = tuple(_logprob(s, t, where, None) for s, t in zip(steps, ids)) if spec.logprobs else ()
        text = cut_at_stop(self.tokenizer.decode(list(ids), skip_special_tokens=True), spec.stop)[0]
        return Generation(text, len(ids), ids, watched, logprobs, c.finish_reason == "stop")


def agree(a: list[list[Generation]], b: list[list[Generation]]) -> dict[str, Any]:
    """How many outputs of two backends on the same prompts are identical (token ids where both
    have them, else text), and where they differ, the first differing step (a token index; a
    character index where text was compared). For the README's check of vLLM against HF."""
    if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
        raise ValueError("agree: the two runs differ in prompts or samples per prompt")
    differ = []
    total = 0
    for p, (xs, ys) in enumerate(zip(a, b)):
        for s, (x, y) in enumerate(zip(xs, ys)):
            total += 1
            u, v = (x.token_ids, y.token_ids) if x.token_ids and y.token_ids else (x.text, y.text)
            if u == v:
                continue
            step = next((k for k, (i, j) in enumerate(zip(u, v)) if i != j), min(len(u), len(v)))
            differ.append({"prompt": p, "sample": s, "first_diff_step": step,
                           "tokens": [x.n_tokens, y.n_tokens], "same_text": x.text == y.text})
    steps = sorted(d["first_diff_step"] for d in differ)
    return {"outputs": total, "identical": total - len(differ),
            "identical_fraction": (total - len(differ)) / total if total else 1.0,
            "same_text": total - sum(not d["same_text"] for d in differ),
            "median_first_diff_step": steps[len(steps) // 2] if steps else None, "differ": differ}
