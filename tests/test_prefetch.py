"""`ehrmind prefetch` asks the hub, datasets and ir_datasets for exactly what a run config
names (no network here: their download functions are replaced), skips local and embedded
specs, and stops with a clear error on a source it does not know."""
import sys
import types

import pytest
import yaml

from ehrmind import cli, prefetch
from tests.conftest import REPO


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Replace snapshot_download, list_repo_files, load_dataset and ir_datasets; record calls."""
    import datasets
    import huggingface_hub
    seen = []
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "model.safetensors").write_bytes(b"x" * 2000)

    def snapshot_download(repo_id, revision=None, ignore_patterns=None, **kw):
        seen.append(("snapshot_download", repo_id, revision, tuple(ignore_patterns or ())))
        return str(snapshot)

    def list_repo_files(repo_id, revision=None, **kw):
        seen.append(("list_repo_files", repo_id, revision))
        return ["config.json", "model.safetensors", "pytorch_model.bin", "original/consolidated.00.pth"]

    class Split(list):
        cache_files = [{"filename": str(snapshot / "model.safetensors")}]

    def load_dataset(path, revision=None, **kw):
        seen.append(("load_dataset", path, revision, tuple(sorted(kw))))
        return {"train": Split([1, 2, 3]), "test": Split([4])}

    class IrDataset:
        def __init__(self, name):
            self.name = name

        def docs_iter(self):
            seen.append(("docs_iter", self.name))
            return iter(range(5))

        def queries_iter(self):
            seen.append(("queries_iter", self.name))
            return iter(range(2))

        def qrels_iter(self):
            seen.append(("qrels_iter", self.name))
            return iter(range(7))

    def ir_load(name):
        seen.append(("ir_datasets.load", name))
        return IrDataset(name)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", list_repo_files)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setitem(sys.modules, "ir_datasets", types.SimpleNamespace(load=ir_load))
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "ir"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return seen


def config(tmp_path, **changes):
    cfg = yaml.safe_load((REPO / "workflow/config/paper.yaml").read_text())
    local = tmp_path / "my-model"
    local.mkdir(exist_ok=True)
    cfg["models"] = {"llama": "meta-llama/Llama-3.2-3B-Instruct", "qwen": "Qwen/Qwen2.5-0.5B-Instruct",
                     "small": "embedded:smollm2-135m-instruct", "t": "tiny:3", "mine": str(local)}
    cfg["tasks"]["medcalc"]["revision"] = "abc123"
    cfg.update(changes)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_the_paper_config_fetches_models_medcalc_at_its_revision_and_trec_ct(calls, tmp_path, capsys):
    done = prefetch.run(config(tmp_path))
    assert [c for c in calls if c[0] != "list_repo_files"] == [
        ("snapshot_download", "meta-llama/Llama-3.2-3B-Instruct", None, (*prefetch.IGNORE, "*.bin")),
        ("snapshot_download", "Qwen/Qwen2.5-0.5B-Instruct", None, (*prefetch.IGNORE, "*.bin")),
        ("load_dataset", "ncbi/MedCalc-Bench-v1.0", "abc123", ()),     # every split
        ("ir_datasets.load", "clinicaltrials/2021/trec-ct-2021"),
        ("docs_iter", "clinicaltrials/2021/trec-ct-2021"),
        ("queries_iter", "clinicaltrials/2021/trec-ct-2021"),
        ("qrels_iter", "clinicaltrials/2021/trec-ct-2021")]
    out = capsys.readouterr().out
    assert "fetched model meta-llama/Llama-3.2-3B-Instruct (models.llama): 2.0 KB in" in out
    assert "fetched dataset ncbi/MedCalc-Bench-v1.0@abc123 (tasks.medcalc.source)" in out
    assert "train 3 rows, test 1 rows" in out and "5 docs, 2 queries, 7 qrels" in out
    assert len(done) == 4 and done[0]["bytes"] == 2000


def test_dry_run_lists_and_downloads_nothing(calls, tmp_path, capsys):
    assert cli.main(["prefetch", "--config", str(config(tmp_path)), "--dry-run"]) == 0
    assert calls == []
    out = capsys.readouterr().out.splitlines()
    assert out == ["would fetch model meta-llama/Llama-3.2-3B-Instruct (models.llama)",
                   "would fetch model Qwen/Qwen2.5-0.5B-Instruct (models.qwen)",
                   "would fetch dataset ncbi/MedCalc-Bench-v1.0@abc123 (tasks.medcalc.source)",
                   "would fetch ir_datasets clinicaltrials/2021/trec-ct-2021 (tasks.trec_ct.dataset_id)"]


def test_the_embedded_config_needs_nothing(calls, capsys):
    assert prefetch.run(str(REPO / "workflow/config/embedded.yaml")) == []
    assert calls == [] and "nothing to fetch" in capsys.readouterr().out


def test_local_sources_are_skipped(calls, tmp_path):
    cfg = {"models": {"a": "./models/x", "b": "embedded:smollm2-135m-instruct"},
           "tasks": {"medcalc": {"source": "data/medcalc_{split}.csv"},
                     "trec_ct": {"source": "files", "topics": "t.xml", "qrels": "q.txt", "trials": "d"},
                     "ehrshot": {"source": "meds", "path": "/data/ehrshot_meds"}}}
    assert prefetch.plan(cfg) == []


def test_an_unknown_source_or_task_is_a_clear_error(calls):
    with pytest.raises(prefetch.PrefetchError, match=r"tasks.trec_ct.source: 'pubmed' .*embedded, ir_datasets, files"):
        prefetch.plan({"models": {}, "tasks": {"trec_ct": {"source": "pubmed"}}})
    with pytest.raises(prefetch.PrefetchError, match=r"tasks.ehrshot.source: 'hub'"):
        prefetch.plan({"models": {}, "tasks": {"ehrshot": {"source": "hub"}}})
    with pytest.raises(prefetch.PrefetchError, match=r"tasks.mimic4_mortality.source: 'physionet'"):
        prefetch.plan({"models": {}, "tasks": {"mimic4_mortality": {"source": "physionet"}}})
    with pytest.raises(prefetch.PrefetchError, match=r"tasks.tjh: prefetch does not know"):
        prefetch.plan({"models": {}, "tasks": {"tjh": {}}})


def test_offline_it_only_checks_the_cache_and_names_what_is_missing(calls, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    def not_cached(repo_id, **kw):
        raise FileNotFoundError(f"{repo_id} is not in the local cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_cached)
    assert cli.main(["prefetch", "--config", str(config(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "model meta-llama/Llama-3.2-3B-Instruct (models.llama)" in err and "run `make prefetch`" in err
    assert not [c for c in calls if c[0] == "list_repo_files"]   # no hub call when offline
