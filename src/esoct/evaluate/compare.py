"""Paired comparison of two models on the same patients: bootstrap C-index and IBS differences, survcomp's test."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from esoct.errors import InputError
from esoct.evaluate.concordance import (
    CI,
    TIED_TOL,
    _pair_index,
    _validated,
    _weighted_c,
    check_risk,
    percentile_ci,
    resample_weights,
)

#: Rows of the pairwise comparison matrix handled at once in :func:`noether_c_index`.
_ROW_CHUNK = 2048


@dataclass(frozen=True)
class BootstrapComparison:
    """Two models' metric on the same resamples, the difference ``a - b`` and a two-sided bootstrap p-value."""

    c_a: CI
    c_b: CI
    difference: CI
    p_value: float


@dataclass(frozen=True)
class NoetherC:
    """survcomp's ``concordance.index(..., method="noether")``: C-index, Noether standard error, CI, p vs 0.5."""

    c_index: float
    se: float
    low: float
    high: float
    p_value: float
    n: int
    comparable_pairs: int


@dataclass(frozen=True)
class SurvcompComparison:
    """survcomp's ``cindex.comp``: t statistic of ``c_a - c_b`` with the correlation of the two risk scores."""

    c_a: float
    c_b: float
    se_a: float
    se_b: float
    r: float
    statistic: float
    df: int
    p_value: float
    alternative: str


# --------------------------------------------------------------------------- bootstrap


def compare_c_index(
    event,
    time,
    risk_a,
    risk_b,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    tied_tol: float = TIED_TOL,
) -> BootstrapComparison:
    """Paired bootstrap of the difference of two models' Harrell C-indices on the same patients.

    Both models are evaluated on the same resamples (``bootstrap_indices(n, n_resamples, seed)``,
    computed all at once as in :func:`esoct.evaluate.concordance.harrell_c_ci`), so the correlation
    of the two estimates is kept. The interval is the percentile interval of ``C_a - C_b``. The
    two-sided p-value is proportion-based: with ``B`` resamples and differences ``d_b``,
    ``p = min(1, 2 * min(1 + #{d_b <= 0}, 1 + #{d_b >= 0}) / (B + 1))`` -- twice the smaller tail
    beyond zero, with the +1 correction so that p is never 0. It is (about) the smallest alpha at
    which the percentile interval excludes 0. Identical models give p = 1.

    Parameters
    ----------
    event, time : array-like, shape (n,)
        Survival outcome.
    risk_a, risk_b : array-like, shape (n,)
        Risk scores of model A and model B.
    n_resamples, seed, alpha : int, int, float
        Bootstrap settings.
    tied_tol : float
        Risks closer than this are tied.

    Returns
    -------
    BootstrapComparison

    References
    ----------
    .. [1] Harrell, F.E. et al. "Evaluating the yield of medical tests", JAMA 247(18), 1982.
    .. [2] Efron, B., Tibshirani, R.J. "An Introduction to the Bootstrap", Chapman & Hall, 1993
           (chapter 16, bootstrap hypothesis tests).
    """
    event, time, risk_a = _validated(event, time, risk_a)
    risk_b = check_risk(risk_b, len(time), "risk_b")
    n = len(time)
    ones = np.ones((1, n), dtype=np.int64)
    indices = [_pair_index(event, time, risk, tied_tol) for risk in (risk_a, risk_b)]
    blocks = [[_weighted_c(index, w) for index in indices] for w in resample_weights(n, n_resamples, seed)]
    reps = [np.concatenate([block[m] for block in blocks]) for m in (0, 1)]
    cis = [
        percentile_ci(_weighted_c(index, ones)[0], rep, alpha, f"C-index of model {name}")
        for index, rep, name in zip(indices, reps, "AB")
    ]
    diff = reps[0] - reps[1]
    difference = percentile_ci(cis[0].estimate - cis[1].estimate, diff, alpha, "C-index difference")
    return BootstrapComparison(cis[0], cis[1], difference, _bootstrap_p(diff[np.isfinite(diff)]))


def _bootstrap_p(diff: np.ndarray) -> float:
    below = 1 + np.count_nonzero(diff <= 0)
    above = 1 + np.count_nonzero(diff >= 0)
    return float(min(1.0, 2.0 * min(below, above) / (len(diff) + 1)))


def compare_integrated_brier(
    survival_train,
    survival_test,
    surv_prob_a,
    surv_prob_b,
    times,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapComparison:
    """Paired bootstrap of the difference of two models' integrated Brier scores (IPCW) on the same patients.

    Both scores come from :func:`esoct.evaluate.survival_metrics.integrated_brier` on the same test
    resamples (same ``seed``); the interval and the two-sided proportion-based p-value of
    ``IBS_a - IBS_b`` are as in :func:`compare_c_index` (a negative difference favours model A).

    Parameters
    ----------
    survival_train, survival_test : structured arrays
        Training (censoring distribution) and test survival data.
    surv_prob_a, surv_prob_b : array-like, shape (n, k)
        Each model's predicted survival probabilities at ``times``.
    times : array-like, shape (k,)
        At least two strictly increasing times within the test follow-up.
    n_resamples, seed, alpha : int, int, float
        Bootstrap settings.

    Returns
    -------
    BootstrapComparison
        ``c_a`` / ``c_b`` hold the two integrated Brier scores with their intervals.

    References
    ----------
    .. [1] Graf, E., Schmoor, C., Sauerbrei, W., Schumacher, M. "Assessment and comparison of
           prognostic classification schemes for survival data", Statistics in Medicine 18(17-18),
           2529-2545, 1999.
    """
    from esoct.evaluate.survival_metrics import integrated_brier

    a = integrated_brier(survival_train, survival_test, surv_prob_a, times, n_resamples, seed, alpha)
    b = integrated_brier(survival_train, survival_test, surv_prob_b, times, n_resamples, seed, alpha)
    diff = a.replicates - b.replicates
    difference = percentile_ci(a.estimate - b.estimate, diff, alpha, "integrated Brier score difference")
    return BootstrapComparison(a, b, difference, _bootstrap_p(diff[np.isfinite(diff)]))


# --------------------------------------------------------------------------- survcomp


def noether_c_index(event, time, risk, alpha: float = 0.05, min_pairs: int = 10,
                    alternative: str = "two-sided") -> NoetherC:
    """survcomp's concordance index with Noether's standard error (``method="noether"``).

    Reproduces ``survcomp::concordance.index(x, surv.time, surv.event, method="noether")`` with unit
    weights and ``outx=TRUE``: a pair is comparable when the shorter time is an event and the times
    differ (ties in time are not comparable); pairs tied in risk are left out. With ``ch[h]`` /
    ``dh[h]`` the numbers of concordant / discordant pairs that involve patient ``h`` and
    ``N = n``: ``pc = sum(ch) / (N (N-1))``, ``pd = sum(dh) / (N (N-1))``, ``C = pc / (pc + pd)``,
    ``pcc = sum(ch (ch-1)) / (N (N-1) (N-2))`` (likewise ``pdd``, ``pcd = sum(ch dh) / ...``),
    ``var = 4 / (pc + pd)^4 (pd^2 pcc - 2 pc pd pcd + pc^2 pdd)``, ``se = sqrt(var / N)``, a Wald
    interval clipped to [0, 1] and a normal p-value against 0.5 (``alternative``).
    Because ties are excluded, C differs from Harrell's C of :func:`harrell_c` when risks or times tie.
    The pair counts are computed exactly in O(n^2) in blocks of rows, as survcomp does in C.

    Parameters
    ----------
    event, time : array-like, shape (n,)
        Survival outcome.
    risk : array-like, shape (n,)
        Risk scores (higher = earlier event).
    alpha : float
        1 - confidence level.
    min_pairs : int
        survcomp's ``comppairs``: fewer comparable pairs give NaN.
    alternative : {"two-sided", "greater", "less", "directional"}
        The p-value's alternative to C = 0.5. ``"two-sided"`` (``2 P(Z > |z|)``) is the default of
        current survcomp's ``concordance.index(alternative = c("two.sided", "less", "greater"))``;
        ``"directional"`` is the one tail in the direction of C that older survcomp releases
        returned (``pnorm(z, lower.tail = cindex < 0.5)``, R/concordance.index.R), half the two-sided p.

    Returns
    -------
    NoetherC
        NaN fields (with a warning) where survcomp returns NA: no concordant or no discordant pair,
        or fewer than ``min_pairs`` comparable pairs.

    References
    ----------
    .. [1] Haibe-Kains, B., Desmedt, C., Sotiriou, C., Bontempi, G. "A comparative study of survival
           models for breast cancer prognostication based on microarray data: does a single gene
           beat them all?", Bioinformatics 24(19), 2200-2208, 2008.
    .. [2] Pencina, M.J., D'Agostino, R.B. "Overall C as a measure of discrimination in survival
           analysis: model specific population value and confidence interval estimation",
           Statistics in Medicine 23(13), 2109-2123, 2004.
    .. [3] survcomp, R/concordance.index.R and src/concordance.index.c (github.com/bhklab/survcomp).
    """
    event, time, risk = _validated(event, time, risk)
    ch, dh = _survcomp_pair_counts(event, time, risk)
    n = len(time)
    pairs = int(ch.sum() + dh.sum())
    if min(ch.sum(), dh.sum(), (ch * (ch - 1)).sum(), (dh * (dh - 1)).sum(), (ch * dh).sum()) == 0 or pairs < min_pairs:
        warnings.warn(
            f"Noether standard error undefined ({pairs} comparable pairs, or no concordant / discordant pair): NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return NoetherC(np.nan, np.nan, np.nan, np.nan, np.nan, n, pairs)
    return _noether(ch.astype(float), dh.astype(float), n, alpha, pairs, alternative)


def _survcomp_pair_counts(event: np.ndarray, time: np.ndarray, risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per patient h: concordant and discordant comparable pairs (h, j), survcomp's ``ch`` and ``dh``."""
    n = len(time)
    ch = np.zeros(n, dtype=np.int64)
    dh = np.zeros(n, dtype=np.int64)
    for s in range(0, n, _ROW_CHUNK):
        t, e, x = time[s : s + _ROW_CHUNK, None], event[s : s + _ROW_CHUNK, None], risk[s : s + _ROW_CHUNK, None]
        h_first = e & (t < time[None, :])  # h had its event before j's time
        j_first = event[None, :] & (time[None, :] < t)  # j had its event before h's time
        higher, lower = x > risk[None, :], x < risk[None, :]
        ch[s : s + _ROW_CHUNK] = (h_first & higher).sum(axis=1) + (j_first & lower).sum(axis=1)
        dh[s : s + _ROW_CHUNK] = (h_first & lower).sum(axis=1) + (j_first & higher).sum(axis=1)
    return ch, dh


def _noether(ch: np.ndarray, dh: np.ndarray, n: int, alpha: float, pairs: int,
             alternative: str = "two-sided") -> NoetherC:
    pc = ch.sum() / (n * (n - 1))
    pd = dh.sum() / (n * (n - 1))
    c = pc / (pc + pd)
    k3 = n * (n - 1) * (n - 2)
    pcc, pdd, pcd = (ch * (ch - 1)).sum() / k3, (dh * (dh - 1)).sum() / k3, (ch * dh).sum() / k3
    var = 4.0 / (pc + pd) ** 4 * (pd**2 * pcc - 2 * pc * pd * pcd + pc**2 * pdd)
    if not var / n > 0:
        return NoetherC(float(c), np.nan, np.nan, np.nan, np.nan, n, pairs)
    se = float(np.sqrt(var / n))
    half = stats.norm.ppf(1 - alpha / 2) * se
    z = (c - 0.5) / se
    tails = {"two-sided": lambda: 2.0 * stats.norm.sf(abs(z)), "greater": lambda: stats.norm.sf(z),
             "less": lambda: stats.norm.cdf(z), "directional": lambda: stats.norm.sf(abs(z))}
    if alternative not in tails:
        raise InputError(f"alternative {alternative!r}: choose from {sorted(tails)}")
    p = min(1.0, tails[alternative]())
    return NoetherC(float(c), se, float(np.clip(c - half, 0, 1)), float(np.clip(c + half, 0, 1)), float(p), n, pairs)


def cindex_comp(event, time, risk_a, risk_b, alternative: str = "greater") -> SurvcompComparison:
    """survcomp's ``cindex.comp``: is model A's C-index higher than model B's on the same patients?

    Reproduces ``cindex.comp(concordance.index(risk_a, ..., method="noether"),
    concordance.index(risk_b, ..., method="noether"))``: with the two Noether C-indices and standard
    errors (:func:`noether_c_index`) and ``r`` the Spearman correlation of the two risk scores,
    ``t = (C_a - C_b) / sqrt(se_a^2 + se_b^2 - 2 r se_a se_b)`` on ``n - 1`` degrees of freedom.
    survcomp reports the one-sided upper tail ``P(T > t)`` (``alternative="greater"``, H1: C_a > C_b);
    ``"two-sided"`` and ``"less"`` are offered too. When ``1 - |r| <= 1e-15`` (the same ranking)
    survcomp returns p = 1, and so does this function.

    Parameters
    ----------
    event, time : array-like, shape (n,)
        Survival outcome.
    risk_a, risk_b : array-like, shape (n,)
        Risk scores of model A and model B.
    alternative : {"greater", "two-sided", "less"}
        Alternative hypothesis about ``C_a - C_b``.

    Returns
    -------
    SurvcompComparison

    Raises
    ------
    esoct.errors.InputError
        When a Noether standard error is undefined (survcomp stops there too).

    References
    ----------
    .. [1] Haibe-Kains, B., Desmedt, C., Sotiriou, C., Bontempi, G. "A comparative study of survival
           models for breast cancer prognostication based on microarray data: does a single gene
           beat them all?", Bioinformatics 24(19), 2200-2208, 2008.
    .. [2] survcomp, R/cindex.comp.R (github.com/bhklab/survcomp).
    """
    if alternative not in ("greater", "two-sided", "less"):
        raise ValueError(f"alternative must be 'greater', 'two-sided' or 'less', got {alternative!r}")
    event, time, risk_a = _validated(event, time, risk_a)
    risk_b = check_risk(risk_b, len(time), "risk_b")
    a, b = noether_c_index(event, time, risk_a), noether_c_index(event, time, risk_b)
    if np.isnan(a.se) or np.isnan(b.se):
        raise InputError("a Noether standard error is undefined (too few comparable pairs): cannot compare")
    r = float(stats.spearmanr(risk_a, risk_b).statistic)
    n = len(time)
    if 1 - abs(r) > 1e-15:
        t = (a.c_index - b.c_index) / np.sqrt(a.se**2 + b.se**2 - 2 * r * a.se * b.se)
        p = _t_p_value(float(t), n - 1, alternative)
    else:
        t, p = np.nan, 1.0
    return SurvcompComparison(a.c_index, b.c_index, a.se, b.se, r, float(t), n - 1, p, alternative)


def _t_p_value(t: float, df: int, alternative: str) -> float:
    if alternative == "greater":
        return float(stats.t.sf(t, df))
    if alternative == "less":
        return float(stats.t.cdf(t, df))
    return float(min(1.0, 2 * stats.t.sf(abs(t), df)))
