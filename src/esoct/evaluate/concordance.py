"""Harrell's and Uno's concordance index, the truncated C-index curve, and fast bootstrap confidence intervals."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from esoct.errors import InputError
from esoct.evaluate import bootstrap as _bootstrap
from esoct.evaluate.bootstrap import CI

#: Two risk scores closer than this are tied (scikit-survival's ``tied_tol``; lifelines uses 0).
TIED_TOL = 1e-8

#: Largest number of weight cells (resamples x patients) the bootstrap holds in memory at once.
_CHUNK_CELLS = 4_000_000

SURV_DTYPE = np.dtype([("event", bool), ("time", float)])


# --------------------------------------------------------------------------- inputs


def as_surv(event, time) -> np.ndarray:
    """Validate event indicators and times and pack them as a scikit-survival structured array.

    Parameters
    ----------
    event : array-like of bool or {0, 1}, shape (n,)
        1 (``True``) for an observed event, 0 (``False``) for right-censoring.
    time : array-like of float, shape (n,)
        Time of the event or of censoring; finite and non-negative.

    Returns
    -------
    numpy.ndarray
        Structured array with fields ``event`` (bool) and ``time`` (float), the layout of
        ``sksurv.util.Surv.from_arrays(event, time)``.

    Raises
    ------
    esoct.errors.InputError
        (a ``ValueError``) for different lengths, an event that is not 0/1, or a time that is
        NaN, infinite or negative; the message names how many values are wrong.
    """
    event, time = np.asarray(event), np.asarray(time)
    if event.ndim != 1 or time.ndim != 1 or event.shape != time.shape:
        raise InputError(f"event and time must be 1-D arrays of the same length, got {event.shape} and {time.shape}")
    y = np.empty(event.shape[0], dtype=SURV_DTYPE)
    y["event"] = _check_event(event)
    y["time"] = _check_time(time)
    return y


def surv_arrays(y) -> tuple[np.ndarray, np.ndarray]:
    """Split a validated scikit-survival structured array into ``(event, time)``.

    Parameters
    ----------
    y : structured array, shape (n,)
        Two fields: the event indicator first, the time second (any field names).

    Returns
    -------
    event : numpy.ndarray of bool
    time : numpy.ndarray of float
    """
    y = np.asarray(y)
    if y.dtype.names is None or len(y.dtype.names) != 2:
        raise InputError("survival data must be a structured array with two fields (event, time); see as_surv")
    e_name, t_name = y.dtype.names
    checked = as_surv(y[e_name], y[t_name])
    return checked["event"], checked["time"]


def _check_event(event: np.ndarray) -> np.ndarray:
    if event.dtype == bool:
        return event
    values = np.asarray(event, dtype=float)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise InputError(f"event must be 0/1 (or bool): {int(bad.sum())} value(s) are not, e.g. {event[bad][0]!r}")
    return values == 1.0


def _check_time(time: np.ndarray) -> np.ndarray:
    time = np.asarray(time, dtype=float)
    n_bad = int((~np.isfinite(time)).sum())
    if n_bad:
        raise InputError(f"{n_bad} survival time(s) are NaN or infinite")
    n_neg = int((time < 0).sum())
    if n_neg:
        raise InputError(f"{n_neg} survival time(s) are negative (smallest {time.min()})")
    return time


def check_risk(risk, n: int, name: str = "risk") -> np.ndarray:
    """Return ``risk`` as a finite float vector of length ``n`` or raise an error naming the count.

    Parameters
    ----------
    risk : array-like, shape (n,)
        Predicted risk scores (higher = earlier event).
    n : int
        Expected length (the number of patients).
    name : str
        How the message calls the scores.

    Returns
    -------
    numpy.ndarray of float
    """
    risk = np.asarray(risk, dtype=float)
    if risk.ndim != 1 or risk.shape[0] != n:
        raise InputError(f"{name} must be a 1-D array with one score per patient ({n}), got shape {risk.shape}")
    n_bad = int((~np.isfinite(risk)).sum())
    if n_bad:
        raise InputError(f"{n_bad} {name} score(s) are NaN or infinite")
    return risk


def _require_events(event: np.ndarray) -> None:
    if not event.any():
        raise InputError("no events: C-index undefined (all patients are censored)")


def _validated(event, time, risk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = as_surv(event, time)
    risk = check_risk(risk, y.shape[0])
    _require_events(y["event"])
    return y["event"], y["time"], risk


# --------------------------------------------------------------------------- resampling


def bootstrap_indices(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """The patient indices of each bootstrap resample: :func:`esoct.evaluate.bootstrap.bootstrap_indices`.

    Kept here with ``seed`` positional, as the C-index functions document their resamples by it.

    Returns
    -------
    numpy.ndarray of int, shape (n_resamples, n)
    """
    return _bootstrap.bootstrap_indices(n, n_resamples, seed=seed)


def multiplicity_weights(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each patient occurs in each resample: ``(B, n)`` counts from ``(B, n)`` indices.

    Parameters
    ----------
    indices : numpy.ndarray of int, shape (B, m)
        Resampled patient indices, one row per resample.
    n : int
        Number of patients.

    Returns
    -------
    numpy.ndarray of int64, shape (B, n)
    """
    indices = np.atleast_2d(indices)
    rows = np.arange(indices.shape[0], dtype=np.int64)[:, None] * n
    return np.bincount((indices + rows).ravel(), minlength=indices.shape[0] * n).reshape(-1, n)


def resample_weights(n: int, n_resamples: int = 1000, seed: int = 0) -> Iterator[np.ndarray]:
    """The multiplicities of :func:`bootstrap_indices`' resamples, in blocks of rows that fit in memory.

    Parameters
    ----------
    n : int
        Number of patients.
    n_resamples : int
        Number of resamples.
    seed : int
        Seed; the blocks stacked equal ``multiplicity_weights(bootstrap_indices(n, n_resamples, seed), n)``.

    Yields
    ------
    numpy.ndarray of int64, shape (rows, n)
    """
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_resamples, rows):
        yield multiplicity_weights(rng.integers(0, n, size=(min(rows, n_resamples - start), n)), n)


def percentile_ci(estimate: float, replicates: np.ndarray, alpha: float = 0.05, what: str = "estimate") -> CI:
    """Percentile bootstrap interval as a :class:`CI`; undefined (NaN) replicates are dropped with a warning.

    Parameters
    ----------
    estimate : float
        The estimate on the original sample.
    replicates : numpy.ndarray, shape (B,)
        The estimates on the bootstrap resamples.
    alpha : float
        1 - confidence level.
    what : str
        Name of the statistic for the warning.

    Returns
    -------
    CI
    """
    finite, n_failed = _finite_replicates(replicates, what)
    low, high = _bootstrap.percentile_ci(finite, alpha)
    return CI(float(estimate), low, high, 1 - alpha, "percentile", len(replicates), replicates, n_failed)


def _finite_replicates(replicates: np.ndarray, what: str) -> tuple[np.ndarray, int]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size < replicates.size:
        warnings.warn(
            f"{replicates.size - finite.size} of {replicates.size} bootstrap resamples left the {what} undefined "
            "(no events or no comparable pairs in the resample); the interval uses the others",
            RuntimeWarning,
            stacklevel=3,
        )
    return finite, replicates.size - finite.size


def _bca_ci(estimate: float, replicates: np.ndarray, jackknife: np.ndarray, alpha: float) -> CI:
    """Bias-corrected and accelerated interval (Efron 1987) from bootstrap and jackknife estimates."""
    finite, n_failed = _finite_replicates(replicates, "C-index")
    low, high = _bootstrap.bca_ci(estimate, finite, jackknife, alpha)
    return CI(float(estimate), low, high, 1 - alpha, "bca", len(replicates), replicates, n_failed)


# --------------------------------------------------------------------------- pair counting engine


@dataclass(frozen=True)
class _PairIndex:
    """Weight-free index of one sample's comparable pairs, for weighted pair counts in O(B n log n).

    Patients are sorted by time (events before censorings at a tied time) and the order is reversed,
    so the patients comparable with event ``i`` (later time, or censored at the same time) are the
    first ``m[i]`` of the reversed order. Counting those with a lower risk is a prefix / dominance
    query, answered by a merge-sort tree: at level ``k`` the reversed order is cut into blocks of
    ``2**k`` sorted by risk code, and a prefix of length ``m`` is the union of one block per set bit
    of ``m``. Positions in the tree depend only on times and risks; resample weights enter through
    cumulative sums, so all resamples share one index.
    """

    rev: np.ndarray  # reversed position -> original index
    events: np.ndarray  # original indices of the events (the query rows)
    m: np.ndarray  # per event: size of its comparable set (a prefix of the reversed order)
    perms: tuple  # per level: reversed positions sorted by (block, risk code)
    starts: tuple  # per level and event: start of the block in the level array (empty if unused)
    ends_lo: tuple  # ... end of the patients with risk < risk_i - tol in that block
    ends_hi: tuple  # ... end of the patients with risk <= risk_i + tol in that block


def _pair_index(event: np.ndarray, time: np.ndarray, risk: np.ndarray, tied_tol: float = TIED_TOL) -> _PairIndex:
    n = time.shape[0]
    order = np.lexsort((~event, time))
    events = np.flatnonzero(event)
    m = n - _comparable_start(time[order], time[events], np.sort(time[events]))
    sorted_risk = np.sort(risk)
    code = np.searchsorted(sorted_risk, risk, side="left")[order[::-1]]
    thr_lo = np.searchsorted(sorted_risk, risk[events] - tied_tol, side="left")
    thr_hi = np.searchsorted(sorted_risk, risk[events] + tied_tol, side="right")
    levels = [_tree_level(k, code, m, thr_lo, thr_hi) for k in range(max(int(m.max()), 1).bit_length())]
    perms, starts, ends_lo, ends_hi = (tuple(part) for part in zip(*levels))
    return _PairIndex(order[::-1].copy(), events, m, perms, starts, ends_lo, ends_hi)


def _comparable_start(sorted_time: np.ndarray, event_time: np.ndarray, sorted_event_time: np.ndarray) -> np.ndarray:
    """Sorted position where each event's comparable set begins: after every time < t_i and every event at t_i."""
    before = np.searchsorted(sorted_time, event_time, side="left")
    tied_events = np.searchsorted(sorted_event_time, event_time, side="right") - np.searchsorted(
        sorted_event_time, event_time, side="left"
    )
    return before + tied_events


def _tree_level(k: int, code: np.ndarray, m: np.ndarray, thr_lo: np.ndarray, thr_hi: np.ndarray):
    n = code.shape[0]
    key = (np.arange(n, dtype=np.int64) >> k) * (n + 1) + code
    perm = np.argsort(key, kind="stable")
    sorted_key = key[perm]
    used = ((m >> k) & 1).astype(bool)
    start = (m >> (k + 1)) << (k + 1)
    base = (start >> k) * (n + 1)
    end_lo = np.where(used, np.searchsorted(sorted_key, base + thr_lo, side="left"), start)
    end_hi = np.where(used, np.searchsorted(sorted_key, base + thr_hi, side="left"), start)
    return perm, start, end_lo, end_hi


def _cumsum0(a: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0], a.shape[1] + 1), dtype=a.dtype)
    np.cumsum(a, axis=1, out=out[:, 1:])
    return out


def _pair_counts(index: _PairIndex, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per resample and event: twice the weighted concordance score, and the weighted comparable count.

    ``score2[b, i] = sum_j w_bj (2 [r_j < r_i - tol] + [|r_j - r_i| <= tol])`` and
    ``comparable[b, i] = sum_j w_bj`` over the patients ``j`` comparable with event ``i``; both are exact
    integers for integer weights.
    """
    w_rev = weights[:, index.rev]
    comparable = _cumsum0(w_rev)[:, index.m]
    score2 = np.zeros_like(comparable)
    for perm, start, end_lo, end_hi in zip(index.perms, index.starts, index.ends_lo, index.ends_hi):
        c = _cumsum0(w_rev[:, perm])
        at_start = c[:, start]
        score2 += c[:, end_lo] + c[:, end_hi] - 2 * at_start
    return score2, comparable


def _weighted_c(index: _PairIndex, weights: np.ndarray, event_weights: np.ndarray | None = None) -> np.ndarray:
    """C-index for each row of ``weights`` (patient multiplicities); ``event_weights`` (events x k) gives k variants.

    Returns shape (B,) without ``event_weights`` (Harrell: every event counts once, exact integer
    arithmetic) and (B, k) with it (Uno's IPCW weights, truncation at each time of a grid).
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.int64))
    score2, comparable = _pair_counts(index, weights)
    w_events = weights[:, index.events]
    if event_weights is None:
        num = (w_events * score2).sum(axis=1) / 2.0
        den = (w_events * comparable).sum(axis=1).astype(float)
    else:
        num = (w_events * score2).astype(float) @ event_weights / 2.0
        den = (w_events * comparable).astype(float) @ event_weights
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _bootstrap_c(
    index: _PairIndex, n: int, n_resamples: int, seed: int, event_weights: np.ndarray | None = None
) -> np.ndarray:
    """:func:`_weighted_c` over the resamples of ``bootstrap_indices(n, n_resamples, seed)``, block by block."""
    return np.concatenate([_weighted_c(index, w, event_weights) for w in resample_weights(n, n_resamples, seed)])


def _jackknife_c(index: _PairIndex, n: int) -> np.ndarray:
    """Leave-one-out C-indices (weights: all ones but one zero), block by block."""
    rows = max(1, _CHUNK_CELLS // n)
    blocks = []
    for start in range(0, n, rows):
        w = np.ones((min(rows, n - start), n), dtype=np.int64)
        w[np.arange(w.shape[0]), start + np.arange(w.shape[0])] = 0
        blocks.append(_weighted_c(index, w))
    return np.concatenate(blocks)


def _no_pairs_nan(value: float) -> float:
    if not np.isfinite(value):
        warnings.warn(
            "no comparable pairs (no event is followed by a later time or a censoring at the same time): "
            "C-index undefined, returning NaN",
            RuntimeWarning,
            stacklevel=3,
        )
    return float(value)


# --------------------------------------------------------------------------- Harrell's C


def harrell_c(event, time, risk, tied_tol: float = TIED_TOL) -> float:
    """Harrell's concordance index of risk scores against right-censored survival times.

    A pair is comparable when the patient with the shorter time had an event; a pair with the same
    time is comparable only when one is an event and the other censored (the event comes first).
    A comparable pair is concordant when the earlier event has the higher risk; pairs whose risks
    differ by at most ``tied_tol`` count 1/2. This equals scikit-survival's
    ``concordance_index_censored(event, time, risk)[0]`` and lifelines'
    ``concordance_index(time, -risk, event)`` (lifelines ties risks exactly: ``tied_tol=0``), bit for
    bit, computed in O(n log n).

    Parameters
    ----------
    event : array-like of bool or {0, 1}, shape (n,)
        Event indicator.
    time : array-like of float, shape (n,)
        Event or censoring time.
    risk : array-like of float, shape (n,)
        Predicted risk score; higher means an earlier event.
    tied_tol : float
        Risks closer than this are tied.

    Returns
    -------
    float
        The C-index; NaN (with a ``RuntimeWarning``) when there is no comparable pair.

    Raises
    ------
    esoct.errors.InputError
        Bad event, time or risk values, or no events ("no events: C-index undefined").

    References
    ----------
    .. [1] Harrell, F.E., Califf, R.M., Pryor, D.B., Lee, K.L., Rosati, R.A. "Evaluating the yield of
           medical tests", JAMA 247(18), 2543-2546, 1982.
    .. [2] Harrell, F.E., Lee, K.L., Mark, D.B. "Multivariable prognostic models", Statistics in
           Medicine 15(4), 361-387, 1996.
    """
    event, time, risk = _validated(event, time, risk)
    index = _pair_index(event, time, risk, tied_tol)
    return _no_pairs_nan(_weighted_c(index, np.ones((1, len(time)), dtype=np.int64))[0])


def harrell_c_ci(
    event,
    time,
    risk,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    method: str = "percentile",
    tied_tol: float = TIED_TOL,
) -> CI:
    """Harrell's C-index with a bootstrap confidence interval, all resamples at once.

    Resample ``b`` is the multiset ``bootstrap_indices(n, n_resamples, seed)[b]``; its C-index equals
    ``concordance_index_censored`` on the resampled arrays exactly. A resample is a vector of
    multiplicities ``w``; the C-index numerator and denominator are sums over comparable pairs of
    ``w_i w_j``, evaluated for every resample with one shared merge-sort tree and cumulative sums
    (O(B n log n) integer arithmetic).

    Parameters
    ----------
    event, time, risk : array-like, shape (n,)
        As in :func:`harrell_c`.
    n_resamples : int
        Number of bootstrap resamples.
    seed : int
        Seed of the resamples.
    alpha : float
        1 - confidence level.
    method : {"percentile", "bca"}
        Percentile interval, or bias-corrected and accelerated (its jackknife costs n more
        weight vectors, run through the same engine).
    tied_tol : float
        Risks closer than this are tied.

    Returns
    -------
    CI
        ``replicates`` holds the ``n_resamples`` bootstrap C-indices (NaN where a resample has no
        comparable pair; those are left out of the interval with a warning).

    References
    ----------
    .. [1] Harrell, F.E. et al. "Evaluating the yield of medical tests", JAMA 247(18), 1982.
    .. [2] Efron, B., Tibshirani, R.J. "An Introduction to the Bootstrap", Chapman & Hall, 1993.
    """
    event, time, risk = _validated(event, time, risk)
    index = _pair_index(event, time, risk, tied_tol)
    n = len(time)
    estimate = _no_pairs_nan(_weighted_c(index, np.ones((1, n), dtype=np.int64))[0])
    replicates = _bootstrap_c(index, n, n_resamples, seed)
    if method == "percentile":
        return percentile_ci(estimate, replicates, alpha, "C-index")
    if method == "bca":
        jackknife = _jackknife_c(index, n)
        return _bca_ci(estimate, replicates, jackknife[np.isfinite(jackknife)], alpha)
    raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")


# --------------------------------------------------------------------------- Uno's C


def ipcw_squared(survival_train, event: np.ndarray, time: np.ndarray, tau: float | None) -> np.ndarray:
    """Uno's event weights ``1 / G(T_i)^2`` for events before ``tau`` (0 otherwise), G from the training set.

    Parameters
    ----------
    survival_train : structured array
        Training survival data; its Kaplan-Meier censoring distribution gives G.
    event, time : numpy.ndarray, shape (n,)
        Test event indicators and times.
    tau : float or None
        Truncation time (events at ``T_i >= tau`` get weight 0), as scikit-survival.

    Returns
    -------
    numpy.ndarray, shape (n_events,)
        One weight per event of the test set, in the order of ``np.flatnonzero(event)``.
    """
    from sksurv.nonparametric import CensoringDistributionEstimator

    ev_time = time[event]
    used = np.ones(ev_time.shape, dtype=bool) if tau is None else ev_time < tau
    weights = np.zeros(ev_time.shape)
    if used.any():
        cens = CensoringDistributionEstimator().fit(_as_struct(survival_train))
        g = cens.predict_proba(ev_time[used])
        if (g == 0).any():
            raise InputError(
                f"the censoring survival function of the training set is zero at {int((g == 0).sum())} "
                "event time(s) of the test set: choose a smaller tau"
            )
        weights[used] = 1.0 / g**2
    return weights


def _as_struct(y) -> np.ndarray:
    event, time = surv_arrays(y)
    return as_surv(event, time)


def uno_c(
    survival_train,
    survival_test,
    risk,
    tau: float | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    tied_tol: float = TIED_TOL,
) -> CI:
    """Uno's IPCW concordance index with a bootstrap confidence interval over the test set.

    The estimate is scikit-survival's ``concordance_index_ipcw``. The interval resamples the test
    patients only; the censoring distribution stays the one estimated on ``survival_train`` (the
    training cohort is a fixed part of the model), so each resample is the same weighted pair sum
    with multiplicities, computed for all resamples at once like :func:`harrell_c_ci`.

    Parameters
    ----------
    survival_train : structured array, shape (n_train,)
        Training survival data; estimates the censoring distribution G.
    survival_test : structured array, shape (n,)
        Test survival data.
    risk : array-like, shape (n,)
        Predicted risk scores of the test patients.
    tau : float, optional
        Truncation time: only events before ``tau`` count (G must be positive there).
    n_resamples, seed, alpha : int, int, float
        Bootstrap settings.
    tied_tol : float
        Risks closer than this are tied.

    Returns
    -------
    CI

    References
    ----------
    .. [1] Uno, H., Cai, T., Pencina, M.J., D'Agostino, R.B., Wei, L.J. "On the C-statistics for
           evaluating overall adequacy of risk prediction procedures with censored survival data",
           Statistics in Medicine 30(10), 1105-1117, 2011.
    """
    from sksurv.metrics import concordance_index_ipcw

    event, time = surv_arrays(survival_test)
    risk = check_risk(risk, len(time))
    _require_events(event)
    y_train, y_test = _as_struct(survival_train), as_surv(event, time)
    estimate = _no_pairs_nan(concordance_index_ipcw(y_train, y_test, risk, tau=tau, tied_tol=tied_tol)[0])
    u = ipcw_squared(y_train, event, time, tau)[:, None]
    index = _pair_index(event, time, risk, tied_tol)
    replicates = _bootstrap_c(index, len(time), n_resamples, seed, u)[:, 0]
    return percentile_ci(estimate, replicates, alpha, "Uno's C")


# --------------------------------------------------------------------------- truncated C-index curve


def td_c_index_curve(
    survival_test,
    risk,
    times,
    survival_train=None,
    method: str = "harrell",
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    tied_tol: float = TIED_TOL,
) -> pd.DataFrame:
    """Time-dependent (truncated) C-index at each time of a grid, with pointwise bootstrap intervals.

    Definition: ``C(t)`` is the concordance over the comparable pairs whose earlier member had its
    event strictly before ``t`` (scikit-survival's ``tau`` convention).

    * ``method="harrell"``: every such pair counts once, so ``C(t)`` is Harrell's C of those pairs and
      equals :func:`harrell_c` once ``t`` exceeds the last event time.
    * ``method="uno"``: pairs are weighted by ``1 / G(T_i)^2`` (G: censoring distribution of
      ``survival_train``, the test set itself when not given), so ``C(t)`` equals
      ``concordance_index_ipcw(survival_train, survival_test, risk, tau=t)``.

    All grid points share the same resamples, so the pointwise bands are mutually consistent.

    Parameters
    ----------
    survival_test : structured array, shape (n,)
        Survival data of the patients the risks belong to.
    risk : array-like, shape (n,)
        Predicted risk scores.
    times : array-like, shape (k,)
        Truncation times.
    survival_train : structured array, optional
        Training survival data for the IPCW weights (``method="uno"`` only).
    method : {"harrell", "uno"}
        Pair weighting.
    n_resamples, seed, alpha : int, int, float
        Bootstrap settings.
    tied_tol : float
        Risks closer than this are tied.

    Returns
    -------
    pandas.DataFrame
        Columns ``time``, ``c_index``, ``low``, ``high``, ``n_events`` (events before ``time``); a
        time before the first comparable pair gives NaN.

    References
    ----------
    .. [1] Harrell, F.E. et al. "Evaluating the yield of medical tests", JAMA 247(18), 1982.
    .. [2] Uno, H. et al. "On the C-statistics for evaluating overall adequacy of risk prediction
           procedures with censored survival data", Statistics in Medicine 30(10), 2011.
    """
    event, time = surv_arrays(survival_test)
    risk = check_risk(risk, len(time))
    _require_events(event)
    grid = np.asarray(times, dtype=float).ravel()
    u = _curve_event_weights(event, time, grid, survival_train, survival_test, method)
    index = _pair_index(event, time, risk, tied_tol)
    n = len(time)
    estimate = _weighted_c(index, np.ones((1, n), dtype=np.int64), u)[0]
    replicates = _bootstrap_c(index, n, n_resamples, seed, u)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN columns before the first event are expected
        low = np.nanquantile(replicates, alpha / 2, axis=0)
        high = np.nanquantile(replicates, 1 - alpha / 2, axis=0)
    n_events = (time[event][:, None] < grid[None, :]).sum(axis=0)
    return pd.DataFrame({"time": grid, "c_index": estimate, "low": low, "high": high, "n_events": n_events})


def _curve_event_weights(event, time, grid, survival_train, survival_test, method: str) -> np.ndarray:
    """Per event and grid time: 0 when the event is not before t, else 1 (Harrell) or 1/G(T_i)^2 (Uno)."""
    before = time[event][:, None] < grid[None, :]
    if method == "harrell":
        return before.astype(float)
    if method == "uno":
        train = survival_test if survival_train is None else survival_train
        return before * ipcw_squared(train, event, time, float(grid.max()))[:, None]
    raise ValueError(f"method must be 'harrell' or 'uno', got {method!r}")
