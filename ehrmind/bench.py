"""`ehrmind bench`: what this machine can do, and how close the suite's workloads come to it.

1. The ceiling, measured here: matrix-multiply throughput (GFLOP/s) in fp32 and bf16 at the
   model's own shapes (hidden x intermediate) for M = 8 / 64 / 512 / 2048 rows, the best of
   five short interleaved rounds, and memory bandwidth (GB/s, a large in-place scale, the best
   of seven passes).
2. The workloads, on EHRMind prompts of the embedded MedCalc task: greedy evaluation at
   several batch sizes, Pass@k sampling (n samples per prompt), with the share of each run spent
   encoding the prompts (`prefill_share`); SFT and GRPO steps (TRL, rollouts from the suite's
   backend), two of each: the second is the steady-state figure, the first (with one-time costs)
   goes to the JSON as first_step_s. `--profile` adds the operators of one greedy batch and of
   the GRPO steps by self CPU time.

FLOP accounting (P = parameters, embeddings counted once as the LM head):
generation = 2P per generated token + 2(P - P_head) per prompt token (the prefill keeps only
the last position's logits); SFT = 6P per trained token; a GRPO step = 8P per token of its
sequences (policy forward and backward, the reference model's forward) + 2P per generated token. A workload's fraction of the
ceiling is its FLOP rate over the best matmul rate measured in the precision it ran in.
A generation workload also gets its matmul bound (`matmul_bound`): the tokens/s it would reach
if its prefill ran at the matmul rate measured at the prefill's row count (prompts x width) and
each decode step at the rate measured at the batch's row count, nothing else costing time. A
decode step multiplies as many rows as the batch has sequences, where the matmul rate is a
fraction of its large-M peak, so this bound, not the peak, is what a batch's figure can reach.
"""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


CEILING_ROUNDS = 5   # timings per matmul shape; the best is the ceiling


def matmul_ceiling(hidden: int, intermediate: int, seconds: float = 0.15, rounds: int = CEILING_ROUNDS,
                   sizes: tuple[int, ...] = (8, 64, 512, 2048)) -> dict[str, dict[str, dict[int, float]]]:
    """GFLOP/s of an (M x hidden) @ (hidden x intermediate) matmul in fp32 and bf16 for each M
    in `sizes`: `rounds` timings of `seconds` each, the shapes interleaved, under "best" the best
    round and under "median" the median. A ceiling is the best: on a shared VM a neighbour's load
    only ever lowers a round (single 0.5 s timings on one 2-core VM gave 382 to 850 GFLOP/s for
    the same bf16 shape within an hour), and interleaving keeps a slow spell from landing on one
    shape alone."""
    import statistics

    import torch
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    operands = {(name, m): (torch.randn(m, hidden, dtype=dtype), torch.randn(hidden, intermediate, dtype=dtype))
                for name, dtype in dtypes.items() for m in sizes}
    timings: dict[tuple[str, int], list[float]] = {key: [] for key in operands}
    for _ in range(rounds):
        for (name, m), (a, b) in operands.items():
            a @ b
            started, reps = time.perf_counter(), 0
            while time.perf_counter() - started < seconds:
                a @ b
                reps += 1
            timings[name, m].append(2 * m * hidden * intermediate * reps / (time.perf_counter() - started) / 1e9)
    return {stat: {name: {m: pick(timings[name, m]) for m in sizes} for name in dtypes}
            for stat, pick in (("best", max), ("median", statistics.median))}


def bandwidth(megabytes: int = 256, reps: int = 7) -> float:
    """GB/s of an in-place scale of a large buffer (read + write), the best of `reps` passes."""
    import torch
    x = torch.ones(megabytes * 2**20 // 4)
    x.mul_(1.0)
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        x.mul_(1.0)
        best = min(best, time.perf_counter() - started)
    return 2 * x.numel() * 4 / best / 1e9


def _params(net) -> tuple[int, int]:
    """(all parameters, LM-head parameters), tied embeddings counted once."""
    total = sum(p.numel() for p in net.parameters())
    head = net.get_output_embeddings().weight.numel()
    return total, head


def _prompts(tokenizer, n: int) -> list[list[int]]:
    from ehrmind.methods.ehrmind import prompts
    from ehrmind.tasks import get_task
    task = get_task("medcalc")
    examples = task.load_split("test", {"test_per_category": max(1, -(-n // 7))}, 0)
    return [prompts.encode(tokenizer, task.prompt, ex.fields, None)[0] for ex in examples][:n]


def run(model: str, batch_sizes: list[int], new_tokens: int, passk_n: int, precision: str = "auto",
        out: Path | None = None, training: bool = True, profile: bool = False) -> dict[str, Any]:
    import torch
    from ehrmind import models, provenance
    from ehrmind.generation import SamplingSpec
    from ehrmind.generation.hf import HFBackend

    with tempfile.TemporaryDirectory() as tmp:
        if ":" in model and not Path(model).exists():   # a spec such as embedded:smollm2-135m-instruct
            model = models.prepare(model, Path(tmp) / "ref.json")["path"]
        net, tok = models.load(model, precision=precision)
        net.eval()
        cfg = net.config
        passk_rows = max(1, max(batch_sizes) // passk_n) * passk_n
        # the standard sizes, plus each batch's decode row count (for the matmul bound)
        sizes = tuple(sorted({8, 64, 512, 2048, *batch_sizes, passk_rows}))
        measured = matmul_ceiling(cfg.hidden_size, cfg.intermediate_size, sizes=sizes)
        ceiling = measured["best"]
        result: dict[str, Any] = {
            "machine": provenance.device_info(), "threads": torch.get_num_threads(),
            "matmul_gflops": ceiling, "matmul_gflops_median": measured["median"], "bandwidth_gbs": round(bandwidth(), 1),
            "model": model, "dtype": str(net.dtype), "workloads": []}
        gen_dtype = "bf16" if net.dtype == torch.bfloat16 else "fp32"
        peak = {k: max(v.values()) for k, v in ceiling.items()}
        total, head = _params(net)
        print(f"ceiling: matmul fp32 {_fmt(ceiling['fp32'])} | bf16 {_fmt(ceiling['bf16'])} GFLOP/s "
              f"(M = {'/'.join(map(str, sizes))}; best of {CEILING_ROUNDS} rounds, "
              f"median bf16 {_fmt(measured['median']['bf16'])}); "
              f"memory {result['bandwidth_gbs']} GB/s; {result['threads']} threads")
        print(f"model {model}: {total / 1e6:.1f} M parameters, generation in {gen_dtype}")
        print(f"{'workload':<34} {'tokens':>8} {'seconds':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'of ceiling':>10}")

        def record(name: str, tokens: int, seconds: float, flops: float, dtype: str, **extra) -> None:
            rate = flops / seconds / 1e9
            row = {"workload": name, "tokens": tokens, "seconds": round(seconds, 2),
                   "tokens_per_s": round(tokens / seconds, 1), "gflops": round(rate, 1),
                   "fraction_of_ceiling": round(rate / peak[dtype], 3), "precision": dtype, **extra}
            result["workloads"].append(row)
            share = f"   prefill {100 * extra['prefill_share']:.0f} % of the time" if "prefill_share" in extra else ""
            if "matmul_bound" in extra:
                share += (f"; matmul bound {extra['matmul_bound']:.0f} tokens/s "
                          f"({100 * row['tokens_per_s'] / extra['matmul_bound']:.0f} % of it)")
            print(f"{name:<34} {tokens:>8} {seconds:>8.1f} {row['tokens_per_s']:>9.1f} {rate:>8.1f} "
                  f"{100 * row['fraction_of_ceiling']:>9.1f}%{share}", flush=True)

        def record_generation(name: str, batch: list[list[int]], rows: int, generated: int, seconds: float,
                              prefill_share: float) -> None:
            """A generation run of `batch` prompts (one prefill) decoded as `rows` sequences, with its
            FLOPs split into prefill and decode, each also timed at the matmul rate of its row count."""
            prompt_tokens = sum(map(len, batch))
            prefill, decode = 2 * (total - head) * prompt_tokens, 2 * total * generated
            at_ceiling = (prefill / _rate_at(ceiling[gen_dtype], len(batch) * max(map(len, batch)))
                          + decode / _rate_at(ceiling[gen_dtype], rows)) / 1e9
            record(name, generated, seconds, prefill + decode, gen_dtype, prompt_tokens=prompt_tokens,
                   prefill_share=prefill_share, matmul_bound=round(generated / at_ceiling, 1))

        prompts = _prompts(tok, max(batch_sizes))
        backend = HFBackend(net, tok)
        backend.generate(prompts[:2], SamplingSpec(max_new_tokens=4))   # warm-up
        for bs in batch_sizes:
            batch = (prompts * bs)[:bs]
            backend.batch_size = bs
            outs, seconds, prefill_share = _timed_generate(backend, batch, SamplingSpec(max_new_tokens=new_tokens))
            record_generation(f"greedy evaluation, batch {bs}", batch, bs, sum(g.n_tokens for (g,) in outs), seconds,
                              prefill_share)
        if profile:   # one more run of the largest batch, profiled (the timed runs above are not)
            bs = backend.batch_size = max(batch_sizes)
            with _cpu_profile() as prof:
                backend.generate((prompts * bs)[:bs], SamplingSpec(max_new_tokens=new_tokens))
            print(f"greedy evaluation, batch {bs}, by operator (self CPU time):")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
        items = passk_rows // passk_n
        backend.batch_size = passk_rows
        outs, seconds, prefill_share = _timed_generate(
            backend, prompts[:items], SamplingSpec(max_new_tokens=new_tokens, n=passk_n, temperature=0.6, top_p=0.95))
        record_generation(f"pass@k sampling, {items} x n={passk_n}", prompts[:items], passk_rows,
                          sum(g.n_tokens for gens in outs for g in gens), seconds, prefill_share)
        if training:
            del net, backend
            _training_steps(model, precision, total, record, Path(tmp), profile)
    if out:
        from ehrmind.io import write_json
        write_json(out, result)
        print(f"written: {out}")
    return result


def _training_steps(model: str, precision: str, total: int, record, tmp: Path, profile: bool = False) -> None:
    """SFT steps of 8 examples and GRPO steps of 2 prompts x 4 rollouts of up to 64 tokens, two
    of each: the first step carries one-time costs (optimizer state, the rollout copy), the
    second is the steady state a training job runs at. With `profile`, the GRPO steps' operators
    by self CPU time (where the gap to the ceiling goes)."""
    from ehrmind import models, training
    from ehrmind.tasks import get_task
    dtype = "bf16" if models.use_bf16(precision) else "fp32"
    task = get_task("medcalc")
    train = task.load_split("train", {"train_per_category": 2}, 0)[:8]
    base = {"learning_rate": 1e-5, "gradient_checkpointing": False, "save_steps": 0}
    sft = {**base, "method": "full", "epochs": 2, "batch_size": 8, "micro_batch_size": None, "max_length": 1024}
    summary = training.sft(task, model, train, sft, 0, tmp / "sft", tmp / "sft_logs", precision=precision)
    tokens = summary["trained_tokens"] // 2
    first, steady = summary["step_seconds"]
    record("SFT step, 8 examples", tokens, steady, 6 * total * tokens, dtype, first_step_s=first)
    grpo = {**base, "max_steps": 2, "prompts_per_step": 2, "num_generations": 4, "max_completion_length": 64,
            "max_prompt_length": 1024, "beta": 0.001, "epsilon": 0.2, "temperature": 0.6, "top_p": 0.95,
            "loss_type": "dapo", "micro_batch_size": None, "rollout_batch_size": None, "use_vllm": False}
    reward = {"format_ok": 0.1, "format_bad": -2.0, "correct": 1.0, "wrong": 0.0}
    with _cpu_profile() if profile else contextlib.nullcontext() as prof:
        summary = training.grpo(task, model, train, grpo, reward, 0, tmp / "grpo", tmp / "grpo_logs", "bench",
                                precision=precision)
    if profile:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    history = [json.loads(line) for line in open(tmp / "grpo_logs" / "train_log.jsonl")]
    step = [h for h in history if "step_time" in h][-1]
    trained = step["num_tokens"] - next(h for h in history if "step_time" in h)["num_tokens"]   # cumulative in TRL
    generated = summary["generated_tokens"] // 2
    first, steady = summary["step_seconds"]
    # policy forward + backward (6P) and the reference model's forward (2P) over every token,
    # plus decoding the rollouts (2P per generated token)
    record("GRPO step, 8 rollouts x <=64 new", trained, steady, 8 * total * trained + 2 * total * generated, dtype,
           generated=generated, first_step_s=first)


def _rate_at(by_m: dict[int, float], rows: int) -> float:
    """The matmul rate measured at the smallest M of at least `rows` (the largest M beyond them)."""
    return by_m[min((m for m in by_m if m >= rows), default=max(by_m))]


def _timed_generate(backend, prompts: list[list[int]], spec) -> tuple[list, float, float]:
    """The generations, the seconds they took, and the share of those spent encoding the prompts."""
    started, prefill = time.perf_counter(), backend.stats.prefill_seconds
    outs = backend.generate(prompts, spec)
    seconds = time.perf_counter() - started
    return outs, seconds, round((backend.stats.prefill_seconds - prefill) / seconds, 3)


def _cpu_profile():
    from torch.profiler import ProfilerActivity, profile
    return profile(activities=[ProfilerActivity.CPU])


def _fmt(by_m: dict[int, float]) -> str:
    return " / ".join(f"{v:.0f}" for v in by_m.values())
