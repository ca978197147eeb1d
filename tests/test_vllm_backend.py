"""The vLLM backend against a fake engine shaped like vllm.LLM (vllm is not installed off the
GPU image): prompt order, n samples per prompt, the SamplingSpec -> SamplingParams mapping,
watched and sampled-token log-probabilities, finished flags, and the same Generation objects
as the HF backend for the same tokens. `agree` compares two backends' outputs."""
import dataclasses
import math
import random

import pytest

from ehrmind import models
from ehrmind.generation import Generation, SamplingSpec
from ehrmind.generation.hf import HFBackend
from ehrmind.generation.vllm_backend import VLLMBackend, _seed, agree

EOS = 2


# --- fakes shaped like vLLM 0.31's SamplingParams, Logprob, CompletionOutput, RequestOutput -----

class FakeSamplingParams:
    """Takes the keywords vLLM's SamplingParams has (a msgspec Struct: an unknown one is a
    TypeError) and refuses what vLLM refuses: greedy with n > 1, logprobs != len(logprob_token_ids),
    stop strings without detokenize."""
    FIELDS = {"n", "temperature", "top_p", "max_tokens", "seed", "detokenize", "logprobs", "logprob_token_ids",
              "stop", "include_stop_str_in_output"}
    made: list = []

    def __init__(self, **kw):
        unknown = set(kw) - self.FIELDS
        if unknown:
            raise TypeError(f"Unexpected keyword argument {sorted(unknown)[0]!r}")
        if kw.get("temperature", 1.0) < 1e-5 and kw.get("n", 1) > 1:
            raise ValueError("n must be 1 when using greedy sampling")
        ids = kw.get("logprob_token_ids")
        if ids is not None and kw.get("logprobs") is not None and kw["logprobs"] != len(ids):
            raise ValueError("logprobs must equal len(logprob_token_ids)")
        if kw.get("stop") and not kw.get("detokenize", True):
            raise ValueError("stop strings are only supported when detokenize is True.")
        self.__dict__.update(kw)
        FakeSamplingParams.made.append(kw)


class OldSamplingParams(FakeSamplingParams):
    """A vLLM without logprob_token_ids."""
    FIELDS = FakeSamplingParams.FIELDS - {"logprob_token_ids"}


@dataclasses.dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclasses.dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list
    cumulative_logprob: float | None
    logprobs: list | None
    finish_reason: str | None
    stop_reason: int | str | None = None


@dataclasses.dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list
    prompt_logprobs: list | None
    outputs: list
    finished: bool = True


def fake_value(step: int, token: int) -> float:
    """The fake model's log-probability of `token` at `step`."""
    return -0.5 - ((step * 31 + token * 7) % 50) / 10


def fake_tokens(prompt: list[int], seed: int, max_tokens: int) -> list[int]:
    """What the fake model generates: a function of prompt and seed; ends with EOS or is cut."""
    rng = random.Random(hash((tuple(prompt), seed)))
    out = []
    while len(out) < max_tokens:
        out.append(EOS if rng.random() < 0.2 else rng.randrange(3, 60))
        if out[-1] == EOS:
            break
    return out


class FakeLLM:
    """Answers generate(prompts, sampling_params) like vllm.LLM: one RequestOutput per prompt, in
    order, each with n CompletionOutputs; sample k uses seed + k (vLLM's parallel sampling)."""

    def __init__(self, replay=None, shuffle=False, top_k_ids=range(3, 23), honour_ids=True):
        self.replay, self.shuffle, self.top_k_ids, self.calls = replay, shuffle, set(top_k_ids), []
        self.honour_ids = honour_ids   # False: ignore logprob_token_ids (a broken engine)

    def generate(self, prompts, sampling_params, use_tqdm=True):
        assert isinstance(sampling_params, list) and len(sampling_params) == len(prompts)
        self.calls.append((prompts, sampling_params))
        outs = []
        for i, (prompt, sp) in enumerate(zip(prompts, sampling_params)):
            ids = prompt["prompt_token_ids"]
            comps = []
            for k in range(sp.n):
                if self.replay is not None:
                    tokens, values = self.replay[i][k]
                else:
                    tokens = fake_tokens(ids, sp.seed + k, sp.max_tokens)
                    values = None
                tokens, stopped = self._stop(sp, tokens)
                comps.append(CompletionOutput(k, "<vLLM's own text, unused>", tokens, None,
                                              self._logprobs(sp, tokens, values),
                                              "stop" if stopped or tokens[-1] == EOS else "length"))
            outs.append(RequestOutput(str(i), None, ids, None, comps[::-1]))   # index order is not list order
        return outs[::-1] if self.shuffle else outs

    @staticmethod
    def _stop(sp, tokens):
        """Tokens through the one whose text completes a stop string (vLLM keeps that token)."""
        for end in range(1, len(tokens) + 1) if getattr(sp, "stop", None) else ():
            if any(s in Tok().decode(tokens[:end], skip_special_tokens=True) for s in sp.stop):
                return tokens[:end], True
        return tokens, False

    def _logprobs(self, sp, tokens, values):
        if sp.logprobs is None:
            return None
        wanted = getattr(sp, "logprob_token_ids", None) if self.honour_ids else None
        steps = []
        for step, token in enumerate(tokens):
            ids = set(wanted) if wanted else (self.top_k_ids if sp.logprobs else set())
            lp = values[step] if values else (lambda t: fake_value(step, t))
            steps.append({t: Logprob(lp(t)) for t in ids | {token}})
        return steps


class Tok:
    def decode(self, ids, skip_special_tokens=False):
        return " ".join(f"t{i}" for i in ids if not (skip_special_tokens and i == EOS))


@pytest.fixture(autouse=True)
def _fresh_params():
    FakeSamplingParams.made.clear()


def backend(engine=None, params=FakeSamplingParams):
    return VLLMBackend(engine or FakeLLM(), Tok(), params, dtype="bfloat16", max_logprobs=20)


PROMPTS = [[5, 6, 7], [8], [9, 10, 11, 12], [5, 6, 7]]


def test_samples_come_back_in_prompt_order_with_n_each():
    spec = SamplingSpec(max_new_tokens=5, n=3, temperature=0.6, top_p=0.95, seed=4)
    out = backend().generate(PROMPTS, spec)
    assert [len(g) for g in out] == [3] * len(PROMPTS)
    for i, (prompt, gens) in enumerate(zip(PROMPTS, out)):
        for k, g in enumerate(gens):
            tokens = fake_tokens(prompt, _seed(4, i, 3) + k, 5)
            assert g.token_ids == tuple(tokens) and g.n_tokens == len(tokens)
            assert g.text == Tok().decode(tokens, skip_special_tokens=True)   # our decoding, not vLLM's text
            assert g.finished == (tokens[-1] == EOS)
    assert out[0] != out[3]   # the same prompt twice is two independent draws
    flags = [g.finished for gens in out for g in gens]
    assert True in flags and False in flags   # both kinds occurred


def test_spec_maps_to_sampling_params():
    engine = FakeLLM()
    backend(engine).generate(PROMPTS, SamplingSpec(max_new_tokens=9, n=4, temperature=0.7, top_p=0.9, seed=3))
    (requests, params), = engine.calls
    assert requests == [{"prompt_token_ids": p} for p in PROMPTS]   # token ids in, one request per prompt
    assert [p.__dict__ for p in params] == [
        {"n": 4, "temperature": 0.7, "top_p": 0.9, "max_tokens": 9, "seed": 3 * 2**32 + 4 * i,
         "detokenize": False, "logprobs": None} for i in range(len(PROMPTS))]
    seeds = {p.seed + k for p in params for k in range(p.n)}
    assert len(seeds) == len(PROMPTS) * 4   # no two samples of a call share a random stream


def test_stop_strings_go_to_the_engine_and_end_the_text():
    spec = SamplingSpec(max_new_tokens=12, n=2, temperature=0.6, top_p=0.95, seed=4)
    free = backend().generate(PROMPTS, spec)
    texts = [g.text for gens in free for g in gens]
    stop = next(f" t{i} " for i in range(3, 60) if 0 < sum(f" t{i} " in t for t in texts) < len(texts))
    engine = FakeLLM()
    out = backend(engine).generate(PROMPTS, dataclasses.replace(spec, stop=(stop, "never")))
    assert all(p.stop == [stop, "never"] and p.include_stop_str_in_output and p.detokenize for p in engine.calls[0][1])
    for gens, ref in zip(out, free):
        for g, r in zip(gens, ref):
            if stop in r.text:   # cut after the stop string, which stays; the token ids end with its last token
                assert g.text == r.text[:r.text.index(stop) + len(stop)] and g.finished
                assert g.token_ids == r.token_ids[:g.n_tokens] and g.n_tokens <= r.n_tokens
            else:
                assert g == r
    with pytest.raises(ValueError, match="detokenize"):   # what vLLM says without detokenize
        FakeSamplingParams(stop=["x"], detokenize=False)


def test_greedy_asks_once_and_repeats_the_sample():
    engine = FakeLLM()
    out = backend(engine).generate(PROMPTS, SamplingSpec(max_new_tokens=9, n=3))
    assert all(p.n == 1 and p.temperature == 0.0 and p.top_p == 1.0 for p in engine.calls[0][1])
    assert all(len(g) == 3 and g[0] == g[1] == g[2] for g in out)


def test_sampled_token_logprobs():
    engine = FakeLLM()
    out = backend(engine).generate(PROMPTS, SamplingSpec(max_new_tokens=9, n=2, temperature=1.0, logprobs=True))
    assert all(p.logprobs == 0 for p in engine.calls[0][1])   # the sampled token only
    for gens in out:
        for g in gens:
            assert g.logprobs == tuple(fake_value(s, t) for s, t in enumerate(g.token_ids))
            assert g.watched == ()


def test_watched_tokens_by_id_at_every_step():
    engine = FakeLLM()
    b = backend(engine)
    watch = (48, 3, 48)   # 48 is never in the fake's top 20; a repeat is asked for once
    out = b.generate(PROMPTS, SamplingSpec(max_new_tokens=9, watch=watch))
    assert b.watch_mode == "token_ids" and b.stats.extra["watch_mode"] == "token_ids"
    assert all(p.logprob_token_ids == [48, 3] and p.logprobs == 2 for p in engine.calls[0][1])
    for (g, *_) in out:
        assert g.watched == tuple(tuple(fake_value(s, t) for t in watch) for s in range(g.n_tokens))
        assert g.logprobs == ()


def test_without_logprob_token_ids_watched_tokens_outside_the_top_k_are_minus_inf():
    b = backend(params=OldSamplingParams)
    out = b.generate(PROMPTS, SamplingSpec(max_new_tokens=9, watch=(48, 3)))
    assert b.watch_mode == "top_k"
    assert all(p["logprobs"] == 20 for p in FakeSamplingParams.made[1:])   # the first try had token ids
    for (g, *_) in out:
        assert g.watched == tuple((-math.inf, fake_value(s, 3)) for s in range(g.n_tokens))


def test_a_watched_id_missing_despite_logprob_token_ids_is_an_error():
    with pytest.raises(RuntimeError, match="no log-probability for token 48"):
        backend(FakeLLM(honour_ids=False)).generate(PROMPTS, SamplingSpec(max_new_tokens=4, watch=(48,)))


def test_outputs_out_of_order_are_an_error():
    with pytest.raises(RuntimeError, match="out of order"):
        backend(FakeLLM(shuffle=True)).generate(PROMPTS, SamplingSpec(max_new_tokens=4))


def test_from_model_builds_the_engine(tmp_path, monkeypatch):
    """vllm.LLM gets the checkpoint, the dtype from `precision`, the defaults and the caller's
    engine arguments over them; the tokenizer is the checkpoint's own."""
    import sys
    import types
    built = {}

    class LLM:
        def __init__(self, **kw):
            built.update(kw)
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=FakeSamplingParams))
    ref = models.prepare("tiny:1", tmp_path / "tiny.json", tmp_path)
    b = VLLMBackend.from_model(tmp_path / "tiny.json", precision="bf16", gpu_memory_utilization=0.3,
                               max_model_len=4096, tensor_parallel_size=2)
    assert built == {"model": ref["path"], "tokenizer": ref["path"], "dtype": "bfloat16", "trust_remote_code": False,
                     "gpu_memory_utilization": 0.3, "enable_prefix_caching": True, "max_logprobs": 20, "seed": 0,
                     "logprobs_mode": "processed_logprobs", "max_model_len": 4096, "tensor_parallel_size": 2}
    assert b.dtype == "bfloat16" and b.name == "vllm" and b.tokenizer.decode([b.tokenizer.eos_token_id])
    VLLMBackend.from_model(tmp_path / "tiny.json", precision="fp32")
    assert built["dtype"] == "float32"


def test_from_model_says_what_is_missing_without_vllm():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="needs the vllm package.*backend"):
        VLLMBackend.from_model("some/model")


def test_agree_counts_identical_outputs_and_finds_the_first_difference():
    def gen(ids):
        return Generation(" ".join(map(str, ids)), len(ids), tuple(ids))
    a = [[gen([1, 2, 3])], [gen([4, 5, 6, 2])], [gen([7, 8])]]
    b = [[gen([1, 2, 3])], [gen([4, 5, 9, 2])], [gen([7, 8, 9])]]
    report = agree(a, b)
    assert (report["outputs"], report["identical"], report["same_text"]) == (3, 1, 1)
    assert [(d["prompt"], d["first_diff_step"]) for d in report["differ"]] == [(1, 2), (2, 2)]
    assert report["median_first_diff_step"] == 2
    with pytest.raises(ValueError, match="differ in prompts"):
        agree(a, b[:2])


def test_same_generations_as_the_hf_backend_for_the_same_tokens(tmp_path):
    """HF generates on the tiny model; the fake vLLM engine replays those tokens and log-probs.
    The vLLM backend must then return equal Generation objects (fields, types, text decoded the
    same way), so whatever scores HF output scores vLLM output alike."""
    ref = models.prepare("tiny:1", tmp_path / "tiny.json", tmp_path)
    net, tok = models.load(ref["path"], precision="fp32")
    hf = HFBackend(net, tok, batch_size=8)
    prompts = [tok.encode(t) for t in ("The patient is", "Answer:", "Heart rate 88, blood pressure")]
    watch = tuple(tok.convert_tokens_to_ids(["0", "1"]))
    spec = SamplingSpec(max_new_tokens=6, n=2, temperature=0.8, seed=1, watch=watch, logprobs=True)
    ref_out = hf.generate(prompts, spec)
    replay = [[(list(g.token_ids), [_step_values(g, s, watch) for s in range(g.n_tokens)]) for g in gens]
              for gens in ref_out]
    out = VLLMBackend(FakeLLM(replay=replay), tok, FakeSamplingParams).generate(prompts, spec)
    assert out == ref_out
    for x, y in zip(ref_out[0], out[0]):
        for f in dataclasses.fields(Generation):
            assert type(getattr(x, f.name)) is type(getattr(y, f.name)), f.name
    assert agree(ref_out, out)["identical"] == 6


def _step_values(g, step, watch):
    """The HF generation's numbers at one step, as the fake engine should report them."""
    values = dict(zip(watch, g.watched[step]))
    values[g.token_ids[step]] = g.logprobs[step]
    return lambda t: values[t]
