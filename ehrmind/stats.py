"""Statistics for comparing models on benchmark items.

Most functions work on per-item correctness vectors (sequences of bools); the
classification and AUC functions take labels and scores. NumPy, SciPy and
scikit-learn (its metric functions) are the dependencies.

Public API
----------
wilson_interval        Wilson score interval for a binomial proportion.
accuracy_summary       Accuracy with its Wilson interval.
mcnemar_exact          Exact (binomial) McNemar test for two paired systems.
paired_bootstrap_diff  Paired bootstrap CI for a difference in accuracy.
holm                   Holm-Bonferroni step-down adjusted p-values.
pairwise_comparisons   McNemar + bootstrap for every pair of systems, Holm-adjusted.
pass_at_k              Unbiased pass@k estimator (Chen et al., 2021).
classification_summary Confusion matrix, balanced accuracy, macro-F1, Cohen's kappa, AUROC.
auc_bootstrap          AUROC and AUPRC with a seeded bootstrap over patients (mean, sd).
delong_test            DeLong's test for the difference of two correlated AUROCs.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Sequence

import numpy as np
from scipy import stats

__all__ = [
    "wilson_interval",
    "accuracy_summary",
    "mcnemar_exact",
    "paired_bootstrap_diff",
    "holm",
    "pairwise_comparisons",
    "pass_at_k",
    "classification_summary",
    "auc_bootstrap",
    "delong_test",
]


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _as_bool_vector(x: Sequence[bool], name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=bool)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _paired(a: Sequence[bool], b: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    a_arr, b_arr = _as_bool_vector(a, "a"), _as_bool_vector(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"paired inputs must have the same length, got {a_arr.size} and {b_arr.size}"
        )
    return a_arr, b_arr


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` Bernoulli trials.

    Uses the closed form
    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with
    ``z = Φ⁻¹(1 - (1 - confidence)/2)``; bounds are clipped to [0, 1].

    Raises ValueError if ``n < 1`` (no interval exists for zero trials) or if
    ``successes`` is outside ``[0, n]``.
    """
    _check_confidence(confidence)
    if n < 1:
        raise ValueError(f"wilson_interval needs at least one trial, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    z2 = z * z
    p = successes / n
    denom = n + z2
    center = (successes + z2 / 2.0) / denom
    half = z / denom * math.sqrt(n * p * (1.0 - p) + z2 / 4.0)
    return max(0.0, center - half), min(1.0, center + half)


def accuracy_summary(correct: Sequence[bool], confidence: float = 0.95) -> dict:
    """Accuracy of a correctness vector with its Wilson interval.

    Returns ``{"accuracy", "ci_low", "ci_high", "n", "n_correct"}``.
    Raises ValueError for an empty vector.
    """
    arr = _as_bool_vector(correct, "correct")
    n, k = int(arr.size), int(arr.sum())
    if n == 0:
        raise ValueError("accuracy_summary needs at least one item")
    low, high = wilson_interval(k, n, confidence)
    return {"accuracy": k / n, "ci_low": low, "ci_high": high, "n": n, "n_correct": k}


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """Exact two-sided McNemar test for two systems scored on the same items.

    ``b01`` counts items where ``a`` is wrong and ``b`` right, ``b10`` the
    reverse. Under H0 the discordant pairs split Binomial(b01 + b10, 1/2);
    the p-value is the exact two-sided binomial p-value (1.0 when there are
    no discordant pairs). Returns ``{"n", "b01", "b10", "p_value"}``.
    """
    a_arr, b_arr = _paired(a, b)
    b01 = int(np.sum(~a_arr & b_arr))
    b10 = int(np.sum(a_arr & ~b_arr))
    m = b01 + b10
    p = 1.0 if m == 0 else float(stats.binomtest(b01, m, 0.5).pvalue)
    return {"n": int(a_arr.size), "b01": b01, "b10": b10, "p_value": min(1.0, p)}


def _diff_of_means(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(b, axis=axis) - np.mean(a, axis=axis)


def paired_bootstrap_diff(
    a: Sequence[bool],
    b: Sequence[bool],
    confidence: float = 0.95,
    n_resamples: int = 10000,
    seed: int = 0,
) -> dict:
    """Accuracy difference ``mean(b) - mean(a)`` with a paired bootstrap CI.

    Items are resampled jointly (``paired=True``), using BCa. If SciPy warns
    or returns NaN bounds (degenerate data), the percentile method is used;
    if the bounds are still not finite, or the per-item differences are all
    equal (so every resample gives the same value), the point estimate is
    returned as both bounds. Deterministic for a given ``seed``.
    Returns ``{"diff", "ci_low", "ci_high"}``.
    """
    _check_confidence(confidence)
    a_arr, b_arr = _paired(a, b)
    if a_arr.size == 0:
        raise ValueError("paired_bootstrap_diff needs at least one item")
    a_f, b_f = a_arr.astype(float), b_arr.astype(float)
    diff = float(_diff_of_means(a_f, b_f))
    d = b_f - a_f
    if np.all(d == d[0]):  # constant differences: the bootstrap distribution is a point
        return {"diff": diff, "ci_low": diff, "ci_high": diff}

    for method in ("BCa", "percentile"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = stats.bootstrap(
                (a_f, b_f),
                _diff_of_means,
                paired=True,
                vectorized=True,
                n_resamples=n_resamples,
                confidence_level=confidence,
                method=method,
                rng=np.random.default_rng(seed),
            )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high) and (not caught or method == "percentile"):
            return {"diff": diff, "ci_low": low, "ci_high": high}
    return {"diff": diff, "ci_low": diff, "ci_high": diff}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    With p-values sorted ascending ``p_(1) <= ... <= p_(m)``, the adjusted
    value is ``min(1, max_{j <= i} (m - j + 1) * p_(j))``, which makes the
    adjusted values monotone in the raw ones.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError("p_values must be one-dimensional")
    if np.any(~((p >= 0.0) & (p <= 1.0))):
        raise ValueError("p_values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(scaled))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted.tolist()


def pairwise_comparisons(
    results: dict[str, Sequence[bool]], alpha: float = 0.05, seed: int = 0
) -> list[dict]:
    """Compare every unordered pair of systems scored on the same items.

    For each pair ``(first, second)`` of keys, in insertion order, runs
    :func:`mcnemar_exact` and :func:`paired_bootstrap_diff` (``diff`` is
    second minus first), then Holm-adjusts the McNemar p-values over all
    pairs. Each entry has keys ``a, b, n, b01, b10, p_value, p_holm,
    significant, diff, ci_low, ci_high``; ``significant`` is ``p_holm < alpha``.
    """
    rows = []
    for name_a, name_b in itertools.combinations(results, 2):
        test = mcnemar_exact(results[name_a], results[name_b])
        boot = paired_bootstrap_diff(results[name_a], results[name_b], seed=seed)
        rows.append({"a": name_a, "b": name_b, **test, **boot})
    for row, p_adj in zip(rows, holm([r["p_value"] for r in rows])):
        row["p_holm"] = p_adj
        row["significant"] = bool(p_adj < alpha)
    keys = ("a", "b", "n", "b01", "b10", "p_value", "p_holm", "significant",
            "diff", "ci_low", "ci_high")
    return [{k: row[k] for k in keys} for row in rows]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct.

    Estimates ``1 - C(n - c, k) / C(n, k)`` in the numerically stable form
    ``1 - prod_{i=n-c+1}^{n} (1 - k / i)`` (Chen et al., 2021).
    Raises ValueError for ``k < 1``, ``n < k``, or ``c`` outside ``[0, n]``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n < k:
        raise ValueError(f"need n >= k samples, got n={n}, k={k}")
    if not 0 <= c <= n:
        raise ValueError(f"c must be in [0, n={n}], got {c}")
    if c == 0:
        return 0.0
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def classification_summary(y_true: Sequence[int], y_pred: Sequence[int | None], n_classes: int,
                           p_positive: Sequence[float] | None = None) -> dict:
    """Metrics of a classifier whose answer may be missing (``None``: unparsable).

    A missing answer counts as wrong everywhere: it is its own class ``n_classes``
    (its own column of the confusion matrix, ``confusion[i][n_classes]``), which
    lowers recall and kappa. scikit-learn computes the metrics:
    ``balanced_accuracy`` (``balanced_accuracy_score``) is the mean recall over the
    classes present in ``y_true``; ``macro_f1`` (``f1_score``, average="macro") the
    mean F1 over the real classes that are present or predicted (a class never
    predicted nor present is left out; the unparsable class never counts as one);
    ``cohen_kappa`` (``cohen_kappa_score``) is None when it is undefined (chance
    agreement 1); ``auroc`` (``roc_auc_score``; two classes, ``p_positive`` given, both
    classes present) else None.
    """
    from sklearn.metrics import (balanced_accuracy_score, cohen_kappa_score, confusion_matrix, f1_score,
                                 roc_auc_score)

    true = np.asarray(y_true, dtype=int)
    pred = np.asarray([n_classes if p is None else int(p) for p in y_pred], dtype=int)
    if true.size == 0 or true.size != pred.size:
        raise ValueError(f"need equal, non-zero numbers of labels and predictions, got {true.size}, {pred.size}")
    if true.min() < 0 or true.max() >= n_classes or pred.min() < 0 or pred.max() > n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes})")
    confusion = confusion_matrix(true, pred, labels=np.arange(n_classes + 1))[:n_classes]
    present = confusion.sum(axis=1) > 0
    scored = [c for c in range(n_classes) if present[c] or confusion[:, c].sum() > 0]
    # sklearn warns about classes in y_pred not in y_true, a single class, an undefined kappa:
    # all intended here and handled below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(true, pred)
        kappa = cohen_kappa_score(true, pred, replace_undefined_by=np.nan)
    auroc = None
    if p_positive is not None and n_classes == 2 and present.all():
        auroc = float(roc_auc_score(true, np.asarray(p_positive, dtype=float)))
    return {
        "confusion": confusion.tolist(),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(f1_score(true, pred, labels=scored, average="macro", zero_division=0.0)),
        "cohen_kappa": None if np.isnan(kappa) else float(kappa),
        "auroc": auroc,
    }


def _binary(y_true: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    if y.ndim != 1 or y.shape != s.shape or y.size == 0:
        raise ValueError(f"need equal, non-zero numbers of labels and scores, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers")
    if y.min() == y.max():
        raise ValueError("AUROC and AUPRC need both classes among the labels")
    return y.astype(int), s


def auc_bootstrap(y_true: Sequence[int], scores: Sequence[float], n_resamples: int = 1000, seed: int = 0,
                  groups: Sequence | None = None) -> dict:
    """AUROC (``roc_auc_score``) and AUPRC (``average_precision_score``) with a seeded
    bootstrap over patients.

    Each resample draws patients with replacement (``groups`` names each item's
    patient when a patient has several items; by default every item is its own
    patient) and keeps all of a drawn patient's items. Resamples that hold one class
    only have no AUC and are skipped (``n_valid`` counts the others). Returns
    ``{"auroc", "auprc"}`` on the full data, their bootstrap ``*_mean`` and ``*_sd``
    (ddof 1; NaN with fewer than two valid resamples), ``n``, ``n_positive``,
    ``n_resamples`` and ``n_valid``. Deterministic for a given ``seed``. The resamples are
    scored by ``metric("auroc")`` and ``average_precision`` (numpy only, equal to sklearn's to
    ~1e-16, tested): sklearn's input checks made a call of 1,000 resamples ~3 s.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = _binary(y_true, scores)
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, got {n_resamples}")
    keys = np.arange(y.size) if groups is None else np.asarray(groups)
    if keys.shape != y.shape:
        raise ValueError(f"groups must name one patient per item, got {keys.shape} for {y.shape}")
    resample = _group_resampler(keys, np.random.default_rng(seed))
    roc, pr = [], []
    for _ in range(n_resamples):
        take = resample()
        yb = y[take]
        if yb.min() == yb.max():
            continue
        roc.append(metric("auroc", yb, s[take]))
        pr.append(average_precision(yb, s[take]))

    def spread(values: list[float]) -> tuple[float, float]:
        if len(values) < 2:
            return float("nan"), float("nan")
        return float(np.mean(values)), float(np.std(values, ddof=1))

    (roc_mean, roc_sd), (pr_mean, pr_sd) = spread(roc), spread(pr)
    return {"auroc": float(roc_auc_score(y, s)), "auroc_mean": roc_mean, "auroc_sd": roc_sd,
            "auprc": float(average_precision_score(y, s)), "auprc_mean": pr_mean, "auprc_sd": pr_sd,
            "n": int(y.size), "n_positive": int(y.sum()), "n_resamples": int(n_resamples), "n_valid": len(roc)}


def delong_test(y_true: Sequence[int], scores_a: Sequence[float], scores_b: Sequence[float]) -> dict:
    """DeLong, DeLong & Clarke-Pearson (1988): two-sided test that two AUROCs measured on
    the same patients are equal.

    With m positives X and n negatives Y, each scorer's AUROC is the mean of
    psi(x, y) = 1 if x > y, 1/2 if x == y, else 0 over the m*n pairs. Its placement
    values V10(x_i) = mean_j psi(x_i, y_j) and V01(y_j) = mean_i psi(x_i, y_j) are found
    with midranks (Sun & Xu, 2014): V10 = (rank of x_i among all - rank among positives) / n,
    V01 = 1 - (rank of y_j among all - rank among negatives) / m. Then
    S = cov(V10) / m + cov(V01) / n (2 x 2, over the two scorers), the difference's variance
    is S_aa + S_bb - 2 S_ab, z = (AUC_a - AUC_b) / sqrt(var) and p = 2 (1 - Phi(|z|)).
    Needs at least 2 positives and 2 negatives. With zero variance, p is 1 when the AUROCs
    are equal and 0 otherwise. Returns ``{"auroc_a", "auroc_b", "diff", "se", "z", "p_value"}``
    (diff = a - b).
    """
    y, a = _binary(y_true, scores_a)
    _, b = _binary(y_true, scores_b)
    m, n = int(y.sum()), int((1 - y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's test needs at least 2 positives and 2 negatives, got {m} and {n}")
    v10, v01, auc = [], [], []
    for s in (a, b):
        x, z = s[y == 1], s[y == 0]
        both = stats.rankdata(np.concatenate([x, z]))
        tx, tz = stats.rankdata(x), stats.rankdata(z)
        v10.append((both[:m] - tx) / n)
        v01.append(1.0 - (both[m:] - tz) / m)
        auc.append(float(np.mean(v10[-1])))
    cov = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = auc[0] - auc[1]
    if var <= 1e-15:
        z, p = (0.0, 1.0) if abs(diff) < 1e-12 else (math.copysign(math.inf, diff), 0.0)
    else:
        z = diff / math.sqrt(var)
        p = float(2 * stats.norm.sf(abs(z)))
    return {"auroc_a": auc[0], "auroc_b": auc[1], "diff": diff, "se": math.sqrt(max(var, 0.0)), "z": z,
            "p_value": min(1.0, p)}


# ---------------------------------------------------------------- headline metrics, paired over seeds
# A cell's items as arrays: `y` the gold class (0 for tasks scored right/wrong), `pred` what the
# metric reads: 1.0/0.0 correctness (accuracy), the predicted class with -1 for none
# (balanced_accuracy), or the probability of class 1 (auroc). Several seeds of a cell are
# stacked rows of the same items; `groups` names each row's item so resampling keeps an
# item's seeds together.
HEADLINES = ("accuracy", "balanced_accuracy", "auroc")


def metric(name: str, y: np.ndarray, pred: np.ndarray) -> float | np.ndarray:
    """The headline metric on arrays (numpy only: it runs inside resampling loops). `pred` may
    carry leading axes, one value per row (a permutation test's batch of resamples)."""
    if name == "accuracy":
        value = np.mean(pred, axis=-1)
    elif name == "balanced_accuracy":   # mean recall over the classes present; no answer is wrong
        value = np.mean([np.mean(pred[..., y == c] == c, axis=-1) for c in np.unique(y)], axis=0)
    elif name == "auroc":               # Mann-Whitney U over the positive x negative pairs
        pos, neg = y == 1, y == 0
        if not pos.any() or not neg.any():
            return float("nan")
        ranks = stats.rankdata(pred, axis=-1)
        n1, n0 = int(pos.sum()), int(neg.sum())
        value = (ranks[..., pos].sum(-1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    else:
        raise ValueError(f"unknown headline metric {name!r}; expected one of {HEADLINES}")
    return float(value) if np.ndim(value) == 0 else value


def average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """``average_precision_score`` of 0/1 labels with at least one positive, numpy only (it runs
    inside resampling loops): the precision at each distinct score, highest first, weighted by
    the recall it adds."""
    order = np.argsort(-scores, kind="mergesort")
    y, scores = y[order], scores[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), y.size - 1]   # each distinct score's last row
    tps = np.cumsum(y)[last]
    recall_gain = np.diff(tps, prepend=0) / tps[-1]
    return float(np.sum(recall_gain * tps / (last + 1)))


def _group_resampler(groups: np.ndarray, rng: np.random.Generator):
    """A function giving the row indices of one bootstrap resample of whole groups (items,
    with all their seeds)."""
    _, index = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(index == g) for g in range(index.max() + 1)]
    return lambda: np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])


def metric_summary(name: str, y, pred, groups=None, n_resamples: int = 1000, seed: int = 0,
                   confidence: float = 0.95) -> dict:
    """A headline value with its 95 % interval: Wilson for accuracy on one seed, else a seeded
    percentile bootstrap over items. Returns {"metric", "value", "ci_low", "ci_high", "n"}."""
    y, pred = np.asarray(y), np.asarray(pred, dtype=float)
    groups = np.arange(y.size) if groups is None else np.asarray(groups)
    value = metric(name, y, pred)
    if name == "accuracy" and np.unique(groups).size == groups.size:
        low, high = wilson_interval(int(pred.sum()), int(pred.size), confidence)
    else:
        resample = _group_resampler(groups, np.random.default_rng(seed))
        draws = [metric(name, y[t], pred[t]) for t in (resample() for _ in range(n_resamples))]
        draws = np.asarray([d for d in draws if np.isfinite(d)])
        if draws.size < 2:
            low = high = value
        else:
            low, high = (float(q) for q in np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2]))
    return {"metric": name, "value": value, "ci_low": low, "ci_high": high, "n": int(np.unique(groups).size)}


def paired_metric_test(name: str, y, a, b, groups=None, n_resamples: int = 2000, seed: int = 0,
                       confidence: float = 0.95) -> dict:
    """B against A on the same rows (items, or items x seeds): the difference of the headline
    metric, a paired bootstrap interval of it (items resampled with their seeds), and a
    two-sided p-value: exact McNemar on the discordant pairs for accuracy (pooled over
    seeds, which is the stratified exact test), else a paired permutation test
    (`scipy.stats.permutation_test`, permutation_type="samples": each row's two predictions
    swapped at random). Returns {"diff", "ci_low", "ci_high", "p_value", "test", "n"}."""
    y, a, b = np.asarray(y), np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not (y.shape == a.shape == b.shape) or y.ndim != 1 or y.size == 0:
        raise ValueError(f"paired inputs must be one-dimensional and equally long, got {y.shape}, {a.shape}, {b.shape}")
    groups = np.arange(y.size) if groups is None else np.asarray(groups)
    diff = metric(name, y, b) - metric(name, y, a)
    resample = _group_resampler(groups, np.random.default_rng(seed))
    draws = []
    for _ in range(1000):
        t = resample()
        draws.append(metric(name, y[t], b[t]) - metric(name, y[t], a[t]))
    draws = np.asarray([d for d in draws if np.isfinite(d)])
    low, high = ((diff, diff) if draws.size < 2 else
                 tuple(float(q) for q in np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2])))
    if name == "accuracy":
        test, p = "McNemar exact", mcnemar_exact(a.astype(bool), b.astype(bool))["p_value"]
    elif np.array_equal(a, b):
        test, p = "permutation", 1.0
    else:
        test = "permutation"
        # vectorized: scipy passes a batch of resamples, the sample axis last (axis=-1)
        res = stats.permutation_test((a, b), lambda u, v, axis: np.asarray(metric(name, y, v) - metric(name, y, u)),
                                     permutation_type="samples", n_resamples=n_resamples, vectorized=True,
                                     alternative="two-sided", rng=np.random.default_rng(seed))
        p = float(res.pvalue)
    return {"diff": float(diff), "ci_low": low, "ci_high": high, "p_value": min(1.0, float(p)), "test": test,
            "n": int(np.unique(groups).size)}
