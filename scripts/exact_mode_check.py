"""Where does the cross-machine difference enter? Greedy completions of the embedded model on
EHRMind prompts under several kernel settings of ONE machine, compared token by token.

Each setting runs in its own process (the variables must be set before torch loads):
  default        fp32 with this machine's native dispatch (AVX2, AVX-512 or AMX), 2 threads
  bf16           what `precision: auto` runs on a CPU with AVX512-BF16/AMX (where it exists)
  1 thread       the same on one thread
  older ISA      ATen and MKL told to use SSE4.2-level kernels: what a machine without AVX2 runs
  exact          the suite's exact mode: fp32, ATen's baseline kernels, MKL's conditional numerical
                 reproducibility (MKL_CBWR=COMPATIBLE), oneDNN at SSE4.1, deterministic algorithms
  exact, older ISA / exact, 1 thread   exact mode where the machine offers less, or on one thread

Usage: .venv/bin/python scripts/exact_mode_check.py [--prompts 16] [--new-tokens 64]
Prints, per setting, the tokens/s, how many completions equal the default's and the exact mode's,
and the largest difference of the first step's log-probabilities from the default's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from ehrmind import models
from ehrmind.exact import ENV as EXACT

OLDER = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"}
SETTINGS = {
    "default": {"OMP_NUM_THREADS": "2"},
    "bf16": {"OMP_NUM_THREADS": "2", "CHECK_PRECISION": "bf16"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "older ISA": {**OLDER, "OMP_NUM_THREADS": "2"},
    "exact": {**EXACT, "OMP_NUM_THREADS": "2"},
    "exact, older ISA": {**EXACT, "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OMP_NUM_THREADS": "2"},
    "exact, 1 thread": {**EXACT, "OMP_NUM_THREADS": "1"},
}


def child(n_prompts: int, new_tokens: int, out: str) -> None:
    from ehrmind import exact, models
    exact.apply()
    from ehrmind.generation import SamplingSpec
    from ehrmind.generation.hf import HFBackend
    from ehrmind.methods.ehrmind import prompts
    from ehrmind.tasks import get_task
    ref = models.prepare("embedded:smollm2-135m-instruct", os.path.join(tempfile.mkdtemp(), "m.json"))
    net, tok = models.load(ref["path"], precision=os.environ.get("CHECK_PRECISION", "fp32"))
    task = get_task("medcalc")
    examples = task.load_split("test", {"test_per_category": -(-n_prompts // 7)}, 0)[:n_prompts]
    ids = [prompts.encode(tok, task.prompt, ex.fields, None)[0] for ex in examples]
    started = time.perf_counter()
    outs = HFBackend(net.eval(), tok, batch_size=n_prompts).generate(
        ids, SamplingSpec(max_new_tokens=new_tokens, watch=tuple(range(0, len(tok), 97))))   # a spread of ids
    seconds = time.perf_counter() - started
    json.dump({"tokens": [list(g.token_ids) for (g,) in outs], "seconds": seconds,
               "first_step": [list(g.watched[0]) for (g,) in outs]}, open(out, "w"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.prompts, a.new_tokens, a.child)
    runs = {}
    for name, env in SETTINGS.items():
        if env.get("CHECK_PRECISION") == "bf16" and not models.use_bf16("auto"):
            continue   # no native bf16 on this CPU: it would crawl, and no run here uses it
        out = tempfile.mktemp(suffix=".json")
        subprocess.run([sys.executable, __file__, "--child", out, "--prompts", str(a.prompts), "--new-tokens",
                        str(a.new_tokens)], env={**os.environ, **env}, check=True, stderr=subprocess.DEVNULL)
        runs[name] = json.load(open(out))
        r = runs[name]
        same = {ref: sum(x == y for x, y in zip(r["tokens"], runs[ref]["tokens"])) for ref in ("default", "exact")
                if ref in runs}
        n = sum(map(len, r["tokens"]))
        gap = max(abs(x - y) for u, v in zip(r["first_step"], runs["default"]["first_step"]) for x, y in zip(u, v))
        print(f"{name:<18} {n / r['seconds']:7.1f} tokens/s   identical to default: {same['default']}/{a.prompts}"
              + (f"   to exact: {same['exact']}/{a.prompts}" if "exact" in same else "")
              + f"   max |first-step log-prob - default's|: {gap:.2e}", flush=True)


if __name__ == "__main__":
    main()
