"""Seeded, vectorised bootstrap: resample indices, percentile and BCa intervals, and the ``CI`` result type."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from esoct.errors import InputError

#: Largest number of resampled cells (resamples x observations) handed to a statistic at once.
CHUNK_CELLS = 2_000_000

METHODS = ("percentile", "bca")


@dataclass(frozen=True)
class CI:
    """A point estimate with its confidence interval.

    ``replicates`` holds the bootstrap estimates the interval was read from (``None`` for an
    analytic interval such as DeLong or Wilson); it is left out of ``repr`` and equality.
    ``n_failed`` counts the resamples on which the statistic was undefined (NaN, e.g. a resample
    with one class only); they are left out of the interval, never replaced by a number.
    """

    estimate: float
    low: float
    high: float
    level: float = 0.95
    method: str = "percentile"
    n_resamples: int = 0
    replicates: np.ndarray | None = field(default=None, repr=False, compare=False)
    n_failed: int = 0

    def __str__(self) -> str:
        sep = " to " if min(self.low, self.high, 0.0) < 0 else "-"
        return f"{self.estimate:.3f} ({self.low:.3f}{sep}{self.high:.3f})"

    def as_dict(self) -> dict:
        """The interval as plain Python values (for ``metrics.json``), without the replicates."""
        return {
            "estimate": float(self.estimate),
            "low": float(self.low),
            "high": float(self.high),
            "level": float(self.level),
            "method": self.method,
            "n_resamples": int(self.n_resamples),
            "n_failed": int(self.n_failed),
        }


# --------------------------------------------------------------------------- resampling


def bootstrap_indices(n: int, n_resamples: int = 1000, *, seed: int = 0, strata=None) -> np.ndarray:
    """The observation indices of each bootstrap resample, drawn with replacement.

    Without ``strata`` the draw is ``numpy.random.default_rng(seed).integers(0, n, (n_resamples, n))``,
    the same resamples as :func:`esoct.evaluate.concordance.bootstrap_indices` and
    ``scipy.stats.bootstrap(..., rng=np.random.default_rng(seed))`` (one batch). With ``strata``
    every resample draws, within each stratum, as many observations as the stratum holds, so
    the stratum sizes (e.g. the number of positives and negatives) are the same in every
    resample; column ``j`` of the result is always an observation of ``j``'s stratum. Each
    stratum (in sorted label order) draws from its own stream, spawned from ``seed`` with
    ``numpy.random.SeedSequence``.

    Parameters
    ----------
    n : int
        Number of observations.
    n_resamples : int
        Number of resamples ``B``.
    seed : int
        Seed; the same seed gives the same resamples.
    strata : array-like, shape (n,), optional
        Stratum label of each observation (any sortable values, e.g. the outcome).

    Returns
    -------
    numpy.ndarray of int64, shape (n_resamples, n)

    References
    ----------
    .. [1] Efron, B., Tibshirani, R.J. "An Introduction to the Bootstrap", Chapman & Hall, 1993.
    """
    n, n_resamples = _check_sizes(n, n_resamples)
    return np.concatenate(list(index_blocks(n, n_resamples, seed=seed, strata=strata, rows=n_resamples)))


def index_blocks(
    n: int, n_resamples: int = 1000, *, seed: int = 0, strata=None, rows: int | None = None
) -> Iterator[np.ndarray]:
    """:func:`bootstrap_indices` in consecutive blocks of rows, without holding them all in memory.

    The blocks stacked equal ``bootstrap_indices(n, n_resamples, seed=seed, strata=strata)`` whatever
    the block size.

    Parameters
    ----------
    n, n_resamples, seed, strata
        As in :func:`bootstrap_indices`.
    rows : int, optional
        Resamples per block; default: as many as fit in :data:`CHUNK_CELLS` cells.

    Yields
    ------
    numpy.ndarray of int64, shape (rows, n)
    """
    n, n_resamples = _check_sizes(n, n_resamples)
    rows = max(1, CHUNK_CELLS // n) if rows is None else max(1, int(rows))
    if strata is None:
        rng = np.random.default_rng(seed)
        for start in range(0, n_resamples, rows):
            yield rng.integers(0, n, size=(min(rows, n_resamples - start), n))
        return
    groups = _strata_groups(strata, n)
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(groups))]
    for start in range(0, n_resamples, rows):
        block = np.empty((min(rows, n_resamples - start), n), dtype=np.int64)
        for members, rng in zip(groups, rngs):
            block[:, members] = members[rng.integers(0, members.size, size=(block.shape[0], members.size))]
        yield block


def _check_sizes(n, n_resamples) -> tuple[int, int]:
    if int(n) < 1:
        raise InputError(f"cannot resample an empty sample (n = {n})")
    if int(n_resamples) < 1:
        raise InputError(f"n_resamples must be at least 1, got {n_resamples}")
    return int(n), int(n_resamples)


def _strata_groups(strata, n: int) -> list[np.ndarray]:
    strata = np.asarray(strata)
    if strata.ndim != 1 or strata.shape[0] != n:
        raise InputError(f"strata must be a 1-D array with one label per observation ({n}), got shape {strata.shape}")
    _, codes = np.unique(strata, return_inverse=True)
    return [np.flatnonzero(codes == k) for k in range(codes.max() + 1)]


def jackknife_blocks(n: int) -> Iterator[np.ndarray]:
    """Leave-one-out index rows in blocks of at most :data:`CHUNK_CELLS` cells.

    Row ``i`` (over all blocks) holds every observation but ``i``, in order.

    Parameters
    ----------
    n : int
        Number of observations (at least 2).

    Yields
    ------
    numpy.ndarray of int64, shape (rows, n - 1)
    """
    if n < 2:
        raise InputError(f"the jackknife needs at least 2 observations, got {n}")
    rows = max(1, CHUNK_CELLS // (n - 1))
    base = np.arange(n - 1, dtype=np.int64)
    for start in range(0, n, rows):
        left_out = np.arange(start, min(n, start + rows))[:, None]
        yield base + (base >= left_out)


# --------------------------------------------------------------------------- intervals


def percentile_ci(estimates, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval: the ``alpha/2`` and ``1 - alpha/2`` quantiles of the estimates.

    Parameters
    ----------
    estimates : array-like, shape (B,)
        Bootstrap estimates (finite; drop undefined ones first).
    alpha : float
        1 - confidence level.

    Returns
    -------
    (low, high) : tuple of float
        Quantiles with linear interpolation (``numpy.quantile``'s default); NaN when
        ``estimates`` is empty.

    References
    ----------
    .. [1] Efron, B., Tibshirani, R.J. "An Introduction to the Bootstrap", Chapman & Hall, 1993,
           chapter 13.
    """
    estimates = np.asarray(estimates, dtype=float).ravel()
    check_alpha(alpha)
    if estimates.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(estimates, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bca_ci(theta_hat: float, estimates, jackknife_values, alpha: float = 0.05) -> tuple[float, float]:
    """Bias-corrected and accelerated (BCa) bootstrap interval.

    With bootstrap estimates ``t_b`` (b = 1..B), the estimate ``t`` on the full sample and the
    leave-one-out estimates ``t_(i)`` with mean ``t_(.)``:

    * bias correction ``z0 = Phi^-1((#{t_b < t} + #{t_b <= t}) / (2B))`` (ties count one half);
    * acceleration ``a = sum (t_(.) - t_(i))^3 / (6 [sum (t_(.) - t_(i))^2]^(3/2))``;
    * the interval is the ``(a1, a2)`` quantiles of the ``t_b`` with
      ``a_k = Phi(z0 + (z0 + z_k) / (1 - a (z0 + z_k)))``, ``z_1 = Phi^-1(alpha/2)``,
      ``z_2 = Phi^-1(1 - alpha/2)``.

    With ``z0 = a = 0`` it is the percentile interval. This is ``scipy.stats.bootstrap``'s
    ``method="BCa"`` for one sample, to rounding, given the same resamples.

    Parameters
    ----------
    theta_hat : float
        The estimate on the full sample.
    estimates : array-like, shape (B,)
        Finite bootstrap estimates.
    jackknife_values : array-like, shape (n,)
        Finite leave-one-out estimates.
    alpha : float
        1 - confidence level.

    Returns
    -------
    (low, high) : tuple of float
        Falls back to the percentile interval, with a ``RuntimeWarning``, when every bootstrap
        estimate lies on one side of ``theta_hat`` (``z0`` infinite).

    References
    ----------
    .. [1] Efron, B. "Better bootstrap confidence intervals", Journal of the American Statistical
           Association 82(397), 171-185, 1987.
    .. [2] Efron, B., Tibshirani, R.J. "An Introduction to the Bootstrap", Chapman & Hall, 1993,
           section 14.3 (equations 14.9-14.15).
    """
    estimates = np.asarray(estimates, dtype=float).ravel()
    jack = np.asarray(jackknife_values, dtype=float).ravel()
    check_alpha(alpha)
    if estimates.size == 0:
        return float("nan"), float("nan")
    z0 = stats.norm.ppf((np.sum(estimates < theta_hat) + np.sum(estimates <= theta_hat)) / (2.0 * estimates.size))
    accel = _acceleration(jack)
    z = stats.norm.ppf([alpha / 2, 1 - alpha / 2])
    with np.errstate(invalid="ignore", divide="ignore"):
        q = stats.norm.cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))
    if not np.all(np.isfinite(q)):
        warnings.warn(
            "BCa interval undefined (every bootstrap estimate lies on one side of the estimate); "
            "using the percentile interval",
            RuntimeWarning,
            stacklevel=2,
        )
        q = np.array([alpha / 2, 1 - alpha / 2])
    low, high = np.quantile(estimates, q)
    return float(low), float(high)


def _acceleration(jack: np.ndarray) -> float:
    d = jack.mean() - jack if jack.size else jack
    denom = 6.0 * np.sum(d**2) ** 1.5
    return float(np.sum(d**3) / denom) if denom > 0 else 0.0


def check_alpha(alpha: float) -> None:
    """Raise an :class:`~esoct.errors.InputError` unless ``0 < alpha < 1`` (alpha = 1 - confidence level).

    Parameters
    ----------
    alpha : float
        1 - confidence level.
    """
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be between 0 and 1 (1 - confidence level), got {alpha}")


# --------------------------------------------------------------------------- generic bootstrap


def bootstrap_ci(
    stat_fn: Callable[..., np.ndarray],
    *arrays,
    n_resamples: int = 1000,
    seed: int = 0,
    strata=None,
    method: str = "percentile",
    alpha: float = 0.05,
    vectorized: bool = True,
    what: str = "statistic",
) -> CI:
    """Bootstrap confidence interval of any statistic of one or more paired arrays.

    Every array is indexed by the same rows of :func:`bootstrap_indices` (the observations are
    resampled as units, so paired arrays stay paired). With ``vectorized=True`` (the default)
    ``stat_fn`` receives a block of resamples at once: each array ``a`` of shape ``(n, ...)``
    arrives as ``a[rows]`` of shape ``(b, n, ...)`` -- one row per resample -- and ``stat_fn``
    returns shape ``(b,)``, so a metric written with numpy along ``axis=1`` is computed for all
    resamples together. The estimate is ``stat_fn`` on the full sample as a block of one
    (``a[None]``). Blocks hold at most :data:`CHUNK_CELLS` resampled cells. With
    ``vectorized=False`` ``stat_fn`` takes the arrays of one resample and returns a float.

    ``stat_fn`` returns NaN where the statistic is undefined (e.g. an AUC on a resample with one
    class only). Such resamples are left out of the interval, counted in ``CI.n_failed`` and
    reported with a ``RuntimeWarning``.

    Parameters
    ----------
    stat_fn : callable
        The statistic, see above.
    *arrays : array-like, each of shape (n, ...)
        The data, one row per observation.
    n_resamples : int
        Number of bootstrap resamples.
    seed : int
        Seed of the resamples.
    strata : array-like, shape (n,), optional
        Resample within strata (e.g. the outcome, so every resample keeps the class sizes).
    method : {"percentile", "bca"}
        Percentile interval, or bias-corrected and accelerated (:func:`bca_ci`; costs ``n`` more
        evaluations of the statistic for the jackknife).
    alpha : float
        1 - confidence level.
    vectorized : bool
        Whether ``stat_fn`` takes blocks of resamples.
    what : str
        Name of the statistic in warnings and errors.

    Returns
    -------
    CI
        ``replicates`` holds all ``n_resamples`` bootstrap estimates (NaN for failed ones).

    Raises
    ------
    esoct.errors.InputError
        No arrays, arrays of different lengths, an unknown method, or a statistic that is
        undefined on the full sample.

    References
    ----------
    .. [1] Efron, B., Tibshirani, R.J. "An Introduction to the Bootstrap", Chapman & Hall, 1993.
    .. [2] Efron, B. "Better bootstrap confidence intervals", JASA 82(397), 171-185, 1987.
    """
    arrays = _check_arrays(arrays)
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    check_alpha(alpha)
    n = arrays[0].shape[0]
    estimate = float(_evaluate(stat_fn, arrays, [np.arange(n)[None, :]], vectorized)[0])
    if not np.isfinite(estimate):
        raise InputError(f"the {what} is undefined (NaN or infinite) on the full sample")
    blocks = index_blocks(n, n_resamples, seed=seed, strata=strata)
    replicates = _evaluate(stat_fn, arrays, blocks, vectorized)
    finite, n_failed = drop_failed(replicates, what)
    if method == "percentile":
        low, high = percentile_ci(finite, alpha)
    else:
        jack = _evaluate(stat_fn, arrays, jackknife_blocks(n), vectorized)
        low, high = bca_ci(estimate, finite, jack[np.isfinite(jack)], alpha)
    return CI(estimate, low, high, 1 - alpha, method, int(n_resamples), replicates, n_failed)


def _check_arrays(arrays) -> list[np.ndarray]:
    if not arrays:
        raise InputError("bootstrap_ci needs at least one data array")
    arrays = [np.asarray(a) for a in arrays]
    lengths = {a.shape[0] if a.ndim else -1 for a in arrays}
    if len(lengths) != 1 or -1 in lengths:
        raise InputError(f"the data arrays must have the same number of rows, got lengths {sorted(lengths)}")
    return arrays


def _evaluate(stat_fn, arrays: list[np.ndarray], blocks, vectorized: bool) -> np.ndarray:
    """``stat_fn`` on every index row of every block; shape (total rows,) of float."""
    out = []
    for block in blocks:
        if vectorized:
            values = np.asarray(stat_fn(*(a[block] for a in arrays)), dtype=float).reshape(-1)
        else:
            values = np.array([float(stat_fn(*(a[row] for a in arrays))) for row in block], dtype=float)
        if values.shape[0] != block.shape[0]:
            raise InputError(
                f"a vectorised statistic must return one value per resample: got {values.shape[0]} for {block.shape[0]}"
            )
        out.append(values)
    return np.concatenate(out)


def drop_failed(replicates: np.ndarray, what: str = "statistic") -> tuple[np.ndarray, int]:
    """The finite replicates and how many were not; warns when some were dropped.

    Parameters
    ----------
    replicates : numpy.ndarray, shape (B,)
        Bootstrap estimates, NaN where undefined.
    what : str
        Name of the statistic for the warning.

    Returns
    -------
    finite : numpy.ndarray
    n_failed : int
    """
    ok = np.isfinite(replicates)
    n_failed = int(replicates.size - ok.sum())
    if n_failed:
        warnings.warn(
            f"{n_failed} of {replicates.size} bootstrap resamples left the {what} undefined "
            "(e.g. one class only); the interval uses the others (CI.n_failed)",
            RuntimeWarning,
            stacklevel=3,
        )
    return replicates[ok], n_failed
