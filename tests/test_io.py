import pytest

from ehrmind.io import atomic_path, read_jsonl, write_jsonl


def test_interrupted_write_leaves_nothing(tmp_path):
    target = tmp_path / "predictions.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half a line")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_interrupted_directory_write_keeps_old_checkpoint(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "model.safetensors").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_path(target, is_dir=True) as tmp:
            (tmp / "model.safetensors").write_text("v2, partial")
            raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert (target / "model.safetensors").read_text() == "v1"


def test_jsonl_round_trip(tmp_path):
    rows = [{"id": "a", "x": 1}, {"id": "b", "text": "é"}]
    write_jsonl(tmp_path / "r.jsonl", rows)
    assert read_jsonl(tmp_path / "r.jsonl") == rows
