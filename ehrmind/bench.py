"""Evaluation throughput benchmark: generated tokens per second of the batched
greedy generation path used by `ehrmind evaluate`, at several batch sizes."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ehrmind import models
from ehrmind.generation import generate

_PROMPT = ("Patient note:\nA {age}-year-old patient has a heart rate of {hr} bpm and a QT interval "
           "of {qt} msec.\n\nQuestion: What is the corrected QT interval in msec? Explain your steps.")


def run(model: str, batch_sizes: list[int], new_tokens: int, batches: int, precision: str = "auto") -> list[dict[str, float]]:
    import torch
    if ":" in model and not Path(model).exists():   # a spec such as embedded:smollm2-135m-instruct
        with tempfile.TemporaryDirectory() as tmp:
            model = models.prepare(model, Path(tmp) / "ref.json")["path"]
    net, tokenizer = models.load(model, precision=precision)
    net.eval()
    print(f"model {model} on {models.device()} in {net.dtype}, torch threads {torch.get_num_threads()}, "
          f"{new_tokens} new tokens max, greedy")
    print(f"{'batch':>6} {'prompts':>8} {'tokens':>8} {'seconds':>8} {'tokens/s':>9}")
    rows = []
    for bs in batch_sizes:
        n = batches * bs
        chats = [[{"role": "user", "content": _PROMPT.format(age=30 + i % 50, hr=50 + i % 60, qt=300 + i)}]
                 for i in range(n)]
        generate(net, tokenizer, chats[:bs], max_new_tokens=8, batch_size=bs)   # warm-up
        started = time.perf_counter()
        out = generate(net, tokenizer, chats, max_new_tokens=new_tokens, batch_size=bs)
        seconds = time.perf_counter() - started
        tokens = sum(g.n_tokens for (g,) in out)
        rows.append({"batch_size": bs, "prompts": n, "tokens": tokens, "seconds": seconds,
                     "tokens_per_s": tokens / seconds})
        print(f"{bs:>6} {n:>8} {tokens:>8} {seconds:>8.1f} {tokens / seconds:>9.1f}", flush=True)
    return rows
