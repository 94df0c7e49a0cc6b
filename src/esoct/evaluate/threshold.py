"""Confusion matrices and accuracy, sensitivity, specificity, PPV, NPV and F1 at a threshold, with CIs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats

from esoct.errors import InputError
from esoct.evaluate.bootstrap import CI, bootstrap_ci, check_alpha
from esoct.evaluate.roc import check_binary_inputs

PROPORTIONS = ("accuracy", "sensitivity", "specificity", "ppv", "npv")


def confusion(y_true, y_pred, labels=None) -> pd.DataFrame:
    """Confusion matrix as a labelled table: rows are the true classes, columns the predicted ones.

    Parameters
    ----------
    y_true : array-like, shape (n,)
        True labels (binary 0/1 or classes such as ``"T1"`` .. ``"T4"``).
    y_pred : array-like, shape (n,)
        Predicted labels.
    labels : sequence, optional
        Order of the classes (and classes to include even when absent); default: the sorted
        union of both arrays' labels.

    Returns
    -------
    pandas.DataFrame
        ``counts[i, j]`` = patients of true class ``labels[i]`` predicted as ``labels[j]``; index
        named ``"true"``, columns named ``"predicted"``.

    References
    ----------
    .. [1] Fawcett, T. "An introduction to ROC analysis", Pattern Recognition Letters 27(8),
           861-874, 2006.
    """
    from sklearn.metrics import confusion_matrix

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.ndim != 1:
        raise InputError(f"y_true and y_pred must be 1-D, got shapes {y_true.shape} and {y_pred.shape}")
    if y_true.shape != y_pred.shape:
        raise InputError(f"y_true has {y_true.size} values but y_pred has {y_pred.size}: the lengths must match")
    labels = list(np.unique(np.concatenate([y_true, y_pred]))) if labels is None else list(labels)
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    names = [c.item() if isinstance(c, np.generic) else c for c in labels]
    return pd.DataFrame(counts, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))


def wilson_ci(k, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion ``k / n`` (vectorised).

    ``center = (k + z^2/2) / (n + z^2)``, ``half = z / (n + z^2) sqrt(k (n - k) / n + z^2 / 4)``
    with ``z = Phi^-1(1 - alpha/2)``; the bound is exactly 0 when ``k = 0`` and 1 when ``k = n``,
    as ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.

    Parameters
    ----------
    k : int or array-like of int
        Successes.
    n : int or array-like of int
        Trials; ``n = 0`` gives NaN.
    alpha : float
        1 - confidence level.

    Returns
    -------
    (low, high) : numpy.ndarray of float

    References
    ----------
    .. [1] Wilson, E.B. "Probable inference, the law of succession, and statistical inference",
           Journal of the American Statistical Association 22(158), 209-212, 1927.
    .. [2] Newcombe, R.G. "Two-sided confidence intervals for the single proportion: comparison of
           seven methods", Statistics in Medicine 17(8), 857-872, 1998.
    """
    check_alpha(alpha)
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 2 * (n + z**2)
        center = (2 * n * p + z**2) / denom
        delta = z / denom * np.sqrt(4 * n * p * (1 - p) + z**2)
    low = np.where(k == 0, 0.0, center - delta)
    high = np.where(k == n, 1.0, center + delta)
    bad = n <= 0
    return np.where(bad, np.nan, low), np.where(bad, np.nan, high)


def youden_threshold(y_true, score) -> float:
    """The score threshold that maximises Youden's J = sensitivity + specificity - 1.

    The candidates are the observed scores (``sklearn.metrics.roc_curve`` without dropping
    points); a patient is positive when ``score >= threshold``. Among equal J the highest
    threshold wins. A threshold chosen on the data it is then evaluated on overstates
    sensitivity and specificity; choose it on the training data and pass it to
    :func:`threshold_metrics` for the test data.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome.
    score : array-like of float, shape (n,)
        Predicted score.

    Returns
    -------
    float

    References
    ----------
    .. [1] Youden, W.J. "Index for rating diagnostic tests", Cancer 3(1), 32-35, 1950.
    """
    from sklearn.metrics import roc_curve

    y, s = check_binary_inputs(y_true, score)
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    j = (tpr - fpr)[1:]  # the first point (threshold inf) calls nobody positive
    return float(thresholds[1:][int(np.argmax(j))])


@dataclass(frozen=True)
class ThresholdMetrics:
    """Binary metrics at one threshold, each a :class:`~esoct.evaluate.bootstrap.CI`.

    ``threshold_source`` is ``"given"`` or ``"youden"``; ``"youden"`` means the threshold was
    chosen on the same data, so the metrics are optimistic.
    """

    threshold: float
    threshold_source: str
    tp: int
    fp: int
    tn: int
    fn: int
    accuracy: CI
    sensitivity: CI
    specificity: CI
    ppv: CI
    npv: CI
    f1: CI

    def table(self) -> pd.DataFrame:
        """One row per metric: ``metric``, ``estimate``, ``low``, ``high``, ``method``."""
        rows = [
            {"metric": f.name, "estimate": ci.estimate, "low": ci.low, "high": ci.high, "method": ci.method}
            for f in fields(self)
            if isinstance(ci := getattr(self, f.name), CI)
        ]
        return pd.DataFrame(rows)

    def as_dict(self) -> dict:
        """Plain values for ``metrics.json``."""
        out = {"threshold": self.threshold, "threshold_source": self.threshold_source}
        out.update({k: int(getattr(self, k)) for k in ("tp", "fp", "tn", "fn")})
        out.update({k: getattr(self, k).as_dict() for k in (*PROPORTIONS, "f1")})
        return out


def threshold_metrics(
    y_true,
    score,
    threshold: float | str = 0.5,
    ci: bool = True,
    alpha: float = 0.05,
    n_resamples: int = 1000,
    seed: int = 0,
) -> ThresholdMetrics:
    """Accuracy, sensitivity, specificity, PPV, NPV and F1 at a threshold, with 95% CIs.

    A patient is called positive when ``score >= threshold``. The five proportions get Wilson
    score intervals (:func:`wilson_ci`; e.g. sensitivity = TP / (TP + FN)); F1 = 2 TP / (2 TP +
    FP + FN) gets a percentile bootstrap interval stratified by outcome, all resamples at once.
    A proportion with an empty denominator (PPV when nobody is called positive, NPV when nobody
    is called negative) is NaN with a ``RuntimeWarning`` naming it.

    ``threshold="youden"`` picks the threshold by :func:`youden_threshold` on these same data:
    the resulting sensitivity and specificity are optimistic (the threshold is fitted to the
    sample). For an honest estimate choose the threshold on the training data and pass the
    number here for the test data.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome; both classes must be present.
    score : array-like of float, shape (n,)
        Predicted probability or score.
    threshold : float or "youden"
        Decision threshold.
    ci : bool
        Compute the intervals (else ``low``/``high`` are NaN and ``method`` is ``"none"``).
    alpha : float
        1 - confidence level.
    n_resamples, seed : int
        Bootstrap settings of the F1 interval.

    Returns
    -------
    ThresholdMetrics

    References
    ----------
    .. [1] Wilson, E.B. JASA 22(158), 209-212, 1927.
    .. [2] Youden, W.J. "Index for rating diagnostic tests", Cancer 3(1), 32-35, 1950.
    .. [3] Altman, D.G., Bland, J.M. "Diagnostic tests 1: sensitivity and specificity", BMJ 308,
           1552, 1994.
    """
    y, s = check_binary_inputs(y_true, score)
    check_alpha(alpha)
    source = "given"
    if isinstance(threshold, str):
        if threshold != "youden":
            raise InputError(f"threshold must be a number or 'youden', got {threshold!r}")
        threshold, source = youden_threshold(y, s), "youden"
    elif not np.isfinite(threshold):
        raise InputError(f"threshold must be finite, got {threshold}")
    pred = s >= threshold
    tp, fp = int(np.sum(pred & y)), int(np.sum(pred & ~y))
    fn, tn = int(np.sum(~pred & y)), int(np.sum(~pred & ~y))
    ks = {"accuracy": (tp + tn, y.size), "sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp)}
    ks.update({"ppv": (tp, tp + fp), "npv": (tn, tn + fn)})
    props = {name: _proportion(k, n, alpha, ci, name) for name, (k, n) in ks.items()}
    f1 = _f1_ci(y, pred, alpha, ci, n_resamples, seed)
    return ThresholdMetrics(float(threshold), source, tp, fp, tn, fn, f1=f1, **props)


def _proportion(k: int, n: int, alpha: float, ci: bool, name: str) -> CI:
    if n == 0:
        warnings.warn(
            f"{name} is undefined at this threshold (its denominator is 0: "
            f"{'nobody is called positive' if name == 'ppv' else 'nobody is called negative'}); NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        return CI(float("nan"), float("nan"), float("nan"), 1 - alpha, "wilson" if ci else "none", 0)
    if not ci:
        return CI(k / n, float("nan"), float("nan"), 1 - alpha, "none", 0)
    low, high = wilson_ci(k, n, alpha)
    return CI(k / n, float(low), float(high), 1 - alpha, "wilson", 0)


def _f1_rows(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """F1 of each row: y, pred of shape (b, n) bool; NaN when TP + FP + FN = 0."""
    tp = np.sum(y & pred, axis=-1)
    wrong = np.sum(y != pred, axis=-1)
    den = 2 * tp + wrong
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), np.nan)


def _f1_ci(y: np.ndarray, pred: np.ndarray, alpha: float, ci: bool, n_resamples: int, seed: int) -> CI:
    if not ci:
        return CI(float(_f1_rows(y[None], pred[None])[0]), float("nan"), float("nan"), 1 - alpha, "none", 0)
    return bootstrap_ci(_f1_rows, y, pred, n_resamples=n_resamples, seed=seed, strata=y, alpha=alpha, what="F1")
