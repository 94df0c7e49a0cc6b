"""Time-dependent AUC, Brier score over time, integrated Brier score and survival calibration, with bootstrap CIs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from esoct.errors import InputError
from esoct.evaluate.concordance import (
    CI,
    TIED_TOL,
    _as_struct,
    _cumsum0,
    as_surv,
    check_risk,
    percentile_ci,
    resample_weights,
    surv_arrays,
)


@dataclass(frozen=True)
class TimeCurve:
    """A metric at each time of a grid with pointwise bootstrap intervals, and its summary over time.

    ``replicates`` (resamples x times) are the bootstrap curves; ``summary`` is the mean AUC or the
    integrated Brier score with its own interval.
    """

    times: np.ndarray
    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    level: float
    n_resamples: int
    summary: CI
    replicates: np.ndarray | None = None

    def to_frame(self) -> pd.DataFrame:
        """One row per time: ``time``, ``estimate``, ``low``, ``high``."""
        return pd.DataFrame({"time": self.times, "estimate": self.estimate, "low": self.low, "high": self.high})


# --------------------------------------------------------------------------- shared checks


def _test_data(survival_test) -> tuple[np.ndarray, np.ndarray]:
    event, time = surv_arrays(survival_test)
    if not event.any():
        raise InputError("no events in the test set: the metric is undefined (all patients are censored)")
    return event, time


def _grid(times, time: np.ndarray) -> np.ndarray:
    grid = np.atleast_1d(np.asarray(times, dtype=float))
    if grid.ndim != 1 or not np.all(np.isfinite(grid)):
        raise InputError("times must be a 1-D array of finite values")
    if np.any(np.diff(grid) <= 0):
        raise InputError("times must be strictly increasing (the columns of the predictions follow them)")
    if grid[0] < time.min() or grid[-1] >= time.max():
        raise InputError(
            f"times must lie within the follow-up of the test set [{time.min()}, {time.max()}); "
            f"got [{grid[0]}, {grid[-1]}]"
        )
    return grid


def _check_follow_up(y_train: np.ndarray, test_time: np.ndarray) -> None:
    """IPCW needs the training centres' censoring distribution at every test time (scikit-survival
    raises a bare ValueError otherwise): name the patients' times and what to do."""
    from sksurv.nonparametric import CensoringDistributionEstimator

    censoring = CensoringDistributionEstimator().fit(y_train)  # the estimator brier_score fits
    last = float(censoring.unique_time_[-1])
    beyond = test_time > last
    if censoring.prob_[-1] > 0 and beyond.any():
        raise InputError(
            f"{int(beyond.sum())} test patient(s) were followed beyond the training follow-up ({last:g}, up to "
            f"{float(test_time.max()):g}): the inverse-probability-of-censoring weights are undefined there. "
            f"Censor the test set at {last:g} (esoct.evaluate.survival_metrics.censor_at) or score only the "
            f"patients within it")


def censor_at(survival, horizon: float) -> np.ndarray:
    """Administrative censoring: follow-up beyond ``horizon`` is cut to it and counts as censored.

    Parameters
    ----------
    survival : structured array or (event, time) pair
        Event indicator and time per patient.
    horizon : float
        Last time kept, same unit as the times.

    Returns
    -------
    structured array, shape (n_patients,)
        scikit-survival's ``(event, time)`` array.
    """
    event, time = surv_arrays(survival)
    after = time > horizon
    return as_surv(np.where(after, False, event.astype(bool)), np.where(after, float(horizon), time))


def _curve(estimate: np.ndarray, replicates: np.ndarray, grid: np.ndarray, alpha: float, summary: CI, what: str):
    bad = ~np.isfinite(replicates).all(axis=1)
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} of {len(bad)} bootstrap resamples left the {what} undefined at some time "
            "(no cases or no controls there); the pointwise intervals use the others",
            RuntimeWarning,
            stacklevel=3,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low = np.nanquantile(replicates, alpha / 2, axis=0)
        high = np.nanquantile(replicates, 1 - alpha / 2, axis=0)
    return TimeCurve(grid, estimate, low, high, 1 - alpha, len(replicates), summary, replicates)


# --------------------------------------------------------------------------- time-dependent AUC


def time_dependent_auc(
    survival_train,
    survival_test,
    risk,
    times,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    tied_tol: float = TIED_TOL,
) -> TimeCurve:
    """Cumulative/dynamic AUC at each time and its mean over time, with bootstrap intervals.

    The estimates are scikit-survival's ``cumulative_dynamic_auc`` (cases: event at or before t,
    weighted by 1/G(T_i); controls: still at risk after t; the mean weights AUC(t) by the test set's
    Kaplan-Meier decrements). The intervals resample the test patients with the censoring
    distribution of ``survival_train`` held fixed; each resample's AUC(t) is computed from
    multiplicity weights with one cumulative sum over the risk order, and its mean from a weighted
    Kaplan-Meier, so it equals ``cumulative_dynamic_auc`` on the resampled arrays.

    Parameters
    ----------
    survival_train : structured array, shape (n_train,)
        Training survival data (censoring distribution).
    survival_test : structured array, shape (n,)
        Test survival data.
    risk : array-like, shape (n,) or (n, k)
        Risk scores; one column per time for time-dependent risks.
    times : array-like, shape (k,)
        Strictly increasing times within the test follow-up.
    n_resamples, seed, alpha : int, int, float
        Bootstrap settings.
    tied_tol : float
        Risks closer than this are tied.

    Returns
    -------
    TimeCurve
        ``estimate`` is AUC(t); ``summary`` the mean AUC (with one time, AUC at that time).

    References
    ----------
    .. [1] Uno, H., Cai, T., Tian, L., Wei, L.J. "Evaluating prediction rules for t-year survivors
           with censored regression models", JASA 102, 527-537, 2007.
    .. [2] Lambert, J., Chevret, S. "Summary measure of discrimination in survival models based on
           cumulative/dynamic time-dependent ROC curves", Stat Methods Med Res, 2014.
    """
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.nonparametric import CensoringDistributionEstimator

    event, time = _test_data(survival_test)
    grid = _grid(times, time)
    risk2d = _risk_matrix(risk, len(time), len(grid))
    y_train, y_test = _as_struct(survival_train), as_surv(event, time)
    auc, mean_auc = cumulative_dynamic_auc(y_train, y_test, risk2d, grid, tied_tol=tied_tol)
    ipcw = CensoringDistributionEstimator().fit(y_train).predict_ipcw(y_test)
    blocks = [
        _auc_block(w, time, event, ipcw, risk2d, grid, tied_tol) for w in resample_weights(len(time), n_resamples, seed)
    ]
    rep_auc, rep_mean = (np.concatenate(part) for part in zip(*blocks))
    summary = percentile_ci(float(mean_auc), rep_mean, alpha, "mean AUC")
    return _curve(auc, rep_auc, grid, alpha, summary, "AUC")


def _risk_matrix(risk, n: int, k: int) -> np.ndarray:
    arr = np.asarray(risk, dtype=float)
    if arr.ndim == 1:
        return np.repeat(check_risk(arr, n)[:, None], k, axis=1)
    if arr.shape != (n, k):
        raise InputError(f"risk must have shape ({n},) or ({n}, {k}), got {arr.shape}")
    return np.column_stack([check_risk(arr[:, j], n) for j in range(k)])


def _auc_block(weights, time, event, ipcw, risk2d, grid, tied_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """AUC(t) (rows x times) and the mean AUC (rows) for one block of resample weights."""
    auc = np.column_stack(
        [_weighted_auc(weights, time, event, ipcw, risk2d[:, k], t, tied_tol) for k, t in enumerate(grid)]
    )
    mean = _mean_auc(auc, _weighted_km_at(weights, event, time, grid)) if len(grid) > 1 else auc[:, 0]
    return auc, mean


def _weighted_auc(weights, time, event, ipcw, risk, t: float, tied_tol: float) -> np.ndarray:
    """AUC(t) for each row of multiplicity ``weights``: IPCW-weighted Mann-Whitney of cases vs controls."""
    cases = np.flatnonzero(event & (time <= t))
    control = (time > t).astype(np.int64)
    order = np.argsort(risk, kind="stable")
    sorted_risk = risk[order]
    below = _cumsum0(weights[:, order] * control[order])
    lo = np.searchsorted(sorted_risk, risk[cases] - tied_tol, side="left")
    hi = np.searchsorted(sorted_risk, risk[cases] + tied_tol, side="right")
    w_cases = weights[:, cases] * ipcw[cases]
    num = (w_cases * (below[:, lo] + below[:, hi])).sum(axis=1) / 2.0
    den = w_cases.sum(axis=1) * below[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _weighted_km_at(weights: np.ndarray, event: np.ndarray, time: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Kaplan-Meier survival of each resample (rows of multiplicity weights) at the grid times."""
    order = np.argsort(time, kind="stable")
    sorted_time = time[order]
    uniq = np.unique(sorted_time)
    start = np.searchsorted(sorted_time, uniq, side="left")
    end = np.searchsorted(sorted_time, uniq, side="right")
    w = weights[:, order]
    all_c = _cumsum0(w)
    ev_c = _cumsum0(w * event[order])
    at_risk = all_c[:, -1:] - all_c[:, start]
    deaths = ev_c[:, end] - ev_c[:, start]
    ratio = np.divide(deaths, at_risk, out=np.zeros(deaths.shape), where=deaths != 0)
    surv = np.cumprod(1.0 - ratio, axis=1)
    idx = np.searchsorted(uniq, grid, side="right") - 1
    return np.where(idx >= 0, surv[:, np.maximum(idx, 0)], 1.0)


def _mean_auc(auc: np.ndarray, surv_at: np.ndarray) -> np.ndarray:
    """scikit-survival's summary: AUC(t) integrated over the Kaplan-Meier decrements, per resample."""
    d = -np.diff(np.column_stack([np.ones(len(surv_at)), surv_at]), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (auc * d).sum(axis=1) / (1.0 - surv_at[:, -1])


# --------------------------------------------------------------------------- Brier score


def brier_over_time(
    survival_train,
    survival_test,
    surv_prob,
    times,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> TimeCurve:
    """IPCW Brier score at each time and the integrated Brier score, with bootstrap intervals.

    The estimates are scikit-survival's ``brier_score`` and ``integrated_brier_score`` (Graf et al.:
    events before t weighted by 1/G(T_i), patients still at risk by 1/G(t), G from
    ``survival_train``). The Brier score is a mean of per-patient terms, so a resample of the test
    patients is a weighted mean of the same terms: all resamples come from one matrix product. The
    integrated score is the trapezoid rule over ``times`` divided by their range, as scikit-survival.

    Parameters
    ----------
    survival_train : structured array, shape (n_train,)
        Training survival data (censoring distribution).
    survival_test : structured array, shape (n,)
        Test survival data.
    surv_prob : array-like, shape (n, k)
        Predicted probability of surviving beyond ``times[j]``.
    times : array-like, shape (k,)
        Strictly increasing times within the test follow-up.
    n_resamples, seed, alpha : int, int, float
        Bootstrap settings.

    Returns
    -------
    TimeCurve
        ``estimate`` is BS(t); ``summary`` the integrated Brier score (NaN with one time).

    References
    ----------
    .. [1] Graf, E., Schmoor, C., Sauerbrei, W., Schumacher, M. "Assessment and comparison of
           prognostic classification schemes for survival data", Statistics in Medicine 18(17-18),
           2529-2545, 1999.
    """
    from sksurv.metrics import brier_score

    event, time = _test_data(survival_test)
    grid = _grid(times, time)
    prob = _prob_matrix(surv_prob, len(time), len(grid))
    y_train, y_test = _as_struct(survival_train), as_surv(event, time)
    _check_follow_up(y_train, time)
    _, brier = brier_score(y_train, y_test, prob, grid)
    terms = _brier_terms(y_train, event, time, prob, grid)
    rep = np.concatenate([w @ terms / len(time) for w in resample_weights(len(time), n_resamples, seed)])
    if len(grid) > 1:
        ibs = float(np.trapezoid(brier, grid) / (grid[-1] - grid[0]))
        summary = percentile_ci(ibs, np.trapezoid(rep, grid, axis=1) / (grid[-1] - grid[0]), alpha, "IBS")
    else:
        summary = CI(np.nan, np.nan, np.nan, 1 - alpha, "percentile", n_resamples)
    return _curve(brier, rep, grid, alpha, summary, "Brier score")


def integrated_brier(
    survival_train,
    survival_test,
    surv_prob,
    times,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> CI:
    """Integrated Brier score (IPCW) over ``times`` with a bootstrap interval.

    Parameters
    ----------
    survival_train, survival_test, surv_prob, times, n_resamples, seed, alpha
        As in :func:`brier_over_time`; at least two times.

    Returns
    -------
    CI
        Equal to scikit-survival's ``integrated_brier_score`` for the estimate.

    References
    ----------
    .. [1] Graf, E., Schmoor, C., Sauerbrei, W., Schumacher, M. "Assessment and comparison of
           prognostic classification schemes for survival data", Statistics in Medicine 18(17-18),
           2529-2545, 1999.
    """
    if np.atleast_1d(times).shape[0] < 2:
        raise InputError("the integrated Brier score needs at least two time points")
    return brier_over_time(survival_train, survival_test, surv_prob, times, n_resamples, seed, alpha).summary


def _prob_matrix(surv_prob, n: int, k: int) -> np.ndarray:
    prob = np.asarray(surv_prob, dtype=float)
    if prob.ndim == 1 and k == 1:
        prob = prob[:, None]
    if prob.shape != (n, k):
        raise InputError(f"surv_prob must have shape ({n}, {k}) (patients x times), got {prob.shape}")
    n_bad = int((~np.isfinite(prob)).sum())
    if n_bad:
        raise InputError(f"{n_bad} predicted survival probabilities are NaN or infinite")
    n_out = int(((prob < 0) | (prob > 1)).sum())
    if n_out:
        raise InputError(f"{n_out} predicted survival probabilities lie outside [0, 1]")
    return prob


def _brier_terms(y_train, event, time, prob, grid) -> np.ndarray:
    """Per patient and time: the IPCW squared error whose mean over patients is scikit-survival's BS(t)."""
    from sksurv.nonparametric import CensoringDistributionEstimator

    cens = CensoringDistributionEstimator().fit(y_train)
    g_t = cens.predict_proba(grid)
    g_y = cens.predict_proba(time)
    g_t[g_t == 0] = np.inf
    g_y[g_y == 0] = np.inf
    case = (time[:, None] <= grid[None, :]) & event[:, None]
    control = time[:, None] > grid[None, :]
    return prob**2 * case / g_y[:, None] + (1.0 - prob) ** 2 * control / g_t[None, :]


# --------------------------------------------------------------------------- calibration at t


def survival_calibration_at(
    time,
    event,
    t: float,
    surv_prob_at_t,
    n_groups: int = 5,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Predicted vs Kaplan-Meier observed survival at time ``t`` in groups of predicted risk.

    Patients are sorted by predicted risk (1 - predicted survival at ``t``; ties keep input order)
    and cut into ``n_groups`` groups of (nearly) equal size, lowest risk first. Per group: the mean
    predicted survival at ``t`` and the Kaplan-Meier estimate at ``t`` with its log-log confidence
    interval (scikit-survival's ``kaplan_meier_estimator``). A well-calibrated model has
    ``observed`` close to ``predicted`` in every group.

    Parameters
    ----------
    time : array-like, shape (n,)
        Event or censoring time.
    event : array-like of bool or {0, 1}, shape (n,)
        Event indicator.
    t : float
        The time of the calibration (e.g. 36 months).
    surv_prob_at_t : array-like, shape (n,)
        Predicted probability of surviving beyond ``t``.
    n_groups : int
        Number of risk groups (each needs at least 5 patients).
    alpha : float
        1 - confidence level of the Kaplan-Meier intervals.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``group`` (1 = lowest risk), ``n``, ``n_events`` (events at or before t),
        ``predicted``, ``observed``, ``observed_low``, ``observed_high``.

    Raises
    ------
    esoct.errors.InputError
        No events at or before ``t``, ``t`` outside the follow-up, too few patients per group, or
        probabilities outside [0, 1].

    References
    ----------
    .. [1] Graf, E. et al. "Assessment and comparison of prognostic classification schemes for
           survival data", Statistics in Medicine 18(17-18), 1999.
    .. [2] Kaplan, E.L., Meier, P. "Nonparametric estimation from incomplete observations", JASA 53,
           457-481, 1958.
    """
    y = as_surv(event, time)
    prob = _prob_matrix(surv_prob_at_t, len(y), 1)[:, 0]
    _check_calibration_inputs(y, float(t), n_groups)
    groups = np.array_split(np.argsort(1.0 - prob, kind="stable"), n_groups)
    rows = [_calibration_row(g + 1, y[idx], prob[idx], float(t), alpha) for g, idx in enumerate(groups)]
    return pd.DataFrame(rows)


def _check_calibration_inputs(y: np.ndarray, t: float, n_groups: int) -> None:
    if not np.isfinite(t) or t <= 0:
        raise InputError(f"t must be a positive time, got {t}")
    if not (y["event"] & (y["time"] <= t)).any():
        raise InputError(f"no events before t = {t}: observed survival is 1 in every group, calibration undefined")
    if t > y["time"].max():
        raise InputError(f"t = {t} lies beyond the longest follow-up ({y['time'].max()})")
    if n_groups < 1 or len(y) < 5 * n_groups:
        raise InputError(f"{len(y)} patients are too few for {n_groups} risk groups (at least 5 per group)")


def _calibration_row(group: int, y: np.ndarray, prob: np.ndarray, t: float, alpha: float) -> dict:
    from sksurv.nonparametric import kaplan_meier_estimator

    km_time, km_surv, km_ci = kaplan_meier_estimator(y["event"], y["time"], conf_level=1 - alpha, conf_type="log-log")
    k = np.searchsorted(km_time, t, side="right") - 1
    observed, low, high = (1.0, 1.0, 1.0) if k < 0 else (km_surv[k], km_ci[0, k], km_ci[1, k])
    if t > y["time"].max() and observed > 0:
        warnings.warn(
            f"risk group {group}: follow-up ends at {y['time'].max()} before t = {t}; "
            "its observed survival is carried forward from its last time",
            RuntimeWarning,
            stacklevel=3,
        )
    return {
        "group": group,
        "n": len(y),
        "n_events": int((y["event"] & (y["time"] <= t)).sum()),
        "predicted": float(prob.mean()),
        "observed": float(observed),
        "observed_low": float(low),
        "observed_high": float(high),
    }
