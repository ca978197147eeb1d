import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")   # nothing in the test suite may reach a hub


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model_cache")


@pytest.fixture(scope="session")
def tiny_model(model_cache) -> Path:
    """Reference JSON of a tiny random Llama with SmolLM2's tokenizer, built locally."""
    from ehrmind import models
    ref = model_cache / "tiny.json"
    models.prepare("tiny:1", ref, model_cache)
    return ref
