"""ROC AUC with DeLong variance and confidence interval, the paired DeLong test, and one-vs-rest AUC."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from esoct.errors import InputError
from esoct.evaluate.bootstrap import CI, bootstrap_ci, check_alpha

AUC_METHODS = ("delong", "bootstrap")


# --------------------------------------------------------------------------- inputs


def check_binary(y_true, name: str = "y_true") -> np.ndarray:
    """Validate binary outcomes: a 1-D array of 0/1 (or bool) with both classes present.

    Parameters
    ----------
    y_true : array-like, shape (n,)
        Outcome, 1 (``True``) for the positive class.
    name : str
        How the message calls the outcome.

    Returns
    -------
    numpy.ndarray of bool

    Raises
    ------
    esoct.errors.InputError
        (a ``ValueError``) when a value is not 0/1 (the message says how many) or when only one
        class is present ("AUC is undefined").
    """
    y = as_binary(y_true, name)
    if y.size == 0:
        raise InputError(f"{name} is empty")
    n_pos = int(y.sum())
    if n_pos in (0, y.size):
        raise InputError(
            f"only one class present in {name} ({n_pos} positive, {y.size - n_pos} negative of {y.size}): "
            "the AUC is undefined; both classes are needed"
        )
    return y


def as_binary(y_true, name: str = "y_true") -> np.ndarray:
    """Validate 0/1 (or bool) outcomes without requiring both classes.

    Parameters
    ----------
    y_true : array-like, shape (n,)
        Outcome.
    name : str
        How the message calls the outcome.

    Returns
    -------
    numpy.ndarray of bool
    """
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise InputError(f"{name} must be a 1-D array, got shape {y.shape}")
    if y.dtype == bool:
        return y
    try:
        values = y.astype(float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be 0/1 (or bool), got values such as {y[:3].tolist()!r}") from None
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise InputError(f"{name} must be 0/1 (or bool): {int(bad.sum())} value(s) are not, e.g. {y[bad][0]!r}")
    return values == 1.0


def check_scores(score, n: int, name: str = "score") -> np.ndarray:
    """Return ``score`` as a finite float vector of length ``n`` or raise an error naming the count.

    Parameters
    ----------
    score : array-like, shape (n,)
        Predicted scores (higher = more likely positive).
    n : int
        Expected length (that of ``y_true``).
    name : str
        How the message calls the scores.

    Returns
    -------
    numpy.ndarray of float
    """
    try:
        s = np.asarray(score, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numeric") from None
    if s.ndim != 1:
        raise InputError(f"{name} must be a 1-D array, got shape {s.shape}")
    if s.shape[0] != n:
        raise InputError(f"{name} has {s.shape[0]} values but y_true has {n}: the lengths must match")
    n_bad = int((~np.isfinite(s)).sum())
    if n_bad:
        raise InputError(f"{n_bad} of {n} {name} value(s) are NaN or infinite")
    return s


def check_binary_inputs(y_true, score, name: str = "score") -> tuple[np.ndarray, np.ndarray]:
    """Validate a binary outcome and one score per patient (see :func:`check_binary`, :func:`check_scores`).

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome; both classes must be present.
    score : array-like of float, shape (n,)
        Scores; finite, as many as outcomes.
    name : str
        How messages call the scores.

    Returns
    -------
    y : numpy.ndarray of bool
    score : numpy.ndarray of float
    """
    y = as_binary(y_true, "y_true")
    s = check_scores(score, y.shape[0], name)
    return check_binary(y), s


# --------------------------------------------------------------------------- DeLong


def delong_covariance(y_true, *scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of one or more scores on the same patients and their DeLong covariance matrix.

    Fast DeLong (Sun & Xu 2014): with ``m`` positives and ``n`` negatives, let ``T_Z`` be the
    midranks of a score among all patients, ``T_X`` those of the positives among the positives
    and ``T_Y`` those of the negatives among the negatives. The structural components are
    ``V10_i = (T_Z_i - T_X_i) / n`` for each positive and ``V01_j = 1 - (T_Z_j - T_Y_j) / m`` for
    each negative; ``AUC = mean(V10) = mean(V01)`` (ties count 1/2, the Mann-Whitney AUC) and
    ``S = S10 / m + S01 / n`` with ``S10``, ``S01`` the sample covariance matrices (ddof 1) of
    the components across scores. Three sorts per score: O(k n log n).

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome; both classes must be present.
    *scores : array-like, shape (n,)
        One or more scores, higher meaning more likely positive.

    Returns
    -------
    aucs : numpy.ndarray, shape (k,)
    covariance : numpy.ndarray, shape (k, k)

    References
    ----------
    .. [1] DeLong, E.R., DeLong, D.M., Clarke-Pearson, D.L. "Comparing the areas under two or more
           correlated receiver operating characteristic curves: a nonparametric approach",
           Biometrics 44(3), 837-845, 1988.
    .. [2] Sun, X., Xu, W. "Fast implementation of DeLong's algorithm for comparing the areas under
           correlated receiver operating characteristic curves", IEEE Signal Processing Letters
           21(11), 1389-1393, 2014.
    """
    if not scores:
        raise InputError("delong_covariance needs at least one score")
    y = as_binary(y_true, "y_true")
    names = ["score"] if len(scores) == 1 else [f"score {k + 1}" for k in range(len(scores))]
    s = np.vstack([check_scores(sc, y.shape[0], name) for sc, name in zip(scores, names)])
    y = check_binary(y)
    v10, v01 = _structural_components(y, s)
    m, n = v10.shape[1], v01.shape[1]
    aucs = v10.mean(axis=1)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def _structural_components(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placement values: V10 (k, m) for the positives and V01 (k, n) for the negatives."""
    x, z = scores[:, y], scores[:, ~y]
    m, n = x.shape[1], z.shape[1]
    t_all = stats.rankdata(scores, axis=1)
    t_x = stats.rankdata(x, axis=1)
    t_z = stats.rankdata(z, axis=1)
    v10 = (t_all[:, y] - t_x) / n
    v01 = 1.0 - (t_all[:, ~y] - t_z) / m
    return v10, v01


def delong_auc(y_true, score) -> tuple[float, float]:
    """AUC and its DeLong variance.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome; both classes must be present.
    score : array-like of float, shape (n,)
        Predicted score, higher meaning more likely positive; finite.

    Returns
    -------
    auc : float
        Equals ``sklearn.metrics.roc_auc_score(y_true, score)``.
    variance : float
        DeLong's variance estimate ``var(V10)/m + var(V01)/n``.

    Raises
    ------
    esoct.errors.InputError
        (a ``ValueError``) for one class only, a value of ``y_true`` that is not 0/1, NaN or
        infinite scores (the message says how many), or different lengths.

    References
    ----------
    .. [1] DeLong, E.R., DeLong, D.M., Clarke-Pearson, D.L. Biometrics 44(3), 837-845, 1988.
    .. [2] Sun, X., Xu, W. "Fast implementation of DeLong's algorithm for comparing the areas under
           correlated receiver operating characteristic curves", IEEE Signal Processing Letters
           21(11), 1389-1393, 2014.
    """
    aucs, cov = delong_covariance(y_true, score)
    return float(aucs[0]), float(cov[0, 0])


def auc_ci(
    y_true,
    score,
    alpha: float = 0.05,
    method: str = "delong",
    n_resamples: int = 1000,
    seed: int = 0,
    stratified: bool = True,
    bootstrap_method: str = "percentile",
) -> CI:
    """AUC with a DeLong or bootstrap confidence interval.

    ``method="delong"``: ``AUC +/- z_(1-alpha/2) sqrt(var_DeLong)``, clipped to [0, 1], as pROC's
    ``ci.auc(method="delong")`` (no logit transform). A perfect (or perfectly wrong) score has
    DeLong variance 0 and a zero-width interval; a ``RuntimeWarning`` says so.

    ``method="bootstrap"``: the AUC of every resample (all at once, :func:`batch_auc`),
    stratified by outcome by default (every resample keeps the numbers of positives and
    negatives, pROC's default ``boot.stratified=TRUE``); percentile or BCa interval.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome.
    score : array-like of float, shape (n,)
        Predicted score.
    alpha : float
        1 - confidence level.
    method : {"delong", "bootstrap"}
        Interval method.
    n_resamples, seed : int
        Bootstrap settings (``method="bootstrap"`` only).
    stratified : bool
        Resample within the positives and within the negatives.
    bootstrap_method : {"percentile", "bca"}
        Bootstrap interval type.

    Returns
    -------
    CI

    References
    ----------
    .. [1] DeLong, E.R. et al. Biometrics 44(3), 837-845, 1988.
    .. [2] Sun, X., Xu, W. IEEE Signal Processing Letters 21(11), 1389-1393, 2014.
    .. [3] Robin, X. et al. "pROC: an open-source package for R and S+ to analyze and compare ROC
           curves", BMC Bioinformatics 12, 77, 2011.
    """
    y, s = check_binary_inputs(y_true, score)
    if method == "delong":
        auc, var = delong_auc(y, s)
        return _normal_ci(auc, var, alpha, "delong", clip=(0.0, 1.0), what="AUC")
    if method == "bootstrap":
        return bootstrap_ci(
            batch_auc,
            y,
            s,
            n_resamples=n_resamples,
            seed=seed,
            strata=y if stratified else None,
            method=bootstrap_method,
            alpha=alpha,
            what="AUC",
        )
    raise InputError(f"method must be one of {AUC_METHODS}, got {method!r}")


def _normal_ci(estimate: float, variance: float, alpha: float, method: str, clip=None, what: str = "AUC") -> CI:
    check_alpha(alpha)
    if variance <= 0:
        warnings.warn(
            f"the DeLong variance of the {what} is 0 (perfect separation of the classes): the interval has zero width",
            RuntimeWarning,
            stacklevel=3,
        )
    half = stats.norm.ppf(1 - alpha / 2) * np.sqrt(max(variance, 0.0))
    low, high = estimate - half, estimate + half
    if clip is not None:
        low, high = max(low, clip[0]), min(high, clip[1])
    return CI(float(estimate), float(low), float(high), 1 - alpha, method, 0)


@dataclass(frozen=True)
class DeLongTest:
    """Paired DeLong test of two AUCs on the same patients.

    Unpacks as ``auc_a, auc_b, z, p_value = delong_test(...)``. ``difference`` is
    ``auc_a - auc_b`` with its normal confidence interval (pROC's ``conf.int``), ``covariance``
    the 2x2 DeLong covariance matrix of the two AUCs.
    """

    auc_a: float
    auc_b: float
    z: float
    p_value: float
    difference: CI
    covariance: np.ndarray

    def __iter__(self):
        return iter((self.auc_a, self.auc_b, self.z, self.p_value))


def delong_test(y_true, score_a, score_b, alpha: float = 0.05) -> DeLongTest:
    """Two-sided paired DeLong test of ``AUC_a = AUC_b`` for two scores of the same patients.

    ``z = (AUC_a - AUC_b) / sqrt(S_aa + S_bb - 2 S_ab)`` with ``S`` the DeLong covariance
    (:func:`delong_covariance`), ``p = 2 (1 - Phi(|z|))``; pROC's
    ``roc.test(roc_a, roc_b, method="delong", paired=TRUE)``. Two scores with identical
    structural components (e.g. the same ranking) give ``z = 0`` and ``p = 1``.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome.
    score_a, score_b : array-like of float, shape (n,)
        The two models' scores on the same patients, in the same order.
    alpha : float
        1 - confidence level of the interval of the difference.

    Returns
    -------
    DeLongTest
        Unpacks as ``(auc_a, auc_b, z, p_value)``.

    References
    ----------
    .. [1] DeLong, E.R., DeLong, D.M., Clarke-Pearson, D.L. "Comparing the areas under two or more
           correlated receiver operating characteristic curves: a nonparametric approach",
           Biometrics 44(3), 837-845, 1988.
    .. [2] Sun, X., Xu, W. IEEE Signal Processing Letters 21(11), 1389-1393, 2014.
    """
    check_alpha(alpha)
    aucs, cov = delong_covariance(y_true, score_a, score_b)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 1e-15 * max(cov[0, 0] + cov[1, 1], 1e-300):
        z = 0.0 if abs(diff) < 1e-15 else float(np.sign(diff) * np.inf)
        var = 0.0
    else:
        z = diff / np.sqrt(var)
    p = float(2 * stats.norm.sf(abs(z)))
    half = stats.norm.ppf(1 - alpha / 2) * np.sqrt(var)
    difference = CI(diff, float(diff - half), float(diff + half), 1 - alpha, "delong", 0)
    return DeLongTest(float(aucs[0]), float(aucs[1]), float(z), p, difference, cov)


# --------------------------------------------------------------------------- vectorised AUC


def batch_auc(y_true: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each row: many resamples at once, ties counted 1/2.

    Each row is sorted once (O(b n log n) in all); the midranks of tied scores come from the
    start and end of each run of equal values, and
    ``AUC = (sum of the positives' midranks - m (m + 1) / 2) / (m n)``.

    Parameters
    ----------
    y_true : numpy.ndarray of bool or {0, 1}, shape (b, n)
        Outcome of each resample.
    score : numpy.ndarray of float, shape (b, n)
        Scores of each resample.

    Returns
    -------
    numpy.ndarray, shape (b,)
        NaN for a row with one class only.

    References
    ----------
    .. [1] Hanley, J.A., McNeil, B.J. "The meaning and use of the area under a receiver operating
           characteristic (ROC) curve", Radiology 143(1), 29-36, 1982.
    """
    positive = np.atleast_2d(np.asarray(y_true)).astype(bool)
    score = np.atleast_2d(np.asarray(score, dtype=float))
    ranks = _row_midranks(score)
    n_pos = positive.sum(axis=1).astype(float)
    n_neg = positive.shape[1] - n_pos
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _row_midranks(score: np.ndarray) -> np.ndarray:
    """1-based midranks of each row of ``score`` (shape (b, n)), as ``scipy.stats.rankdata(axis=1)``."""
    b, n = score.shape
    order = np.argsort(score, axis=1, kind="stable")
    s = np.take_along_axis(score, order, axis=1)
    pos = np.broadcast_to(np.arange(n), (b, n))
    starts = np.ones((b, n), dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    ends = np.ones((b, n), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, pos, n)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((b, n))
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks


# --------------------------------------------------------------------------- one-vs-rest


@dataclass(frozen=True)
class OvRAUC:
    """One-vs-rest AUC per class (DeLong CI) and their macro average (bootstrap CI)."""

    classes: tuple
    per_class: dict
    macro: CI
    n_per_class: dict

    def table(self) -> pd.DataFrame:
        """One row per class and one for the macro average: ``auc``, ``low``, ``high``, ``method``, ``n``."""
        rows = [
            {
                "class": c,
                "auc": ci.estimate,
                "low": ci.low,
                "high": ci.high,
                "method": ci.method,
                "n": self.n_per_class[c],
            }
            for c, ci in self.per_class.items()
        ]
        rows.append(
            {
                "class": "macro",
                "auc": self.macro.estimate,
                "low": self.macro.low,
                "high": self.macro.high,
                "method": self.macro.method,
                "n": int(sum(self.n_per_class.values())),
            }
        )
        return pd.DataFrame(rows)


def ovr_auc(
    y_true,
    proba,
    classes=None,
    alpha: float = 0.05,
    n_resamples: int = 1000,
    seed: int = 0,
) -> OvRAUC:
    """One-vs-rest AUC of each class with its DeLong CI, and the macro average with a bootstrap CI.

    Class ``c``'s AUC is that of column ``c`` of ``proba`` for ``y_true == c`` against all other
    patients; the macro average is their unweighted mean, equal to
    ``sklearn.metrics.roc_auc_score(y_true, proba, multi_class="ovr", average="macro")``. Its
    interval is a percentile bootstrap stratified by class (every resample keeps the class
    sizes), all resamples at once.

    Parameters
    ----------
    y_true : array-like, shape (n,)
        Class labels (e.g. ``"T1"`` .. ``"T4"`` or 0..3).
    proba : array-like of float, shape (n, k)
        Predicted probability (or score) of each class; column ``j`` belongs to ``classes[j]``.
    classes : sequence, optional
        The labels of ``proba``'s columns; default: the sorted unique labels of ``y_true``
        (scikit-learn's convention).
    alpha : float
        1 - confidence level.
    n_resamples, seed : int
        Bootstrap settings of the macro average.

    Returns
    -------
    OvRAUC

    Raises
    ------
    esoct.errors.InputError
        ``proba`` not of shape (n, k) with k >= 2, a column count that does not match
        ``classes``, a label of ``y_true`` not in ``classes``, a class without patients, or NaN /
        infinite probabilities.

    References
    ----------
    .. [1] DeLong, E.R. et al. Biometrics 44(3), 837-845, 1988.
    .. [2] Fawcett, T. "An introduction to ROC analysis", Pattern Recognition Letters 27(8),
           861-874, 2006 (one-vs-rest class reference formulation).
    """
    y, p, classes = _multiclass_inputs(y_true, proba, classes)
    onehot = y[:, None] == np.arange(len(classes))[None, :]
    per_class, counts = {}, {}
    for j, c in enumerate(classes):
        auc, var = delong_auc(onehot[:, j], p[:, j])
        per_class[c] = _normal_ci(auc, var, alpha, "delong", clip=(0.0, 1.0), what=f"AUC of class {c!r}")
        counts[c] = int(onehot[:, j].sum())
    macro = bootstrap_ci(
        _macro_auc_rows, onehot, p, n_resamples=n_resamples, seed=seed, strata=y, alpha=alpha, what="macro AUC"
    )
    return OvRAUC(tuple(classes), per_class, macro, counts)


def _macro_auc_rows(onehot: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Mean one-vs-rest AUC of each resample: onehot (b, n, k) bool, proba (b, n, k)."""
    k = onehot.shape[2]
    return np.mean([batch_auc(onehot[:, :, j], proba[:, :, j]) for j in range(k)], axis=0)


def _multiclass_inputs(y_true, proba, classes) -> tuple[np.ndarray, np.ndarray, list]:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise InputError(f"y_true must be a 1-D array of class labels, got shape {y.shape}")
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise InputError(f"proba must have shape (n, k) with k >= 2 classes, got {p.shape}")
    if p.shape[0] != y.shape[0]:
        raise InputError(f"proba has {p.shape[0]} rows but y_true has {y.shape[0]}: the lengths must match")
    n_bad = int((~np.isfinite(p)).any(axis=1).sum())
    if n_bad:
        raise InputError(f"{n_bad} of {p.shape[0]} rows of proba hold NaN or infinite values")
    given = classes is not None
    classes = [c.item() if isinstance(c, np.generic) else c for c in (classes if given else np.unique(y))]
    if len(classes) != p.shape[1]:
        hint = "" if given else " in y_true; pass classes= to name proba's columns"
        raise InputError(f"proba has {p.shape[1]} columns but there are {len(classes)} classes {classes!r}{hint}")
    lookup = {c: j for j, c in enumerate(classes)}
    unknown = [v for v in np.unique(y).tolist() if v not in lookup]
    if unknown:
        raise InputError(f"y_true holds label(s) {unknown!r} that are not among the classes {classes!r}")
    codes = np.array([lookup[v] for v in y.tolist()], dtype=np.int64)
    counts = np.bincount(codes, minlength=len(classes))
    empty = [classes[j] for j in np.flatnonzero(counts == 0)]
    if empty:
        raise InputError(f"class(es) {empty!r} have no patients in y_true: their one-vs-rest AUC is undefined")
    return codes, p, classes


# --------------------------------------------------------------------------- curve


def roc_curve_points(y_true, score, drop_intermediate: bool = True) -> pd.DataFrame:
    """The ROC curve's points: ``sklearn.metrics.roc_curve`` as a table.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome.
    score : array-like of float, shape (n,)
        Predicted score; a patient is called positive when ``score >= threshold``.
    drop_intermediate : bool
        Drop collinear points (scikit-learn's default).

    Returns
    -------
    pandas.DataFrame
        Columns ``fpr``, ``tpr``, ``threshold`` (the first threshold is ``inf``: nobody positive).

    References
    ----------
    .. [1] Fawcett, T. "An introduction to ROC analysis", Pattern Recognition Letters 27(8),
           861-874, 2006.
    """
    from sklearn.metrics import roc_curve

    y, s = check_binary_inputs(y_true, score)
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=drop_intermediate)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thresholds})
