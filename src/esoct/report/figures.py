"""Publication figures from plain arrays: ROC per fold, Kaplan-Meier, calibration, decision and C-index curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import InputError
from esoct.report.style import (
    PALETTE,
    REFERENCE_GREY,
    esoct_style,
    new_figure,
    save_figure,
)


class PlotResult(tuple):
    """``(fig, ax)`` that unpacks as a pair and also carries what was drawn.

    Attributes
    ----------
    fig : matplotlib.figure.Figure
    ax : matplotlib.axes.Axes
        The main axes.
    data : dict
        The numbers behind the figure (documented by each plotting function).
    paths : list of Path
        Files written (empty when no ``path`` was given).
    """

    def __new__(cls, fig, ax, data: dict | None = None, paths: Sequence[Path] = ()):
        self = super().__new__(cls, (fig, ax))
        self.data = dict(data or {})
        self.paths = list(paths)
        return self

    @property
    def fig(self):
        """The figure."""
        return self[0]

    @property
    def ax(self):
        """The main axes."""
        return self[1]


# ---------------------------------------------------------------- helpers


def _finish(fig, ax, data: dict, path: str | Path | None, svg: bool) -> PlotResult:
    """Save when asked and wrap the result."""
    paths = save_figure(fig, path, svg=svg) if path is not None else []
    return PlotResult(fig, ax, data, paths)


def _axes(ax, figsize: tuple[float, float]):
    """``(fig, ax)``: the given axes and its figure, or a new constrained-layout figure."""
    if ax is not None:
        return ax.figure, ax
    fig = new_figure(figsize, layout="constrained")
    return fig, fig.add_subplot()


def _vector(x, name: str, n: int | None = None) -> np.ndarray:
    """``x`` as a finite 1-D float array (of length ``n``), or an InputError naming it."""
    arr = np.asarray(x, dtype=float).ravel()
    if n is not None and len(arr) != n:
        raise InputError(f"{name} has {len(arr)} values, expected {n}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} has {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    return arr


def _binary(y, name: str) -> np.ndarray:
    """``y`` as a 0/1 integer array, or an InputError."""
    arr = _vector(y, name)
    if not np.isin(arr, (0, 1)).all():
        raise InputError(f"{name} must be 0/1, found values {np.unique(arr[~np.isin(arr, (0, 1))])[:5].tolist()}")
    return arr.astype(int)


def _models(values, default: str) -> dict[str, object]:
    """A mapping name -> values from either a mapping or a single array."""
    if isinstance(values, Mapping):
        if not values:
            raise InputError("no model values given")
        return {str(k): v for k, v in values.items()}
    return {default: values}


def _format_p(p: float) -> str:
    """``p < 0.001`` or ``p = 0.012``."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# ---------------------------------------------------------------- ROC


def roc_on_grid(y_true, score, grid: np.ndarray) -> tuple[np.ndarray, float]:
    """TPR of one ROC curve at the FPR values of ``grid``, and the curve's AUC.

    The ROC curve is the polygon through scikit-learn's ``roc_curve`` points; where it rises
    vertically the largest TPR at that FPR is taken, so the result is non-decreasing.

    Parameters
    ----------
    y_true : array-like of {0, 1}
        Outcome.
    score : array-like of float
        Higher means more likely positive.
    grid : numpy.ndarray
        Increasing FPR values in [0, 1].

    Returns
    -------
    tpr : numpy.ndarray
        TPR at ``grid``.
    auc : float
        ``sklearn.metrics.roc_auc_score(y_true, score)``.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y_true, score, drop_intermediate=False)
    j = np.clip(np.searchsorted(fpr, grid, side="right") - 1, 0, len(fpr) - 2)  # last point with fpr <= x
    span = fpr[j + 1] - fpr[j]
    w = np.divide(grid - fpr[j], span, out=np.zeros_like(grid), where=span > 0)
    tpr_grid = np.where(grid >= fpr[-1], tpr[-1], tpr[j] + np.clip(w, 0, 1) * (tpr[j + 1] - tpr[j]))
    return tpr_grid, float(roc_auc_score(y_true, score))


def plot_roc_folds(
    folds: Sequence[tuple],
    *,
    band: str = "sd",
    grid_points: int = 201,
    label: str = "Mean ROC",
    title: str | None = None,
    show_fold_legend: bool | None = None,
    ax=None,
    path: str | Path | None = None,
    svg: bool = False,
) -> PlotResult:
    """ROC curve of every cross-validation fold, their mean on a common FPR grid with a band, and chance.

    Parameters
    ----------
    folds : sequence of (y_true, score)
        One pair per fold (or per cohort); each needs both classes.
    band : {"sd", "ci"}
        ``"sd"``: mean TPR +/- one SD across folds; ``"ci"``: pointwise 95 % t interval of the mean,
        ``mean +/- t(0.975, k-1) SD / sqrt(k)``. Clipped to [0, 1]; absent with one fold.
    grid_points : int
        Points of the common FPR grid ``linspace(0, 1, grid_points)``.
    label : str
        Legend name of the mean curve.
    title : str, optional
        Axes title.
    show_fold_legend : bool, optional
        List each fold in the legend (default: with at most 10 folds).
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    path : str or Path, optional
        Save the figure here (PNG).
    svg : bool
        Also save an SVG.

    Returns
    -------
    PlotResult
        ``(fig, ax)``; ``data`` holds ``aucs`` (one per fold, scikit-learn), ``auc_mean`` and
        ``auc_sd`` (SD with ``ddof=1``; the legend shows them), ``fpr`` and ``mean_tpr`` (the mean curve
        as drawn, starting at (0, 0)), ``band_low`` and ``band_high``, and ``fold_curves`` (each fold's
        ``(fpr, tpr)`` from ``roc_curve``, drawn as thin lines).
    """
    from scipy import stats

    if band not in ("sd", "ci"):
        raise InputError(f"band must be 'sd' or 'ci', got {band!r}")
    if len(folds) == 0:
        raise InputError("no folds given")
    grid = np.linspace(0.0, 1.0, grid_points)
    tprs, aucs, raw = _roc_folds(folds, grid)
    k = len(aucs)
    mean = tprs.mean(axis=0)
    sd = tprs.std(axis=0, ddof=1) if k > 1 else np.zeros_like(mean)
    half = sd if band == "sd" else stats.t.ppf(0.975, max(k - 1, 1)) * sd / np.sqrt(k)
    fpr, mean = np.r_[0.0, grid], np.r_[0.0, mean]
    low, high = np.clip(mean - np.r_[0.0, half], 0, 1), np.clip(mean + np.r_[0.0, half], 0, 1)
    auc_mean, auc_sd = float(np.mean(aucs)), float(np.std(aucs, ddof=1)) if k > 1 else 0.0
    show_folds = k <= 10 if show_fold_legend is None else show_fold_legend
    with esoct_style():
        fig, ax = _axes(ax, (5.0, 4.8))
        for i, ((f, t), a) in enumerate(zip(raw, aucs)):
            ax.plot(f, t, color=PALETTE[(i + 1) % len(PALETTE)], lw=0.9, alpha=0.55,
                    label=f"Fold {i + 1} (AUC = {a:.3f})" if show_folds else None)
        if k > 1:
            ax.fill_between(fpr, low, high, color=PALETTE[0], alpha=0.18, lw=0,
                            label="\u00b1 1 SD" if band == "sd" else "95 % CI")
        mean_label = f"{label} (AUC = {auc_mean:.3f} \u00b1 {auc_sd:.3f})" if k > 1 else f"{label} (AUC = {auc_mean:.3f})"
        ax.plot(fpr, mean, color=PALETTE[0], lw=2.4, label=mean_label)
        ax.plot([0, 1], [0, 1], ls="--", color=REFERENCE_GREY, lw=1, label="Chance")
        _square_unit_axes(ax, "False positive rate (1 \u2212 specificity)", "True positive rate (sensitivity)")
        ax.legend(loc="lower right")
        if title:
            ax.set_title(title)
    data = {"aucs": aucs, "auc_mean": auc_mean, "auc_sd": auc_sd, "fpr": fpr, "mean_tpr": mean, "fold_curves": raw,
            "band_low": low, "band_high": high}
    return _finish(fig, ax, data, path, svg)


def _roc_folds(folds: Sequence[tuple], grid: np.ndarray) -> tuple[np.ndarray, list[float], list[tuple]]:
    """TPR on ``grid``, AUC and raw (fpr, tpr) curve of every fold, checking each fold's input."""
    from sklearn.metrics import roc_curve

    tprs, aucs, raw = [], [], []
    for i, fold in enumerate(folds, start=1):
        if len(fold) != 2:
            raise InputError(f"fold {i}: expected a (y_true, score) pair")
        y = _binary(fold[0], f"fold {i} y_true")
        s = _vector(fold[1], f"fold {i} score", len(y))
        if len(np.unique(y)) < 2:
            raise InputError(f"fold {i} has only class {int(y[0]) if len(y) else '?'}; its ROC curve is undefined")
        tpr, auc = roc_on_grid(y, s, grid)
        tprs.append(tpr)
        aucs.append(auc)
        raw.append(roc_curve(y, s, drop_intermediate=False)[:2])
    return np.array(tprs), aucs, raw


def _square_unit_axes(ax, xlabel: str, ylabel: str) -> None:
    """[0, 1] x [0, 1] axes with equal aspect and the given labels."""
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


# ---------------------------------------------------------------- Kaplan-Meier


def at_risk_counts(time, groups, times) -> pd.DataFrame:
    """Number at risk per group at each time: patients whose follow-up time is >= t.

    This is R ``survfit``'s ``n.risk`` and lifelines' ``KaplanMeierFitter.event_table['at_risk']``
    convention (still followed just before ``t``).

    Parameters
    ----------
    time : array-like of float
        Follow-up times.
    groups : array-like
        Group of each patient (same length).
    times : array-like of float
        Times at which to count.

    Returns
    -------
    pandas.DataFrame
        Index: groups (sorted), columns: ``times``, integer counts.
    """
    time = np.asarray(time, dtype=float)
    groups = np.asarray(groups)
    order = _group_order(groups, None)
    counts = [[int(np.sum(time[groups == g] >= t)) for t in times] for g in order]
    return pd.DataFrame(counts, index=[str(g) for g in order], columns=list(times))


def _group_order(groups: np.ndarray, order: Sequence | None) -> list:
    """Group levels: ``order`` when given (checked), else sorted."""
    present = list(pd.unique(groups))
    if order is None:
        try:
            return sorted(present)
        except TypeError:
            return sorted(present, key=str)
    missing = [g for g in present if g not in list(order)]
    if missing:
        raise InputError(f"groups {missing} are not in group_order {list(order)}")
    return [g for g in order if g in present]


def _check_survival(time, event, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated times (>= 0), events (0/1) and groups (no missing)."""
    time = _vector(time, "time")
    if (time < 0).any():
        raise InputError(f"time has {int((time < 0).sum())} negative values")
    event = _binary(event, "event")
    if len(event) != len(time):
        raise InputError(f"event has {len(event)} values, time has {len(time)}")
    if groups is None:
        groups = np.full(len(time), "All", dtype=object)
    groups = np.asarray(groups, dtype=object)
    if len(groups) != len(time):
        raise InputError(f"groups has {len(groups)} values, time has {len(time)}")
    if pd.isna(groups).any():
        raise InputError(f"groups has {int(pd.isna(groups).sum())} missing values")
    return time, event, groups


def plot_km(
    time,
    event,
    groups=None,
    *,
    group_order: Sequence | None = None,
    at_risk_times: Sequence[float] | None = None,
    ci: bool = True,
    show_censors: bool = True,
    logrank: bool = True,
    xlabel: str = "Time (months)",
    ylabel: str = "Survival probability",
    title: str | None = None,
    path: str | Path | None = None,
    svg: bool = False,
) -> PlotResult:
    """Kaplan-Meier curves per group with 95 % CI bands, censoring ticks, log-rank p and a number-at-risk table.

    Parameters
    ----------
    time : array-like of float
        Follow-up times (>= 0).
    event : array-like of {0, 1}
        1 when the event was observed.
    groups : array-like, optional
        Group of each patient (e.g. low / high risk); one curve without it.
    group_order : sequence, optional
        Order of the curves and table rows (default: sorted levels).
    at_risk_times : sequence of float, optional
        Times of the x ticks and of the at-risk counts (default: about 6 round numbers from 0 to the
        largest time).
    ci : bool
        Draw the 95 % pointwise confidence band (lifelines' exponential Greenwood interval).
    show_censors : bool
        Mark censored times with a tick on the curve.
    logrank : bool
        Print the log-rank p-value (lifelines' ``multivariate_logrank_test``; for 2 groups the
        ordinary log-rank test) when there are at least two groups.
    xlabel, ylabel, title : str
        Axis labels and title.
    path : str or Path, optional
        Save the figure here (PNG).
    svg : bool
        Also save an SVG.

    Returns
    -------
    PlotResult
        ``(fig, ax)`` with the curves' axes; ``data`` holds ``at_risk`` (DataFrame, groups x
        ``at_risk_times``, see :func:`at_risk_counts`), ``at_risk_times``, ``survival`` (dict group ->
        lifelines survival function), ``logrank_p`` and ``logrank_statistic`` (NaN when not computed or
        when there is no event), and ``table_ax`` (the at-risk table's axes).
    """
    from lifelines import KaplanMeierFitter

    time, event, groups = _check_survival(time, event, groups)
    order = _group_order(groups, group_order)
    ticks = _km_ticks(time, at_risk_times)
    p, statistic = _logrank(time, event, groups) if logrank and len(order) > 1 else (np.nan, np.nan)
    at_risk = at_risk_counts(time, groups, ticks).loc[[str(g) for g in order]]
    fitters = {str(g): KaplanMeierFitter().fit(time[groups == g], event[groups == g], label=str(g)) for g in order}
    with esoct_style():
        fig, ax, table_ax = _km_layout(len(order))
        for i, (name, kmf) in enumerate(fitters.items()):
            m = groups == order[i]
            _draw_km(ax, kmf, name, time[m], event[m], PALETTE[i % len(PALETTE)], ci, show_censors)
        ax.set_xticks(ticks)
        right = max(ticks[-1], time.max())
        ax.set_xlim(ticks[0] - 0.04 * (right - ticks[0]), right + 0.02 * (right - ticks[0]))
        ax.set_ylim(0, 1.03)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if len(order) > 1:
            ax.legend(loc="upper right", title=None)
        if logrank and len(order) > 1:
            text = "Log-rank: no events" if not np.isfinite(p) else f"Log-rank {_format_p(p)}"
            ax.text(0.03, 0.04, text, transform=ax.transAxes, ha="left", va="bottom", fontsize=9.5)
        if title:
            ax.set_title(title)
        _draw_at_risk(table_ax, at_risk, ticks)
    data = {"at_risk": at_risk, "at_risk_times": list(ticks), "logrank_p": p, "logrank_statistic": statistic,
            "survival": {k: f.survival_function_.iloc[:, 0] for k, f in fitters.items()}, "table_ax": table_ax}
    return _finish(fig, ax, data, path, svg)


def _km_ticks(time: np.ndarray, at_risk_times: Sequence[float] | None) -> list[float]:
    """Tick / at-risk times: given, or round values from 0 to the largest time."""
    if at_risk_times is not None:
        ticks = sorted(float(t) for t in at_risk_times)
        if not ticks or ticks[0] < 0:
            raise InputError("at_risk_times must be non-empty and >= 0")
        return ticks
    from matplotlib.ticker import MaxNLocator

    top = float(time.max()) if time.max() > 0 else 1.0
    values = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(0.0, top)
    return [float(t) for t in values if 0 <= t <= top]


def _logrank(time: np.ndarray, event: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """Log-rank p-value and statistic across groups, NaN when no event was observed."""
    from lifelines.statistics import multivariate_logrank_test

    if event.sum() == 0:
        return np.nan, np.nan
    res = multivariate_logrank_test(time, groups.astype(str), event)
    return float(res.p_value), float(res.test_statistic)


def _km_layout(n_groups: int):
    """Figure with the curve axes on top and the at-risk table axes below, sharing x."""
    table_h = 0.35 + 0.22 * n_groups
    fig = new_figure((6.0, 4.3 + table_h), layout="constrained")
    grid = fig.add_gridspec(2, 1, height_ratios=[4.3, table_h])
    ax = fig.add_subplot(grid[0])
    table_ax = fig.add_subplot(grid[1], sharex=ax)
    return fig, ax, table_ax


def _draw_km(ax, kmf, name: str, time: np.ndarray, event: np.ndarray, color: str, ci: bool, show_censors: bool) -> None:
    """One Kaplan-Meier step curve with its band and censoring ticks."""
    sf = kmf.survival_function_.iloc[:, 0]
    ax.step(sf.index, sf.to_numpy(), where="post", color=color, lw=1.8, label=f"{name} (n = {len(time)})")
    if ci:
        band = kmf.confidence_interval_
        ax.fill_between(band.index, band.iloc[:, 0], band.iloc[:, 1], step="post", color=color, alpha=0.15, lw=0)
    if show_censors and (event == 0).any():
        censored = np.unique(time[event == 0])
        ax.plot(censored, kmf.survival_function_at_times(censored).to_numpy(), ls="none", marker="|",
                ms=6, mew=1.0, color=color)


def _draw_at_risk(table_ax, at_risk: pd.DataFrame, ticks: Sequence[float]) -> None:
    """The number-at-risk table: one row per group, counts under the ticks, group names in colour."""
    n = len(at_risk)
    for row, (name, counts) in enumerate(at_risk.iterrows()):
        for t, c in zip(ticks, counts):
            table_ax.text(t, row, str(int(c)), ha="center", va="center_baseline", fontsize=9,
                          color=PALETTE[row % len(PALETTE)] if n > 1 else "black")
    table_ax.set_ylim(n - 0.5, -0.5)
    table_ax.set_yticks(range(n))
    table_ax.set_yticklabels(list(at_risk.index), fontsize=9)
    for row, label in enumerate(table_ax.get_yticklabels()):
        label.set_color(PALETTE[row % len(PALETTE)] if n > 1 else "black")
    table_ax.tick_params(axis="both", length=0)
    table_ax.tick_params(axis="y", pad=8)
    table_ax.tick_params(axis="x", labelbottom=False)
    table_ax.grid(False)
    for side in ("top", "right", "bottom", "left"):
        table_ax.spines[side].set_visible(False)
    table_ax.set_title("Number at risk", loc="left", fontsize=9.5, fontweight="bold")


# ---------------------------------------------------------------- calibration


def calibration_bins(y_true, proba, n_bins: int = 10, strategy: str = "uniform") -> pd.DataFrame:
    """Observed event fraction per bin of predicted probability, with Wilson 95 % intervals.

    Bins as in ``sklearn.calibration.calibration_curve`` (same edges and assignment), so
    ``fraction_positive`` and ``mean_predicted`` equal its ``prob_true`` and ``prob_pred``.

    Parameters
    ----------
    y_true : array-like of {0, 1}
        Outcome.
    proba : array-like of float in [0, 1]
        Predicted probability of class 1.
    n_bins : int
        Number of bins.
    strategy : {"uniform", "quantile"}
        Equal-width bins on [0, 1] or bins with equal numbers of predictions.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin: ``mean_predicted``, ``fraction_positive``, ``count``, ``ci_low``,
        ``ci_high``.
    """
    from scipy import stats

    y = _binary(y_true, "y_true")
    p = _vector(proba, "proba", len(y))
    if ((p < 0) | (p > 1)).any():
        raise InputError("proba must lie in [0, 1]")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(p, np.linspace(0, 100, n_bins + 1))
    else:
        raise InputError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    ids = np.searchsorted(edges[1:-1], p, side="right")
    count = np.bincount(ids, minlength=n_bins)
    keep = count > 0
    pos = np.bincount(ids, weights=y, minlength=n_bins)[keep]
    n = count[keep]
    frac = pos / n
    z = stats.norm.ppf(0.975)
    centre = (frac + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(frac * (1 - frac) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    mean_pred = np.bincount(ids, weights=p, minlength=n_bins)[keep] / n
    return pd.DataFrame({"mean_predicted": mean_pred, "fraction_positive": frac, "count": n,
                         "ci_low": centre - half, "ci_high": centre + half})


def plot_calibration(
    y_true,
    proba,
    n_bins: int = 10,
    *,
    strategy: str = "uniform",
    label: str = "Model",
    title: str | None = None,
    path: str | Path | None = None,
    svg: bool = False,
) -> PlotResult:
    """Reliability diagram with the ideal diagonal and a histogram of the predictions below it.

    Parameters
    ----------
    y_true : array-like of {0, 1}
        Outcome.
    proba : array-like of float, or dict name -> array
        Predicted probabilities of one model, or of several to compare.
    n_bins : int
        Number of bins (see :func:`calibration_bins`).
    strategy : {"uniform", "quantile"}
        Binning.
    label : str
        Legend name when ``proba`` is a single array.
    title : str, optional
        Title of the reliability axes.
    path : str or Path, optional
        Save the figure here (PNG).
    svg : bool
        Also save an SVG.

    Returns
    -------
    PlotResult
        ``(fig, ax)`` with the reliability axes; ``data`` holds ``bins`` (dict model ->
        :func:`calibration_bins` table), ``brier`` (dict model -> Brier score) and ``hist_ax``.
        With one model the points carry Wilson 95 % intervals.
    """
    from sklearn.metrics import brier_score_loss

    models = _models(proba, label)
    y = _binary(y_true, "y_true")
    bins = {name: calibration_bins(y, p, n_bins, strategy) for name, p in models.items()}
    brier = {name: float(brier_score_loss(y, _vector(p, name, len(y)))) for name, p in models.items()}
    with esoct_style():
        fig = new_figure((5.0, 5.6), layout="constrained")
        grid = fig.add_gridspec(2, 1, height_ratios=[4, 1.2])
        ax = fig.add_subplot(grid[0])
        hist_ax = fig.add_subplot(grid[1], sharex=ax)
        ax.plot([0, 1], [0, 1], ls="--", color=REFERENCE_GREY, lw=1, label="Ideal")
        for i, (name, table) in enumerate(bins.items()):
            color = PALETTE[i % len(PALETTE)]
            err = None if len(bins) > 1 else np.clip([table.fraction_positive - table.ci_low, table.ci_high - table.fraction_positive], 0, None)  # Wilson bounds can miss 0/1 by rounding
            ax.errorbar(table.mean_predicted, table.fraction_positive, yerr=err, marker="o", ms=5, color=color,
                        capsize=2.5, lw=1.6, elinewidth=0.9, label=f"{name} (Brier = {brier[name]:.3f})" + ("; bars: 95 % CI" if err is not None else ""))
            hist_ax.hist(_vector(models[name], name), bins=np.linspace(0, 1, 41), color=color,
                         histtype="stepfilled" if len(bins) == 1 else "step", alpha=0.6 if len(bins) == 1 else 1, lw=1.2)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_ylabel("Observed fraction of positives")
        ax.tick_params(axis="x", labelbottom=False)
        ax.legend(loc="upper left")
        hist_ax.set_xlabel("Predicted probability")
        hist_ax.set_ylabel("Count")
        if title:
            ax.set_title(title)
    return _finish(fig, ax, {"bins": bins, "brier": brier, "hist_ax": hist_ax}, path, svg)


def plot_survival_calibration(
    pred_at_t,
    obs_km_at_t,
    ci_low=None,
    ci_high=None,
    *,
    t: float | None = None,
    label: str = "Model",
    time_unit: str = "months",
    title: str | None = None,
    ax=None,
    path: str | Path | None = None,
    svg: bool = False,
) -> PlotResult:
    """Survival calibration at time t: mean predicted survival per risk group against Kaplan-Meier observed.

    Call it again with the same ``ax`` to overlay cohorts (training, testing) or times.

    Parameters
    ----------
    pred_at_t : array-like of float
        Mean predicted survival probability at ``t`` of each risk group.
    obs_km_at_t : array-like of float
        Kaplan-Meier survival at ``t`` of the same groups.
    ci_low, ci_high : array-like of float, optional
        95 % interval of the Kaplan-Meier estimates (drawn as error bars).
    t : float, optional
        The time, for the axis labels.
    label : str
        Legend name.
    time_unit : str
        Unit of ``t``.
    title : str, optional
        Axes title.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    path : str or Path, optional
        Save the figure here (PNG).
    svg : bool
        Also save an SVG.

    Returns
    -------
    PlotResult
        ``(fig, ax)``; ``data`` holds ``predicted``, ``observed``, ``ci_low``, ``ci_high`` as arrays.
    """
    pred = _vector(pred_at_t, "pred_at_t")
    obs = _vector(obs_km_at_t, "obs_km_at_t", len(pred))
    if ((pred < 0) | (pred > 1) | (obs < 0) | (obs > 1)).any():
        raise InputError("survival probabilities must lie in [0, 1]")
    err = None
    if (ci_low is None) != (ci_high is None):
        raise InputError("give both ci_low and ci_high, or neither")
    if ci_low is not None:
        ci_low, ci_high = _vector(ci_low, "ci_low", len(pred)), _vector(ci_high, "ci_high", len(pred))
        if ((ci_low > obs + 1e-12) | (ci_high < obs - 1e-12)).any():
            raise InputError("the interval [ci_low, ci_high] must contain obs_km_at_t")
        err = [obs - ci_low, ci_high - obs]
    fresh = ax is None
    with esoct_style():
        fig, ax = _axes(ax, (4.8, 4.8))
        if fresh:
            ax.plot([0, 1], [0, 1], ls="--", color=REFERENCE_GREY, lw=1, label="Ideal")
        order = np.argsort(pred)
        ax.errorbar(pred[order], obs[order], yerr=None if err is None else [e[order] for e in err], marker="o", ms=5,
                    capsize=3, lw=1.6, elinewidth=0.9, label=label)
        at = "" if t is None else f" at {t:g} {time_unit}"
        _square_unit_axes(ax, f"Predicted survival probability{at}", f"Observed survival (Kaplan-Meier){at}")
        ax.legend(loc="upper left")
        if title:
            ax.set_title(title)
    data = {"predicted": pred, "observed": obs, "ci_low": ci_low, "ci_high": ci_high}
    return _finish(fig, ax, data, path, svg)


# ---------------------------------------------------------------- decision curve


def plot_decision_curve(
    thresholds,
    nb_models,
    nb_all,
    *,
    xlim: tuple[float, float] = (0.1, 0.7),
    ylim: tuple[float, float] | None = None,
    label: str = "Model",
    title: str | None = None,
    ax=None,
    path: str | Path | None = None,
    svg: bool = False,
) -> PlotResult:
    """Decision curve: net benefit of the model(s) over threshold probabilities, with treat-all and treat-none.

    Parameters
    ----------
    thresholds : array-like of float
        Threshold probabilities, increasing, in [0, 1).
    nb_models : array-like, or dict name -> array-like
        Net benefit of each model at ``thresholds``.
    nb_all : array-like
        Net benefit of treating everyone, ``prevalence - (1 - prevalence) pt / (1 - pt)``.
    xlim : tuple of float
        Threshold range shown (default 10 %-70 %, the RLN paper's range).
    ylim : tuple of float, optional
        Net-benefit range (default: from a little below 0 to a little above the largest value shown).
    label : str
        Legend name when ``nb_models`` is a single array.
    title : str, optional
        Axes title.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    path : str or Path, optional
        Save the figure here (PNG).
    svg : bool
        Also save an SVG.

    Returns
    -------
    PlotResult
        ``(fig, ax)``; ``data`` holds ``thresholds``, ``net_benefit`` (dict model -> array), ``treat_all``
        and ``lines`` (dict name -> Line2D, including ``"Treat all"`` and ``"Treat none"``).
    """
    th = _vector(thresholds, "thresholds")
    if (np.diff(th) <= 0).any() or th.min() < 0 or th.max() >= 1:
        raise InputError("thresholds must increase strictly within [0, 1)")
    nb = {name: _vector(v, f"net benefit of {name}", len(th)) for name, v in _models(nb_models, label).items()}
    nb_all = _vector(nb_all, "nb_all", len(th))
    with esoct_style():
        fig, ax = _axes(ax, (5.6, 4.2))
        lines = {}
        for i, (name, values) in enumerate(nb.items()):
            (lines[name],) = ax.plot(th, values, color=PALETTE[i % len(PALETTE)], lw=2, label=name)
        (lines["Treat all"],) = ax.plot(th, nb_all, color=REFERENCE_GREY, lw=1.3, label="Treat all")
        (lines["Treat none"],) = ax.plot(th, np.zeros_like(th), color="black", lw=1.3, ls="--", label="Treat none")
        ax.set_xlim(*xlim)
        ax.set_ylim(*(ylim or _nb_ylim(th, [*nb.values(), nb_all], xlim)))
        ax.xaxis.set_major_formatter(_percent_formatter())
        ax.set_xlabel("Threshold probability")
        ax.set_ylabel("Net benefit")
        ax.legend(loc="upper right")
        if title:
            ax.set_title(title)
    data = {"thresholds": th, "net_benefit": nb, "treat_all": nb_all, "lines": lines}
    return _finish(fig, ax, data, path, svg)


def _nb_ylim(th: np.ndarray, curves: list[np.ndarray], xlim: tuple[float, float]) -> tuple[float, float]:
    """Net-benefit range: from -10 % of the top to 10 % above the largest value inside ``xlim``."""
    inside = (th >= xlim[0]) & (th <= xlim[1])
    if not inside.any():
        inside = np.ones_like(th, dtype=bool)
    top = max(float(np.max(c[inside])) for c in curves)
    top = max(top, 0.01)
    return -0.1 * top, 1.1 * top


def _percent_formatter():
    """Tick formatter writing fractions as percentages."""
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=0)


# ---------------------------------------------------------------- time-dependent C-index


def plot_td_cindex(
    times,
    c,
    low=None,
    high=None,
    *,
    label: str = "Model",
    reference: float | None = 0.5,
    xlabel: str = "Time (months)",
    ylabel: str = "Time-dependent C-index",
    title: str | None = None,
    ax=None,
    path: str | Path | None = None,
    svg: bool = False,
) -> PlotResult:
    """Time-dependent C-index curve with its confidence band; call again on ``ax`` to overlay models.

    Parameters
    ----------
    times : array-like of float
        Evaluation times, increasing.
    c : array-like of float
        C-index at each time.
    low, high : array-like of float, optional
        Lower and upper confidence limits (drawn as a band).
    label : str
        Legend name.
    reference : float, optional
        Horizontal reference line (chance, 0.5); None for none.
    xlabel, ylabel, title : str
        Labels.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    path : str or Path, optional
        Save the figure here (PNG).
    svg : bool
        Also save an SVG.

    Returns
    -------
    PlotResult
        ``(fig, ax)``; ``data`` holds ``times``, ``c``, ``low``, ``high``.
    """
    times = _vector(times, "times")
    if (np.diff(times) <= 0).any():
        raise InputError("times must increase strictly")
    c = _vector(c, "c", len(times))
    if (low is None) != (high is None):
        raise InputError("give both low and high, or neither")
    if low is not None:
        low, high = _vector(low, "low", len(times)), _vector(high, "high", len(times))
    fresh = ax is None
    with esoct_style():
        fig, ax = _axes(ax, (5.6, 4.0))
        (line,) = ax.plot(times, c, lw=2, label=label)
        if low is not None:
            ax.fill_between(times, low, high, color=line.get_color(), alpha=0.18, lw=0)
        if fresh and reference is not None:
            ax.axhline(reference, ls="--", color=REFERENCE_GREY, lw=1)
            ax.text(0.99, reference, f"chance ({reference:g})", transform=ax.get_yaxis_transform(), ha="right",
                    va="bottom", fontsize=8.5, color=REFERENCE_GREY)
        ax.set_ylim(top=min(1.0, ax.get_ylim()[1]))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(loc="best")
        if title:
            ax.set_title(title)
    return _finish(fig, ax, {"times": times, "c": c, "low": low, "high": high}, path, svg)


# ---------------------------------------------------------------- importance and confusion


def plot_importance(
    names: Sequence[str],
    values,
    *,
    errors=None,
    top: int | None = 20,
    xlabel: str = "Mean |SurvSHAP(t)|",
    title: str | None = None,
    color: str = PALETTE[0],
    ax=None,
    path: str | Path | None = None,
    svg: bool = False,
) -> PlotResult:
    """Horizontal bar chart of feature importance, largest at the top, values printed at the bar ends.

    Parameters
    ----------
    names : sequence of str
        Feature names.
    values : array-like of float
        Importance of each feature (e.g. mean absolute SurvSHAP(t)).
    errors : array-like of float, optional
        Error bar half-widths.
    top : int, optional
        Show only the ``top`` most important features (None: all).
    xlabel, title : str
        Labels.
    color : str
        Bar colour.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    path : str or Path, optional
        Save the figure here (PNG).
    svg : bool
        Also save an SVG.

    Returns
    -------
    PlotResult
        ``(fig, ax)``; ``data`` holds ``order`` (a DataFrame of ``name``, ``value`` (and ``error``) as
        drawn, top to bottom).
    """
    values = _vector(values, "values", len(names))
    table = pd.DataFrame({"name": [str(n) for n in names], "value": values})
    if errors is not None:
        table["error"] = _vector(errors, "errors", len(names))
    table = table.sort_values("value", ascending=False, kind="stable").head(top or len(table)).reset_index(drop=True)
    with esoct_style():
        fig, ax = _axes(ax, (6.0, 1.0 + 0.32 * len(table)))
        y = np.arange(len(table))
        ax.barh(y, table["value"], xerr=table.get("error"), color=color, height=0.7, capsize=2,
                error_kw={"elinewidth": 0.8})
        ax.set_yticks(y, table["name"])
        ax.invert_yaxis()
        right = (table["value"] + table.get("error", 0)).max()
        for yi, v in zip(y, table["value"]):
            ax.text(v + 0.01 * right, yi, f"{v:#.3g}", va="center", ha="left", fontsize=8.5)
        ax.set_xlim(min(0.0, table["value"].min() * 1.1), right * 1.15 if right > 0 else 1)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title)
    return _finish(fig, ax, {"order": table}, path, svg)


def plot_confusion(
    cm,
    labels: Sequence[str],
    *,
    title: str | None = None,
    cmap: str = "Blues",
    ax=None,
    path: str | Path | None = None,
    svg: bool = False,
) -> PlotResult:
    """Confusion matrix: counts and row percentages in every cell, coloured by the fraction of the true class.

    Parameters
    ----------
    cm : array-like of int, shape (k, k)
        Counts, rows true classes, columns predicted classes (scikit-learn's ``confusion_matrix``).
    labels : sequence of str
        Class names, length k.
    title : str, optional
        Axes title.
    cmap : str
        Colour map name.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    path : str or Path, optional
        Save the figure here (PNG).
    svg : bool
        Also save an SVG.

    Returns
    -------
    PlotResult
        ``(fig, ax)``; ``data`` holds ``counts`` and ``row_fraction`` (NaN rows for classes never true).
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(labels):
        raise InputError(f"cm must be square with one row per label; got shape {cm.shape} for {len(labels)} labels")
    if (cm < 0).any() or not np.all(np.mod(cm, 1) == 0):
        raise InputError("cm must hold non-negative integer counts")
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.full(cm.shape, np.nan), where=rows > 0)
    k = len(labels)
    with esoct_style():
        fig, ax = _axes(ax, (max(4.4, 1.4 + 0.9 * k), max(3.6, 1.0 + 0.9 * k)))
        image = ax.imshow(np.nan_to_num(frac), cmap=cmap, vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                pct = "" if np.isnan(frac[i, j]) else f"\n{100 * frac[i, j]:.0f} %"
                ax.text(j, i, f"{int(cm[i, j])}{pct}", ha="center", va="center", fontsize=9.5,
                        color="white" if np.nan_to_num(frac[i, j]) > 0.55 else "black")
        ax.set_xticks(range(k), [str(x) for x in labels])
        ax.set_yticks(range(k), [str(x) for x in labels])
        ax.set_xlabel("Predicted class")
        ax.set_ylabel("True class")
        ax.grid(False)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Fraction of true class")
        if title:
            ax.set_title(title)
    return _finish(fig, ax, {"counts": cm, "row_fraction": frac}, path, svg)
