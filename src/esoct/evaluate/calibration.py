"""Calibration of predicted probabilities: Brier score, reliability curve, intercept and slope, Hosmer-Lemeshow."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit, log_expit, logit

from esoct.errors import InputError
from esoct.evaluate.bootstrap import CI, bootstrap_ci, check_alpha
from esoct.evaluate.roc import as_binary, check_binary, check_scores
from esoct.evaluate.threshold import wilson_ci

STRATEGIES = ("quantile", "uniform")

#: Newton iterations and step tolerance of the logistic recalibration fits.
_MAX_ITER, _TOL = 100, 1e-10


# --------------------------------------------------------------------------- inputs


def check_proba(y_true, proba, need_both_classes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Validate 0/1 outcomes and probabilities in [0, 1] of the same length.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome.
    proba : array-like of float, shape (n,)
        Predicted probability of the positive class.
    need_both_classes : bool
        Also require positives and negatives.

    Returns
    -------
    y : numpy.ndarray of bool
    proba : numpy.ndarray of float

    Raises
    ------
    esoct.errors.InputError
        Values of ``y_true`` not 0/1, lengths that differ, NaN / infinite probabilities or
        probabilities outside [0, 1] (the message says how many), one class only when
        ``need_both_classes``.
    """
    y = as_binary(y_true, "y_true")
    p = check_scores(proba, y.shape[0], "probability")
    outside = int(((p < 0) | (p > 1)).sum())
    if outside:
        raise InputError(f"{outside} of {p.size} probabilities are outside [0, 1] (min {p.min()}, max {p.max()})")
    if need_both_classes:
        y = check_binary(y)
    return y, p


# --------------------------------------------------------------------------- Brier


def brier(
    y_true,
    proba,
    ci: bool = True,
    alpha: float = 0.05,
    n_resamples: int = 1000,
    seed: int = 0,
    stratified: bool = False,
) -> CI:
    """Brier score ``mean((p - y)^2)`` with a percentile bootstrap CI.

    The estimate equals ``sklearn.metrics.brier_score_loss(y_true, proba)``. The interval
    resamples patients (all resamples at once); ``stratified=True`` keeps the numbers of
    positives and negatives fixed, which leaves out the variability of the prevalence.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome.
    proba : array-like of float, shape (n,)
        Predicted probability of the positive class, in [0, 1].
    ci : bool
        Compute the interval (else ``low``/``high`` are NaN, ``method`` ``"none"``).
    alpha : float
        1 - confidence level.
    n_resamples, seed : int
        Bootstrap settings.
    stratified : bool
        Resample within outcome classes.

    Returns
    -------
    CI

    References
    ----------
    .. [1] Brier, G.W. "Verification of forecasts expressed in terms of probability", Monthly
           Weather Review 78(1), 1-3, 1950.
    """
    y, p = check_proba(y_true, proba)
    if not ci:
        return CI(float(np.mean((p - y) ** 2)), float("nan"), float("nan"), 1 - alpha, "none", 0)
    return bootstrap_ci(
        _brier_rows,
        y.astype(float),
        p,
        n_resamples=n_resamples,
        seed=seed,
        strata=y if stratified else None,
        alpha=alpha,
        what="Brier score",
    )


def _brier_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.mean((p - y) ** 2, axis=-1)


# --------------------------------------------------------------------------- reliability curve


def reliability_curve(y_true, proba, n_bins: int = 10, strategy: str = "quantile", alpha: float = 0.05) -> pd.DataFrame:
    """Observed event fraction against mean predicted probability in bins of the prediction.

    Bins and values are those of ``sklearn.calibration.calibration_curve(y_true, proba,
    n_bins=n_bins, strategy=strategy)``: ``"uniform"`` cuts [0, 1] into ``n_bins`` equal
    widths, ``"quantile"`` at the quantiles of ``proba``; a probability equal to an inner edge
    goes to the upper bin; empty bins are left out. Each bin adds its count and a Wilson
    interval of the observed fraction.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome.
    proba : array-like of float, shape (n,)
        Predicted probability, in [0, 1].
    n_bins : int
        Number of bins (before dropping empty ones).
    strategy : {"quantile", "uniform"}
        Bin edges.
    alpha : float
        1 - confidence level of the per-bin intervals.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin: ``bin`` (0-based), ``edge_low``, ``edge_high``, ``n``,
        ``prob_pred`` (mean prediction), ``prob_true`` (observed fraction), ``low``, ``high``.

    References
    ----------
    .. [1] Niculescu-Mizil, A., Caruana, R. "Predicting good probabilities with supervised
           learning", ICML 2005, 625-632.
    """
    y, p = check_proba(y_true, proba)
    if int(n_bins) < 1:
        raise InputError(f"n_bins must be at least 1, got {n_bins}")
    edges = _bin_edges(p, int(n_bins), strategy)
    ids = np.searchsorted(edges[1:-1], p)
    total = np.bincount(ids, minlength=n_bins)
    sums = np.bincount(ids, weights=p, minlength=n_bins)
    events = np.bincount(ids, weights=y.astype(float), minlength=n_bins)
    keep = np.flatnonzero(total)
    low, high = wilson_ci(events[keep], total[keep], alpha)
    return pd.DataFrame(
        {
            "bin": keep,
            "edge_low": edges[keep],
            "edge_high": edges[keep + 1],
            "n": total[keep],
            "prob_pred": sums[keep] / total[keep],
            "prob_true": events[keep] / total[keep],
            "low": low,
            "high": high,
        }
    )


def _bin_edges(p: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    if strategy == "quantile":
        return np.percentile(p, np.linspace(0, 1, n_bins + 1) * 100)
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    raise InputError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


# --------------------------------------------------------------------------- intercept and slope


@dataclass(frozen=True)
class CalibrationFit:
    """Calibration intercept (calibration-in-the-large) and slope with Wald intervals."""

    intercept: CI
    slope: CI
    n_clipped: int

    def as_dict(self) -> dict:
        """Plain values for ``metrics.json``."""
        return {"intercept": self.intercept.as_dict(), "slope": self.slope.as_dict(), "n_clipped": self.n_clipped}


def calibration_intercept_slope(y_true, proba, alpha: float = 0.05, eps: float = 1e-8) -> CalibrationFit:
    """Logistic recalibration: calibration slope and calibration-in-the-large intercept.

    With the linear predictor ``lp = logit(p)``:

    * **slope** ``b`` of ``logit P(y = 1) = a + b lp`` (unpenalised logistic regression, the
      coefficient of ``scikit-learn``'s ``LogisticRegression(penalty=None)`` on ``lp``); ``b < 1``
      means the predictions are too extreme (overfitting), ``b > 1`` too moderate;
    * **intercept** ``a`` of ``logit P(y = 1) = a + lp`` (``lp`` as an offset, slope fixed at 1):
      calibration-in-the-large, ``a > 0`` when the model under-predicts the event rate.

    Both are maximum-likelihood fits by Newton's method (with step halving) on one or two
    parameters; the intervals are Wald intervals from the observed information. Perfect
    calibration gives ``a = 0``, ``b = 1``. When some probabilities are exactly 0 or 1 (infinite
    ``lp``) all are clipped to ``[eps, 1 - eps]``, with a ``RuntimeWarning`` counting the 0s and 1s. A fit
    that does not converge (e.g. ``lp`` separates the classes perfectly) gives NaN with a
    ``RuntimeWarning``.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome; both classes must be present.
    proba : array-like of float, shape (n,)
        Predicted probability, in [0, 1].
    alpha : float
        1 - confidence level.
    eps : float
        Clipping of probabilities of exactly 0 and 1.

    Returns
    -------
    CalibrationFit

    References
    ----------
    .. [1] Cox, D.R. "Two further applications of a model for binary regression", Biometrika
           45(3/4), 562-565, 1958.
    .. [2] Van Calster, B., McLernon, D.J., van Smeden, M., Wynants, L., Steyerberg, E.W.
           "Calibration: the Achilles heel of predictive analytics", BMC Medicine 17, 230, 2019.
    .. [3] Steyerberg, E.W. "Clinical Prediction Models", 2nd ed., Springer, 2019, chapter 15.
    """
    y, p = check_proba(y_true, proba, need_both_classes=True)
    check_alpha(alpha)
    clipped = int(((p == 0) | (p == 1)).sum())
    if clipped:
        warnings.warn(
            f"{clipped} probabilities of exactly 0 or 1 (infinite logit) were clipped to [{eps}, 1 - {eps}]",
            RuntimeWarning,
            stacklevel=2,
        )
    lp = logit(np.clip(p, eps, 1 - eps) if clipped else p)
    yf = y.astype(float)
    z = stats.norm.ppf(1 - alpha / 2)
    a_fix, a_se = _fit_logistic(yf, np.ones((y.size, 1)), lp, np.zeros(1))
    (_, b), (_, b_se) = _fit_logistic(
        yf, np.column_stack([np.ones(y.size), lp]), np.zeros(y.size), np.array([0.0, 1.0])
    )
    intercept = CI(float(a_fix[0]), float(a_fix[0] - z * a_se[0]), float(a_fix[0] + z * a_se[0]), 1 - alpha, "wald", 0)
    slope = CI(float(b), float(b - z * b_se), float(b + z * b_se), 1 - alpha, "wald", 0)
    return CalibrationFit(intercept, slope, clipped)


def _fit_logistic(y: np.ndarray, x: np.ndarray, offset: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood logistic regression ``logit P = x beta + offset``: coefficients and standard errors."""
    loglik = _loglik(y, x @ beta + offset)
    for _ in range(_MAX_ITER):
        mu = expit(x @ beta + offset)
        info = x.T @ (x * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(info, x.T @ (y - mu))
        except np.linalg.LinAlgError:
            break
        beta, loglik, ok = _halve_until_better(y, x, offset, beta, step, loglik)
        if not ok or np.max(np.abs(step)) < _TOL:
            break
    else:
        return _not_converged(beta.size)
    if not np.all(np.isfinite(beta)) or np.max(np.abs(beta)) > 1e6 or np.max(np.abs(step)) > 1e-6:
        return _not_converged(beta.size)
    mu = expit(x @ beta + offset)
    cov = np.linalg.inv(x.T @ (x * (mu * (1 - mu))[:, None]))
    return beta, np.sqrt(np.diag(cov))


def _halve_until_better(y, x, offset, beta, step, loglik) -> tuple[np.ndarray, float, bool]:
    for _ in range(30):
        new = beta + step
        new_ll = _loglik(y, x @ new + offset)
        if new_ll >= loglik - 1e-12 * abs(loglik):
            return new, new_ll, True
        step = step / 2
    return beta, loglik, False


def _loglik(y: np.ndarray, eta: np.ndarray) -> float:
    return float(np.sum(y * log_expit(eta) + (1 - y) * log_expit(-eta)))


def _not_converged(k: int) -> tuple[np.ndarray, np.ndarray]:
    warnings.warn(
        "the logistic recalibration fit did not converge (logit(p) may separate the classes "
        "perfectly); the calibration intercept/slope is NaN",
        RuntimeWarning,
        stacklevel=4,
    )
    return np.full(k, np.nan), np.full(k, np.nan)


# --------------------------------------------------------------------------- Hosmer-Lemeshow


class HosmerLemeshow(NamedTuple):
    """Hosmer-Lemeshow goodness-of-fit test: chi-square statistic, degrees of freedom, p-value."""

    statistic: float
    df: int
    p_value: float


def hosmer_lemeshow(y_true, proba, n_groups: int = 10) -> HosmerLemeshow:
    """Hosmer-Lemeshow test over groups of predicted risk (deciles by default).

    Groups are the quantile bins of :func:`reliability_curve` (empty groups dropped, ``G``
    left). ``H = sum_g (O_g - E_g)^2 / (E_g (1 - E_g / n_g))`` with ``O_g`` the events,
    ``E_g`` the sum of the predictions and ``n_g`` the size of group ``g``; ``H`` is compared
    with a chi-square on ``G - 2`` degrees of freedom. A group whose predictions are all 0 or all
    1 has ``E_g (1 - E_g / n_g) = 0`` and makes the test undefined (an error says so).

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome.
    proba : array-like of float, shape (n,)
        Predicted probability, in [0, 1].
    n_groups : int
        Number of risk groups (at least 3).

    Returns
    -------
    HosmerLemeshow

    References
    ----------
    .. [1] Hosmer, D.W., Lemeshow, S. "Goodness of fit tests for the multiple logistic regression
           model", Communications in Statistics - Theory and Methods 9(10), 1043-1069, 1980.
    """
    if int(n_groups) < 3:
        raise InputError(f"the Hosmer-Lemeshow test needs at least 3 groups, got {n_groups}")
    table = reliability_curve(y_true, proba, n_bins=int(n_groups), strategy="quantile")
    n = table["n"].to_numpy(float)
    observed = table["prob_true"].to_numpy() * n
    expected = table["prob_pred"].to_numpy() * n
    var = expected * (1 - expected / n)
    if np.any(var <= 0):
        raise InputError("Hosmer-Lemeshow undefined: a risk group has all predictions equal to 0 or 1")
    df = len(table) - 2
    if df < 1:
        raise InputError(f"Hosmer-Lemeshow needs at least 3 non-empty risk groups, got {len(table)}")
    statistic = float(np.sum((observed - expected) ** 2 / var))
    return HosmerLemeshow(statistic, df, float(stats.chi2.sf(statistic, df)))
