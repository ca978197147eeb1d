"""`apptainer exec` options for jobs that Snakemake runs in the GPU image (`--sdm apptainer`);
the GPU and SLURM profiles set `apptainer-args` from `apptainer_args()`.

Snakemake runs `apptainer exec --home <working directory> <these options> <image> ...`, so
inside the container $HOME is the checkout and ~/.cache/huggingface would be an empty folder
there. Hence each cache that exists on the host is bound at the same path and its variable
set to that path:
  HF_HOME           (default ~/.cache/huggingface: models, hub datasets; HF_HUB_CACHE and
                     HF_DATASETS_CACHE too where set)
  IR_DATASETS_HOME  (default ~/.ir_datasets: TREC CT)
A cache folder that does not exist yet is not bound: the job then uses one under the checkout.
Also: --nv (the host's NVIDIA driver), HF_HUB_OFFLINE (default 1: compute nodes read only what
`make prefetch` stored; export HF_HUB_OFFLINE=0 to let jobs download), PYTHONNOUSERSITE=1 (no
user site-packages over the image's pinned ones), and EHRMIND_BIND, comma-separated extra
--bind specs (src[:dest[:ro]]), e.g. the credentialed EHRSHOT copy: /data/ehrshot_meds:/data/ehrshot_meds:ro.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Mapping

CACHES = {"HF_HOME": "~/.cache/huggingface", "HF_HUB_CACHE": None, "HF_DATASETS_CACHE": None,
          "IR_DATASETS_HOME": "~/.ir_datasets"}


def apptainer_args(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    parts = ["--nv", "--env", f"HF_HUB_OFFLINE={env.get('HF_HUB_OFFLINE') or '1'}", "--env", "PYTHONNOUSERSITE=1"]
    binds: list[str] = []
    for var, default in CACHES.items():
        value = env.get(var) or default
        if not value:
            continue
        path = Path(os.path.expanduser(value)).resolve()
        if path.is_dir():
            parts += ["--env", f"{var}={path}"]
            binds.append(str(path))
    binds += [b.strip() for b in env.get("EHRMIND_BIND", "").split(",") if b.strip()]
    if binds:
        parts += ["--bind", ",".join(dict.fromkeys(binds))]
    return " ".join(shlex.quote(p) for p in parts)
