"""Tests for ehrmind.stats, checked against values worked out by hand."""

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrmind.stats import (
    auc_bootstrap,
    classification_summary,
    delong_test,
    accuracy_summary,
    holm,
    mcnemar_exact,
    paired_bootstrap_diff,
    pairwise_comparisons,
    pass_at_k,
    wilson_interval,
)

# z for 95%: 1.959964, z^2 = 3.841459, z^2/2 = 1.920729, z^2/4 = 0.960365


# ---------------------------------------------------------------- Wilson


def test_wilson_8_of_10():
    # denom = n + z^2 = 13.841459
    # center = (8 + 1.920729) / 13.841459 = 9.920729 / 13.841459 = 0.716740
    # half = z / denom * sqrt(n p (1-p) + z^2/4)
    #      = 1.959964 / 13.841459 * sqrt(10*0.8*0.2 + 0.960365)
    #      = 0.141601 * sqrt(2.560365) = 0.141601 * 1.600114 = 0.226578
    # -> (0.490162, 0.943318)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_0_of_10():
    # p = 0: center = half = (z^2/2) / (n + z^2), so low = 0 and
    # high = z^2 / (n + z^2) = 3.841459 / 13.841459 = 0.277533
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.277533, abs=1e-5)


def test_wilson_10_of_10():
    # mirror image of 0/10: low = 10 / 13.841459 = 0.722467, high = 1
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.722467, abs=1e-5)
    assert high == pytest.approx(1.0, abs=1e-12)


def test_wilson_other_confidence_is_narrower():
    lo90, hi90 = wilson_interval(8, 10, confidence=0.90)
    lo95, hi95 = wilson_interval(8, 10)
    assert lo95 < lo90 < 0.8 < hi90 < hi95


@pytest.mark.parametrize(
    "successes, n, confidence",
    [(0, 0, 0.95), (1, 0, 0.95), (-1, 10, 0.95), (11, 10, 0.95), (5, 10, 1.0), (5, 10, 0.0)],
)
def test_wilson_errors(successes, n, confidence):
    with pytest.raises(ValueError):
        wilson_interval(successes, n, confidence)


def test_accuracy_summary():
    s = accuracy_summary([True] * 8 + [False] * 2)
    assert s["n"] == 10 and s["n_correct"] == 8
    assert s["accuracy"] == pytest.approx(0.8)
    assert s["ci_low"] == pytest.approx(0.4902, abs=1e-4)
    assert s["ci_high"] == pytest.approx(0.9433, abs=1e-4)


def test_accuracy_summary_empty():
    with pytest.raises(ValueError):
        accuracy_summary([])


# ---------------------------------------------------------------- McNemar


def _pairs(n00=0, n01=0, n10=0, n11=0):
    """Build paired vectors with the given counts of (a, b) outcomes."""
    cells = [(False, False)] * n00 + [(False, True)] * n01 + [(True, False)] * n10 + [(True, True)] * n11
    return [x for x, _ in cells], [y for _, y in cells]


def test_mcnemar_5_vs_0():
    # 5 discordant pairs all one way: p = 2 * (1/2)^5 = 2/32 = 0.0625
    a, b = _pairs(n00=3, n01=5, n11=4)
    r = mcnemar_exact(a, b)
    assert (r["n"], r["b01"], r["b10"]) == (12, 5, 0)
    assert r["p_value"] == pytest.approx(0.0625)


def test_mcnemar_6_vs_1():
    # 7 discordant: p = 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * (1 + 7) / 128 = 0.125
    a, b = _pairs(n01=6, n10=1, n11=2)
    r = mcnemar_exact(a, b)
    assert (r["b01"], r["b10"]) == (6, 1)
    assert r["p_value"] == pytest.approx(0.125)


def test_mcnemar_symmetric_in_direction():
    # swapping a and b swaps b01/b10 but not the p-value
    a, b = _pairs(n01=1, n10=6)
    r = mcnemar_exact(a, b)
    assert (r["b01"], r["b10"]) == (1, 6)
    assert r["p_value"] == pytest.approx(0.125)


def test_mcnemar_balanced_is_one():
    # 3 vs 3: two-sided p = sum of all outcomes = 1
    a, b = _pairs(n01=3, n10=3)
    assert mcnemar_exact(a, b)["p_value"] == pytest.approx(1.0)


def test_mcnemar_no_discordant():
    a, b = _pairs(n00=4, n11=6)
    r = mcnemar_exact(a, b)
    assert (r["b01"], r["b10"], r["p_value"]) == (0, 0, 1.0)


def test_mcnemar_length_mismatch():
    with pytest.raises(ValueError):
        mcnemar_exact([True, False], [True])


# ---------------------------------------------------------------- Holm


def test_holm_basic():
    # sorted: 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    # back in input order [0.01, 0.04, 0.03] -> [0.03, 0.06, 0.06]
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_monotonicity_matters():
    # m = 4, sorted input: 0.01*4 = 0.04, 0.015*3 = 0.045, 0.04*2 = 0.08,
    # 0.045*1 = 0.045 -> the last must be raised to the running max 0.08
    assert holm([0.045, 0.01, 0.04, 0.015]) == pytest.approx([0.08, 0.04, 0.08, 0.045])


def test_holm_caps_at_one():
    # 0.3*3 = 0.9, 0.5*2 = 1.0, 0.6*1 = 0.6 -> max 1.0; 0.9 would be 0.9 anyway
    assert holm([0.6, 0.3, 0.5]) == pytest.approx([1.0, 0.9, 1.0])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_holm_edge_cases():
    assert holm([]) == []
    assert holm([0.02]) == pytest.approx([0.02])
    with pytest.raises(ValueError):
        holm([0.1, 1.5])
    with pytest.raises(ValueError):
        holm([float("nan")])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), max_size=20))
def test_holm_properties(ps):
    adj = holm(ps)
    m = len(ps)
    assert len(adj) == m
    for p, q in zip(ps, adj):
        assert p <= q + 1e-12 and q <= 1.0 and q <= m * p + 1e-12
    for (p1, q1), (p2, q2) in itertools.combinations(zip(ps, adj), 2):
        if p1 < p2:
            assert q1 <= q2 + 1e-12


# ---------------------------------------------------------------- bootstrap


def _random_pair(n=60, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.random(n) < 0.5).tolist(), (rng.random(n) < 0.7).tolist()


def test_bootstrap_contains_point_and_is_deterministic():
    a, b = _random_pair()
    r1 = paired_bootstrap_diff(a, b, n_resamples=2000, seed=3)
    r2 = paired_bootstrap_diff(a, b, n_resamples=2000, seed=3)
    assert r1 == r2
    assert r1["diff"] == pytest.approx(np.mean(b) - np.mean(a))
    assert r1["ci_low"] <= r1["diff"] <= r1["ci_high"]
    assert r1["ci_low"] < r1["ci_high"]
    # a different seed gives (generally) different bounds, still around diff
    r3 = paired_bootstrap_diff(a, b, n_resamples=2000, seed=4)
    assert r3["diff"] == r1["diff"]
    assert r3["ci_low"] <= r3["diff"] <= r3["ci_high"]


def test_bootstrap_all_identical():
    a = [True, False, True, True]
    r = paired_bootstrap_diff(a, a, n_resamples=500)
    assert r == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_bootstrap_constant_nonzero_difference():
    # every item: a wrong, b right -> diff = 1 and every resample gives 1
    r = paired_bootstrap_diff([False] * 5, [True] * 5, n_resamples=500)
    assert r == {"diff": 1.0, "ci_low": 1.0, "ci_high": 1.0}


def test_bootstrap_nearly_degenerate_is_finite_and_quiet():
    # a single discordant pair out of 8: result must be finite and emit no warnings
    a, b = _pairs(n00=3, n01=1, n11=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = paired_bootstrap_diff(a, b, n_resamples=500)
    assert r["diff"] == pytest.approx(1 / 8)
    assert all(math.isfinite(r[k]) for k in ("ci_low", "ci_high"))
    assert r["ci_low"] <= r["diff"] <= r["ci_high"]


def _fake_bootstrap(results):
    """Stand-in for scipy.stats.bootstrap returning canned bounds per method."""
    from types import SimpleNamespace

    calls = []

    def fake(data, statistic, *, method, **kwargs):
        calls.append(method)
        low, high, warn = results[method]
        if warn:
            warnings.warn("degenerate", RuntimeWarning)
        return SimpleNamespace(confidence_interval=SimpleNamespace(low=low, high=high))

    return fake, calls


def test_bootstrap_falls_back_to_percentile(monkeypatch):
    import ehrmind.stats as mod

    fake, calls = _fake_bootstrap({"BCa": (np.nan, np.nan, True), "percentile": (0.0, 0.5, False)})
    monkeypatch.setattr(mod.stats, "bootstrap", fake)
    r = paired_bootstrap_diff([False, True, False], [True, True, False])
    assert calls == ["BCa", "percentile"]
    assert r == pytest.approx({"diff": 1 / 3, "ci_low": 0.0, "ci_high": 0.5})


def test_bootstrap_warning_alone_triggers_fallback(monkeypatch):
    import ehrmind.stats as mod

    fake, calls = _fake_bootstrap({"BCa": (0.1, 0.2, True), "percentile": (0.0, 0.5, False)})
    monkeypatch.setattr(mod.stats, "bootstrap", fake)
    r = paired_bootstrap_diff([False, True, False], [True, True, False])
    assert calls == ["BCa", "percentile"]
    assert (r["ci_low"], r["ci_high"]) == (0.0, 0.5)


def test_bootstrap_falls_back_to_point(monkeypatch):
    import ehrmind.stats as mod

    fake, calls = _fake_bootstrap({"BCa": (np.nan, np.nan, True), "percentile": (np.nan, np.nan, True)})
    monkeypatch.setattr(mod.stats, "bootstrap", fake)
    r = paired_bootstrap_diff([False, True, False], [True, True, False])
    assert calls == ["BCa", "percentile"]
    assert r == pytest.approx({"diff": 1 / 3, "ci_low": 1 / 3, "ci_high": 1 / 3})


def test_bootstrap_errors():
    with pytest.raises(ValueError):
        paired_bootstrap_diff([True, False], [True])
    with pytest.raises(ValueError):
        paired_bootstrap_diff([], [])


# ---------------------------------------------------------------- pairwise


def test_pairwise_comparisons():
    # x = F F F F F F T T T T  (acc 0.4)
    # y = T T T T T F T T T T  (acc 0.9), z = y
    # x vs y: b01 = 5 (items 0-4), b10 = 0 -> p = 2 * (1/2)^5 = 0.0625
    # x vs z: same counts                    -> p = 0.0625
    # y vs z: identical, no discordant pairs -> p = 1
    x = [False] * 6 + [True] * 4
    y = [True] * 5 + [False] + [True] * 4
    z = list(y)
    out = pairwise_comparisons({"x": x, "y": y, "z": z}, alpha=0.2)
    assert [(r["a"], r["b"]) for r in out] == [("x", "y"), ("x", "z"), ("y", "z")]
    assert set(out[0]) == {"a", "b", "n", "b01", "b10", "p_value", "p_holm",
                           "significant", "diff", "ci_low", "ci_high"}
    assert (out[0]["b01"], out[0]["b10"]) == (5, 0)
    assert out[0]["p_value"] == pytest.approx(0.0625)
    assert out[0]["diff"] == pytest.approx(0.5)  # 0.9 - 0.4
    # Holm with m = 3 on [0.0625, 0.0625, 1]: 0.1875, max(0.1875, 0.125) = 0.1875, 1
    assert [r["p_holm"] for r in out] == pytest.approx([0.1875, 0.1875, 1.0])
    assert [r["significant"] for r in out] == [True, True, False]
    assert out[2]["diff"] == out[2]["ci_low"] == out[2]["ci_high"] == 0.0


def test_pairwise_handles_fewer_than_two():
    assert pairwise_comparisons({}) == []
    assert pairwise_comparisons({"only": [True, False]}) == []


def test_pairwise_length_mismatch():
    with pytest.raises(ValueError):
        pairwise_comparisons({"a": [True, False], "b": [True]})


# ---------------------------------------------------------------- pass@k


def _pass_at_k_bruteforce(n, c, k):
    """Fraction of k-subsets of n samples (first c correct) containing a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration():
    for n in range(1, 8):
        for k in range(1, n + 1):
            for c in range(0, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(
                    _pass_at_k_bruteforce(n, c, k), abs=1e-12
                ), (n, c, k)


def test_pass_at_k_hand_values():
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # k = 1 reduces to c / n
    assert pass_at_k(200, 37, 1) == pytest.approx(37 / 200)
    assert pass_at_k(10, 0, 3) == 0.0
    assert pass_at_k(10, 8, 3) == 1.0  # n - c = 2 < k


def test_pass_at_k_large_n_is_stable():
    # 1 - C(n-c,k)/C(n,k) with exact integers vs the product form
    n, c, k = 1000, 10, 100
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("n, c, k", [(3, 1, 4), (5, 6, 2), (5, -1, 2), (5, 2, 0)])
def test_pass_at_k_errors(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


# --- classification_summary: hand values (sklearn's definitions) -------------

def test_classification_three_classes_hand_values():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, None]
    m = classification_summary(y_true, y_pred, 3)
    assert m["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1]]
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # F1: class 0 2*1/(2+1), class 1 2*2/(2+3), class 2 2*1/(2+1)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 4 / 5 + 2 / 3) / 3)
    # po = 4/6; pe = (2*1 + 2*3 + 2*1) / 36
    po, pe = 4 / 6, 10 / 36
    assert m["cohen_kappa"] == pytest.approx((po - pe) / (1 - pe))
    assert m["auroc"] is None


def test_classification_binary_auroc():
    y_true = [0, 0, 1, 1]
    p = [0.1, 0.4, 0.35, 0.8]        # 3 of the 4 (pos, neg) pairs ranked right
    m = classification_summary(y_true, [0, 0, 0, 1], 2, p_positive=p)
    assert m["auroc"] == pytest.approx(0.75)
    ties = classification_summary(y_true, [0, 0, 1, 1], 2, p_positive=[0.5] * 4)
    assert ties["auroc"] == pytest.approx(0.5)


def test_classification_degenerate_cases_are_defined():
    one_class = classification_summary([1, 1, 1], [1, 1, 1], 2, p_positive=[0.9, 0.8, 0.7])
    assert one_class["auroc"] is None            # AUROC needs both classes
    assert one_class["balanced_accuracy"] == 1.0
    assert one_class["cohen_kappa"] is None      # chance agreement is 1
    nothing_parsed = classification_summary([0, 1], [None, None], 2)
    assert nothing_parsed["balanced_accuracy"] == 0.0 and nothing_parsed["macro_f1"] == 0.0
    assert nothing_parsed["cohen_kappa"] == 0.0
    with pytest.raises(ValueError):
        classification_summary([], [], 2)
    with pytest.raises(ValueError):
        classification_summary([3], [0], 2)


def test_pass_at_k_is_stable_where_the_binomials_overflow_floats():
    from fractions import Fraction
    n, c, k = 3000, 7, 400   # C(3000, 400) has about 500 digits: far beyond a float
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


# --- classification_summary: scikit-learn against the former hand-written version ----------

def _hand_classification_summary(y_true, y_pred, n_classes, p_positive=None):
    """The implementation before scikit-learn (kept as an independent check)."""
    from scipy import stats as sps
    true = np.asarray(y_true, dtype=int)
    pred = np.asarray([n_classes if p is None else int(p) for p in y_pred], dtype=int)
    confusion = np.zeros((n_classes, n_classes + 1), dtype=int)
    np.add.at(confusion, (true, pred), 1)
    support = confusion.sum(axis=1)
    predicted = confusion[:, :n_classes].sum(axis=0)
    hits = np.diag(confusion[:, :n_classes])
    present = support > 0
    recall = np.divide(hits, support, out=np.zeros(n_classes), where=present)
    f1_defined = present | (predicted > 0)
    f1 = np.divide(2 * hits, support + predicted, out=np.zeros(n_classes), where=f1_defined)
    n = true.size
    observed = hits.sum() / n
    chance = float(np.sum(support * predicted)) / n ** 2
    auroc = None
    if p_positive is not None and n_classes == 2 and present.all():
        p = np.asarray(p_positive, dtype=float)
        u = sps.mannwhitneyu(p[true == 1], p[true == 0]).statistic
        auroc = float(u / (support[1] * support[0]))
    return {"confusion": confusion.tolist(), "balanced_accuracy": float(recall[present].mean()),
            "macro_f1": float(f1[f1_defined].mean()),
            "cohen_kappa": None if chance >= 1.0 else float((observed - chance) / (1.0 - chance)), "auroc": auroc}


def _same_summary(new, old):
    assert new["confusion"] == old["confusion"]
    for key in ("balanced_accuracy", "macro_f1", "cohen_kappa", "auroc"):
        assert (new[key] is None) == (old[key] is None), key
        if old[key] is not None:
            assert new[key] == pytest.approx(old[key], abs=1e-12), key


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 4).flatmap(lambda k: st.tuples(
    st.just(k),
    st.lists(st.tuples(st.integers(0, k - 1), st.one_of(st.none(), st.integers(0, k - 1)),
                       st.floats(0, 1)), min_size=1, max_size=30))))
def test_classification_summary_agrees_with_the_hand_written_version(case):
    k, rows = case
    y_true, y_pred, p = (list(col) for col in zip(*rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # the new version keeps sklearn's warnings to itself
        new = classification_summary(y_true, y_pred, k, p if k == 2 else None)
    _same_summary(new, _hand_classification_summary(y_true, y_pred, k, p if k == 2 else None))


def test_classification_summary_agrees_on_the_reference_predictions():
    from ehrmind.io import read_jsonl
    from ehrmind.tasks import get_task
    from tests.conftest import REPO
    files = sorted((REPO / "results/reference/embedded/cells").glob("*/*/*/seed*/predictions.jsonl"))
    checked = 0
    for path in files:
        rows = read_jsonl(path)
        if not rows or "gold_label" not in rows[0]:
            continue
        n_classes = len(get_task(path.parts[-4]).labels)
        args = ([r["gold_label"] for r in rows], [r["parsed_value"] for r in rows], n_classes,
                [r["p_positive"] for r in rows] if n_classes == 2 else None)
        _same_summary(classification_summary(*args), _hand_classification_summary(*args))
        checked += 1
    assert checked >= 8, f"expected the trec_ct and ehrshot cells, found {checked} files with gold_label"


# --- AUROC / AUPRC bootstrap ----------------------------------------------------

def test_auc_bootstrap_point_values_by_hand():
    # AUROC: 3 of the 4 (pos, neg) pairs in order. AUPRC (average precision): by score, 0.8 is a
    # positive (precision 1, recall 1/2), 0.4 a negative, 0.35 a positive (precision 2/3, recall 1):
    # AP = 1/2 * 1 + 1/2 * 2/3.
    r = auc_bootstrap([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_resamples=200, seed=1)
    assert r["auroc"] == pytest.approx(0.75)
    assert r["auprc"] == pytest.approx(0.5 + 1 / 3)
    assert r["n"] == 4 and r["n_positive"] == 2 and r["n_resamples"] == 200
    assert 0 < r["n_valid"] < 200            # some resamples hold one class only and are skipped
    assert r["auroc_sd"] > 0 and 0 <= r["auroc_mean"] <= 1


def test_resample_scores_equal_sklearn():
    # the numpy-only AUROC and average precision the bootstrap scores its resamples with
    from sklearn.metrics import average_precision_score, roc_auc_score

    from ehrmind.stats import average_precision, metric
    rng = np.random.default_rng(0)
    for i in range(300):
        n = int(rng.integers(2, 80))
        y = np.r_[0, 1, rng.integers(0, 2, n)]
        s = rng.integers(0, 4, y.size) / 3 if i % 2 else rng.random(y.size)   # ties, or none
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert metric("auroc", y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("name", ["accuracy", "balanced_accuracy", "auroc"])
def test_metric_on_a_batch_of_rows_equals_each_row(name):
    # the permutation test scores a batch of resamples at once
    from ehrmind.stats import metric
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2 if name == "auroc" else 3, 40)
    pred = rng.random((5, 40)) if name == "auroc" else rng.integers(0, 3, (5, 40)).astype(float)
    if name == "accuracy":
        pred = (pred == 1).astype(float)
    assert metric(name, y, pred).tolist() == [metric(name, y, row) for row in pred]


def test_auc_bootstrap_is_seeded_and_resamples_patients():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = y * 0.5 + rng.normal(size=60)
    a = auc_bootstrap(y, s, n_resamples=300, seed=7)
    assert a == auc_bootstrap(y, s, n_resamples=300, seed=7)
    assert a["auroc_mean"] != auc_bootstrap(y, s, n_resamples=300, seed=8)["auroc_mean"]
    assert abs(a["auroc_mean"] - a["auroc"]) < 2 * a["auroc_sd"]
    # every patient twice: drawing patients makes the same draws as for the single items, and
    # duplicating all items leaves both AUROC and average precision unchanged
    twice = auc_bootstrap(np.repeat(y, 2), np.repeat(s, 2), n_resamples=300, seed=7, groups=np.repeat(np.arange(60), 2))
    for key in ("auroc", "auroc_mean", "auroc_sd", "auprc", "auprc_mean", "auprc_sd", "n_valid"):
        assert twice[key] == pytest.approx(a[key], abs=1e-12), key
    items = auc_bootstrap(np.repeat(y, 2), np.repeat(s, 2), n_resamples=300, seed=7)   # items as patients:
    assert items["auroc_sd"] < twice["auroc_sd"]                                       # too narrow


@pytest.mark.parametrize("y, s", [([1, 1], [0.2, 0.3]), ([0, 1], [0.2]), ([0, 2], [0.1, 0.2]),
                                  ([0, 1], [0.1, float("nan")]), ([], [])])
def test_auc_bootstrap_errors(y, s):
    with pytest.raises(ValueError):
        auc_bootstrap(y, s)


# --- DeLong ---------------------------------------------------------------------------------

def _delong_brute_force(y, a, b):
    """DeLong from the pairwise kernel psi over all (positive, negative) pairs: no ranks."""
    y = np.asarray(y)
    v10, v01, auc = [], [], []
    for s in (np.asarray(a, float), np.asarray(b, float)):
        x, z = s[y == 1][:, None], s[y == 0][None, :]
        psi = (x > z) + 0.5 * (x == z)
        v10.append(psi.mean(1))
        v01.append(psi.mean(0))
        auc.append(psi.mean())
    m, n = len(v10[0]), len(v01[0])
    s = np.cov(v10) / m + np.cov(v01) / n
    var = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    z = (auc[0] - auc[1]) / math.sqrt(var)
    return auc[0], auc[1], z, 2 * (1 - 0.5 * (1 + math.erf(abs(z) / math.sqrt(2))))


def test_delong_by_hand():
    # a: positives 0.9, 0.6 / negatives 0.7, 0.1 -> V10 = (1, 1/2), V01 = (1/2, 1), AUC 3/4
    # b: positives 0.8, 0.3 / negatives 0.5, 0.4 -> V10 = (1, 0),   V01 = (1/2, 1/2), AUC 1/2
    # S10 = [[1/8, 1/4], [1/4, 1/2]], S01 = [[1/8, 0], [0, 0]], m = n = 2
    # S = S10/2 + S01/2 = [[1/8, 1/8], [1/8, 1/4]]; var = 1/8 + 1/4 - 2/8 = 1/8
    # z = (3/4 - 1/2) / sqrt(1/8) = 0.707107; p = 2 (1 - Phi(0.707107)) = 0.479500
    r = delong_test([1, 1, 0, 0], [0.9, 0.6, 0.7, 0.1], [0.8, 0.3, 0.5, 0.4])
    assert (r["auroc_a"], r["auroc_b"], r["diff"]) == (0.75, 0.5, 0.25)
    assert r["se"] == pytest.approx(math.sqrt(1 / 8))
    assert r["z"] == pytest.approx(0.707107, abs=1e-6)
    assert r["p_value"] == pytest.approx(0.479500, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6), st.integers(0, 6)), min_size=4, max_size=40))
def test_delong_agrees_with_the_brute_force_kernel(rows):
    y, a, b = (list(col) for col in zip(*rows))       # small integer scores: many ties
    if min(sum(y), len(y) - sum(y)) < 2:
        return
    r = delong_test(y, a, b)
    auc_a, auc_b, z, p = _delong_brute_force(y, a, b) if r["se"] > 0 else (r["auroc_a"], r["auroc_b"], r["z"], r["p_value"])
    assert r["auroc_a"] == pytest.approx(auc_a, abs=1e-12) and r["auroc_b"] == pytest.approx(auc_b, abs=1e-12)
    if r["se"] > 0:
        assert r["z"] == pytest.approx(z, rel=1e-9) and r["p_value"] == pytest.approx(p, abs=1e-9)


def test_delong_edge_cases():
    y = [1, 1, 1, 0, 0, 0]
    s = [0.9, 0.8, 0.3, 0.4, 0.2, 0.1]
    same = delong_test(y, s, s)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    flipped = delong_test(y, [0.1, 0.2, 0.3, 0.9, 0.8, 0.7], s)
    assert flipped["p_value"] == pytest.approx(delong_test(y, s, [0.1, 0.2, 0.3, 0.9, 0.8, 0.7])["p_value"])
    perfect_vs_constant = delong_test(y, [3, 3, 3, 0, 0, 0], [1] * 6)   # both have zero variance
    assert perfect_vs_constant["diff"] == 0.5 and perfect_vs_constant["p_value"] == 0.0
    with pytest.raises(ValueError, match="2 positives"):
        delong_test([1, 0, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
