"""ConCare expert: shapes, attention, DeCov by hand, masking, training, determinism, the output files,
and the bar on the embedded TJH cohort (AUROC, planted features ranked first)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ehrmind import cli
from ehrmind.experts import concare, data
from ehrmind.experts.concare import ConCare, Encoder, ExpertRow, decov_loss
from ehrmind.tasks.ehr import cohort

NAN = math.nan
SMALL = {"hidden": 8, "heads": 2, "ff": 16, "epochs": 6, "n_resamples": 20}


def row(pid: str, label: int, days, values, features=("a", "b", "c"), sex=1, age=60.0) -> ExpertRow:
    return ExpertRow(pid, label, tuple(days), tuple(features), tuple(tuple(v) for v in values), sex, age)


ROWS = [row("1", 1, (0, 2, 3), [(1.0, NAN, 3.0), (2.0, 5.0, NAN), (NAN, 6.0, 4.0)]),
        row("2", 0, (0, 1), [(0.5, 1.0, NAN), (0.7, NAN, NAN)], sex=0, age=40.0),
        row("3", 1, (1, 4, 5, 9), [(1.5, 2.0, 2.5), (NAN, NAN, 2.0), (3.0, 1.0, NAN), (2.0, NAN, 1.0)]),
        row("4", 0, (0, 3), [(0.1, 0.2, 0.3), (0.2, 0.1, NAN)], age=80.0)]


def tjh_rows(n: int = 120, seed: int = 0):
    spec = cohort.SPECS["tjh_mortality"]
    cfg = {"n_patients": n}
    return [data.from_records(cohort.records_for(spec, s, cfg, seed), spec.target) for s in ("train", "test")]


def test_encoder_imputes_forward_and_pads_left():
    enc = Encoder(ROWS)
    assert enc.features == ["a", "b", "c"]
    b = enc.batch(ROWS)
    assert b.x.shape == (4, 4, 3) and b.mask.tolist()[1] == [False, False, True, True]
    za = (np.array([0.5, 0.7]) - enc.mean[0]) / enc.sd[0]
    assert torch.allclose(b.x[1, 2:, 0], torch.tensor(za, dtype=torch.float32))
    assert b.x[1, 3, 1] == b.x[1, 2, 1]                       # carried forward
    assert b.x[1, 2:, 2].tolist() == [0.0, 0.0]               # never measured: the training mean
    assert b.elapsed[0].tolist() == [0.0, 3.0, 1.0, 0.0]      # padding, then days to the last visit
    assert b.observed[1].tolist() == [True, True, False]


@pytest.mark.parametrize("final_values", ["own", "contexts"])
def test_shapes_and_attention_sum_to_one(final_values):
    torch.manual_seed(0)
    model = ConCare(3, hidden=8, heads=2, ff=16, final_values=final_values).eval()
    out = model(Encoder(ROWS).batch(ROWS))
    assert out["logit"].shape == (4,) and out["attention"].shape == (4, 4) and out["decov"].shape == ()
    assert torch.allclose(out["attention"].sum(-1), torch.ones(4)) and (out["attention"] >= 0).all()


def test_padding_does_not_change_a_patient():
    torch.manual_seed(0)
    model = ConCare(3, hidden=8, heads=2, ff=16).eval()
    enc = Encoder(ROWS)
    alone = model(enc.batch(ROWS[1:2]))                       # 2 visits, no padding
    padded = model(enc.batch(ROWS[:2]))                       # padded to 3 visits
    assert torch.allclose(alone["logit"], padded["logit"][1:], atol=1e-6)
    assert torch.allclose(alone["attention"], padded["attention"][1:], atol=1e-6)


def test_decov_by_hand():
    # one token, H = 2, three samples (1, 2), (2, 4), (3, 6): var 1 and 4, covariance 2;
    # 0.5 * (||C||_F^2 - ||diag C||^2) = 0.5 * (1 + 4 + 4 + 16 - 1 - 16) = 4
    h = torch.tensor([[[1.0, 2.0]], [[2.0, 4.0]], [[3.0, 6.0]]])
    assert decov_loss(h).item() == pytest.approx(4.0)
    uncorrelated = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[-1.0, 0.0]], [[0.0, -1.0]]])
    assert decov_loss(uncorrelated).item() == pytest.approx(0.0)
    assert decov_loss(torch.cat([h, h], 1)).item() == pytest.approx(8.0)     # summed over tokens
    assert decov_loss(h[:1]).item() == 0.0                                   # one sample: no covariance


def test_training_lowers_the_loss_and_changes_the_weights():
    train, test = tjh_rows()
    torch.manual_seed(1)                              # train_expert's seed: the same initial weights
    before = ConCare(len(Encoder(train).features), dropout=0.3).state_dict()
    expert, metrics = concare.train_expert(train, test, {"epochs": 10, "batch_size": 16, "n_resamples": 20}, seed=1)
    curve = metrics["train_bce_per_epoch"]
    assert len(curve) == 10 and curve[-1] < curve[0] - 0.05
    after = expert.model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in ("w_hh", "w_t", "qkv.weight", "final_k.weight", "out1.weight"))
    assert metrics["n_train"] == len(train) and metrics["test"]["n"] == len(test)


def test_training_is_deterministic_for_a_seed():
    train, test = tjh_rows(80)
    a, ma = concare.train_expert(train, test, SMALL, seed=3)
    b, mb = concare.train_expert(train, test, SMALL, seed=3)
    c, mc = concare.train_expert(train, test, SMALL, seed=4)
    assert ma["test"] == mb["test"] and ma["train_bce_per_epoch"] == mb["train_bce_per_epoch"]
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    assert mc["train_bce_per_epoch"] != ma["train_bce_per_epoch"]


def test_rankings_only_name_the_features_a_record_has():
    expert, _ = concare.train_expert(ROWS, ROWS, {**SMALL, "epochs": 1, "top_k": 2}, 0)
    ranked = concare.rankings(expert, ROWS, split="test")
    r2 = ranked[1]
    assert [f for f, _ in r2["ranked"]] in (["a", "b"], ["b", "a"])          # c was never measured for patient 2
    assert r2["top_k"] == [f for f, _ in r2["ranked"]][:2] and r2["split"] == "test"
    weights = [w for _, w in ranked[0]["ranked"]]
    assert weights == sorted(weights, reverse=True) and sum(weights) < 1    # the demographic token has the rest
    assert concare.precision_at_k([{"ranked": [["a", .5], ["c", .3], ["b", .1]]}], ["a", "b"], 2) == 0.5


@pytest.mark.parametrize("cfg, match", [({"hiden": 8}, "unknown settings"), ({"epochs": 0}, "epochs"),
                                        ({"lr": -1}, "lr"), ({"dropout": 1.0}, "dropout"),
                                        ({"hidden": 10, "heads": 4}, "multiple of heads"), ({"top_k": 2.5}, "top_k"),
                                        ({"final_values": "mean"}, "final_values")])
def test_settings_are_checked(cfg, match):
    with pytest.raises(ValueError, match=match):
        concare.settings(cfg)


def test_cli_writes_metrics_and_ranked_features(tmp_path):
    out = tmp_path / "expert"
    settings = {**SMALL, "top_k": 4}
    assert cli.main(["expert", "--task", "tjh_mortality", "--data", json.dumps({"n_patients": 60}),
                     "--settings", json.dumps(settings), "--seed", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"auroc", "auroc_mean", "auroc_sd", "auprc", "auprc_mean", "auprc_sd"}
    assert metrics["task"] == "tjh_mortality" and metrics["settings"]["top_k"] == 4 and metrics["seed"] == 2
    assert set(metrics["planted"]) == {"features", "precision_at_3", "precision_at_4"}
    lines = [json.loads(x) for x in (out / "ranked_features.jsonl").read_text().splitlines()]
    assert {x["split"] for x in lines} == {"train", "test"} and len(lines) == metrics["n_train"] + metrics["n_test"]
    for x in lines:
        assert set(x) == {"patient_id", "split", "label", "probability", "ranked", "top_k"}
        assert 0 <= x["probability"] <= 1 and x["label"] in (0, 1)
        assert x["top_k"] == [f for f, _ in x["ranked"][:4]]
        assert [w for _, w in x["ranked"]] == sorted((w for _, w in x["ranked"]), reverse=True)
    assert not list(out.glob(".*"))                                          # no temporary files left
    with pytest.raises(SystemExit, match="structured-EHR"):
        cli.main(["expert", "--task", "ehrshot", "--data", "{}", "--out", str(out)])
    with pytest.raises(SystemExit, match="give --train and --test"):
        cli.main(["expert", "--task", "tjh_mortality", "--train", "x.jsonl", "--out", str(out)])
    with pytest.raises(SystemExit, match="unknown settings"):
        cli.main(["expert", "--task", "tjh_mortality", "--data", "{}", "--settings", '{"epoch": 3}', "--out", str(out)])


def test_embedded_tjh_bar():
    """On the embedded TJH test split: AUROC >= 0.85 and the planted labs ranked first far above chance."""
    train, test = tjh_rows(375)
    expert, metrics = concare.train_expert(train, test, {"n_resamples": 200}, seed=0)
    assert metrics["test"]["auroc"] >= 0.85
    ranked = concare.rankings(expert, test)
    planted = cohort.planted(cohort.SPECS["tjh_mortality"])
    assert concare.precision_at_k(ranked, planted, 3) >= 0.5                 # chance: 3/18 = 0.17
    assert metrics["train_seconds"] > 0      # its speed is a figure (metrics.json, README), not a test
