"""The transformers backend: greedy output equals `model.generate`'s, each prompt is encoded
once for its n samples, finished rows leave the batch, sampling is repeatable; its CPU fast
paths (prepacked linears, chunked norms, 4D additive masks) compute what the plain model does."""
import contextlib
import types

import pytest
import torch

from ehrmind import models
from ehrmind.generation import SamplingSpec, choose
from ehrmind.generation.hf import HFBackend, attention_mask, chunked_norms, prepacked_linears


@pytest.fixture(scope="module")
def loaded(tiny_model):
    net, tok = models.load(tiny_model, precision="fp32")
    return net.eval(), tok


def _prompts(tok, n=5):
    return [tok(f"Question {i}: " + "word " * (i * 3), add_special_tokens=False)["input_ids"] for i in range(n)]


def test_greedy_matches_model_generate(loaded):
    net, tok = loaded
    prompts = _prompts(tok)
    ours = HFBackend(net, tok, batch_size=3).generate(prompts, SamplingSpec(max_new_tokens=12))
    for p, (g,) in zip(prompts, ours):
        with torch.inference_mode():
            ref = net.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False, temperature=None, top_p=None,
                               top_k=None, pad_token_id=tok.pad_token_id)[0, len(p):].tolist()
        assert list(g.token_ids) == ref[:len(g.token_ids)] and g.n_tokens == len(g.token_ids)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="a PyTorch build without oneDNN")
def test_prepacked_linears_compute_what_the_plain_layers_do(tiny_model, monkeypatch):
    net, tok = models.load(tiny_model, precision="bf16")
    net.eval()
    linears = [m for m in net.modules() if type(m) is torch.nn.Linear]
    ids = torch.tensor(_prompts(tok, 3)[2:])
    with torch.inference_mode():
        plain = net(input_ids=ids).logits
        with prepacked_linears(net, rows=1):
            assert all("forward" in m.__dict__ for m in linears)   # the packed weights are in use
            packed = net(input_ids=ids).logits
    assert not any("forward" in m.__dict__ for m in linears)        # and gone after
    torch.testing.assert_close(packed, plain, atol=0.02, rtol=0.02)
    # generation packs by itself; greedy tokens as with the plain layers
    spec = SamplingSpec(max_new_tokens=8)
    ours = HFBackend(net, tok, batch_size=4).generate(_prompts(tok), spec)
    monkeypatch.setattr("ehrmind.generation.hf.prepacked_linears", lambda model, rows: contextlib.nullcontext())
    assert HFBackend(net, tok, batch_size=4).generate(_prompts(tok), spec) == ours


def test_fp32_layers_are_not_prepacked(loaded):
    net, _ = loaded
    with prepacked_linears(net, rows=4):
        assert not any("forward" in m.__dict__ for m in net.modules())


def test_chunked_norms_give_the_same_bytes(tiny_model):
    net, _ = models.load(tiny_model, precision="bf16")
    norms = [m for m in net.modules() if type(m).__name__.endswith("RMSNorm")]
    x = torch.randn(3, 300, net.config.hidden_size, dtype=torch.bfloat16)
    with torch.inference_mode():
        plain = [m(x) for m in norms]
        with chunked_norms(net, rows=128):   # 900 positions: 7 chunks, the last one short
            assert norms and all("forward" in m.__dict__ for m in norms)
            chunked = [m(x) for m in norms]
            assert torch.equal(norms[0](x[:1, :5]), plain[0][:1, :5])   # small inputs go through whole
    assert not any("forward" in m.__dict__ for m in norms)
    assert all(torch.equal(a, b) for a, b in zip(chunked, plain))


def test_the_4d_additive_mask_gives_what_transformers_builds_from_the_2d_one(loaded):
    net, tok = loaded
    prompts = _prompts(tok, 3)
    width = max(map(len, prompts))
    ids = torch.zeros((3, width), dtype=torch.long)
    mask = torch.zeros((3, width), dtype=torch.long)
    for r, p in enumerate(prompts):   # left-padded, as the decode loop pads
        ids[r, width - len(p):], mask[r, width - len(p):] = torch.tensor(p), 1
    four_d = attention_mask(net, mask, queries=width)
    assert four_d.shape == (3, 1, width, width) and four_d.dtype == net.dtype
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        ref = net(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        ours = net(input_ids=ids, attention_mask=four_d, position_ids=positions).logits
    real = mask.bool()
    assert torch.equal(ours[real], ref[real])
    # one new position per row (a decode step) sees every key its row has
    step = attention_mask(net, mask, queries=1)
    assert step.shape == (3, 1, 1, width) and torch.equal(step[:, 0, 0] == 0, real)
    # no padding: the 2D mask, as transformers then gives SDPA none (another kernel, other low bits)
    assert attention_mask(net, torch.ones((2, 5), dtype=torch.long), queries=5).dim() == 2
    # models with sliding windows get the 2D mask, for transformers to build theirs
    windowed = types.SimpleNamespace(config=types.SimpleNamespace(layer_types=["sliding_attention"],
                                                                  _attn_implementation="sdpa"), dtype=net.dtype)
    assert attention_mask(windowed, mask, queries=width) is mask


def test_generation_with_4d_masks_is_bitwise_what_transformers_masks_give(tiny_model, monkeypatch):
    """The same generations, log-probabilities included, with and without the 4D masks, for
    prompts of one length (no padding: the 2D mask goes through) and of several."""
    net, tok = models.load(tiny_model, precision="bf16")
    net.eval()
    same_length = [tok("Question: " + "word " * 6, add_special_tokens=False)["input_ids"]] * 2
    spec = SamplingSpec(max_new_tokens=10, n=3, temperature=1.0, seed=5, logprobs=True)
    batches = (same_length, _prompts(tok, 3))
    ours = [HFBackend(net, tok, batch_size=9).generate(prompts, spec) for prompts in batches]
    monkeypatch.setattr("ehrmind.generation.hf.attention_mask", lambda model, mask, queries: mask)
    assert [HFBackend(net, tok, batch_size=9).generate(prompts, spec) for prompts in batches] == ours


def test_each_prompt_is_encoded_once_for_its_samples(loaded, monkeypatch):
    net, tok = loaded
    widths = []
    real = net.forward

    def spy(*args, **kwargs):
        widths.append(tuple(kwargs["input_ids"].shape))
        return real(*args, **kwargs)

    monkeypatch.setattr(net, "forward", spy)
    out = HFBackend(net, tok, batch_size=12).generate(_prompts(tok, 3), SamplingSpec(max_new_tokens=4, n=4,
                                                                                     temperature=1.0))
    assert [len(g) for g in out] == [4, 4, 4]
    assert widths[0][0] == 3            # the prefill: three prompts, not twelve rows
    assert all(w == (widths[1][0], 1) for w in widths[1:]) and widths[1][0] <= 12


def test_finished_rows_leave_the_batch(loaded):
    net, tok = loaded
    backend = HFBackend(net, tok, batch_size=8)
    backend.eos_ids = sorted(set(range(len(tok))) - {0})   # nearly any token ends a row at once
    out = backend.generate(_prompts(tok, 4), SamplingSpec(max_new_tokens=20, n=2, temperature=1.0))
    assert all(g.finished and g.n_tokens <= 20 for gens in out for g in gens)


def test_sampling_is_repeatable_and_seeded(loaded):
    net, tok = loaded
    spec = SamplingSpec(max_new_tokens=8, n=3, temperature=1.0, top_p=0.9, seed=7, logprobs=True)
    a = HFBackend(net, tok, batch_size=6).generate(_prompts(tok, 2), spec)
    b = HFBackend(net, tok, batch_size=6).generate(_prompts(tok, 2), spec)
    c = HFBackend(net, tok, batch_size=6).generate(_prompts(tok, 2), SamplingSpec(**{**spec.__dict__, "seed": 8}))
    assert a == b and a != c
    assert all(len(g.logprobs) == g.n_tokens and all(lp <= 0 for lp in g.logprobs) for gens in a for g in gens)


def test_watched_log_probabilities_cover_every_step(loaded):
    net, tok = loaded
    out = HFBackend(net, tok).generate(_prompts(tok, 2), SamplingSpec(max_new_tokens=5, watch=(15, 16)))
    for (g,) in out:
        assert len(g.watched) == g.n_tokens and all(len(step) == 2 for step in g.watched)


def test_backend_choice():
    assert choose("hf") == "hf" and choose("auto") in ("hf", "vllm")
    with pytest.raises(ValueError, match="backend must be one of"):
        choose("tensorrt")


def _stop_string(texts: list[str]) -> tuple[int, str]:
    """A row and a 3-character piece of its text, past its first few characters, that no other
    row's text holds."""
    for row, text in enumerate(texts):
        for start in range(4, len(text) - 3):
            piece = text[start:start + 3]
            if piece.strip() and all(piece not in t for i, t in enumerate(texts) if i != row):
                return row, piece
    raise AssertionError(f"no row has a piece of its own: {texts}")


def test_a_stop_string_ends_its_row_and_stays_in_the_text(loaded):
    net, tok = loaded
    prompts = _prompts(tok, 4)
    free = HFBackend(net, tok, batch_size=4).generate(prompts, SamplingSpec(max_new_tokens=24))
    row, stop = _stop_string([g.text for (g,) in free])
    (ref,) = free[row]
    stopped = HFBackend(net, tok, batch_size=4).generate(prompts, SamplingSpec(max_new_tokens=24, stop=(stop, "\x00")))
    (g,) = stopped[row]
    assert g.text == ref.text[:ref.text.index(stop) + len(stop)] and g.finished   # cut after the stop string, kept
    assert g.n_tokens < ref.n_tokens and g.token_ids == ref.token_ids[:g.n_tokens]
    assert stop in tok.decode(g.token_ids) and stop not in tok.decode(g.token_ids[:-1])   # ended at once
    assert [out for i, out in enumerate(stopped) if i != row] == [out for i, out in enumerate(free) if i != row]


def test_stop_strings_cut_sampled_rows_too(loaded):
    """Which rows are live changes the later draws of the others (as an end-of-sequence token
    does), so only the stopped row is compared with the free run."""
    net, tok = loaded
    spec = SamplingSpec(max_new_tokens=16, n=3, temperature=1.0, seed=3)
    free = [g for gens in HFBackend(net, tok, batch_size=6).generate(_prompts(tok, 2), spec) for g in gens]
    row, stop = _stop_string([g.text for g in free])
    out = HFBackend(net, tok, batch_size=6).generate(_prompts(tok, 2), SamplingSpec(**{**spec.__dict__, "stop": (stop,)}))
    g = out[row // 3][row % 3]
    assert g.text.endswith(stop) and g.text.count(stop) == 1 and g.finished
    assert g.token_ids == free[row].token_ids[:g.n_tokens] and g.n_tokens < free[row].n_tokens


def test_top_p_draws_from_the_nucleus_whether_or_not_it_lies_in_the_top_candidates():
    """Peaked rows sort only their top candidates (hf.NUCLEUS_CANDIDATES), flat rows the whole
    vocabulary; either way every draw is in the nucleus, at its renormalized frequencies."""
    from ehrmind.generation import hf
    vocab = 1000
    peaked = torch.full((vocab,), 0.03 / (vocab - 3))
    peaked[[5, 9, 13]] = torch.tensor([0.5, 0.3, 0.17])
    flat = torch.full((vocab,), 1.0 / vocab)
    spec = SamplingSpec(max_new_tokens=1, temperature=1.0, top_p=0.9)
    generator = torch.Generator().manual_seed(0)
    for probs, nucleus in ((peaked, {5, 9, 13}), (flat, None)):
        logp = probs.log().expand(4000, -1)
        draws = hf.HFBackend._pick(logp, spec, generator).tolist()
        if nucleus is None:   # a flat row's nucleus is 900 tokens, far more than the top candidates
            assert len(set(draws)) > 600 > hf.NUCLEUS_CANDIDATES
        else:
            assert set(draws) == nucleus
            assert abs(draws.count(5) / len(draws) - 0.5 / 0.97) < 0.03
