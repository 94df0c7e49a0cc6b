"""Cox nomogram: points per covariate, total points, linear predictor and survival probabilities at given times."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import InputError

#: Survival probabilities labelled on the survival axes (those inside the attainable range).
SURVIVAL_TICKS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass
class _Scales:
    features: list
    coef: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    ref: np.ndarray  # covariate value scoring 0 points
    max_range: float  # largest |coef| * (hi - lo): 100 points
    total_max: float
    lp0: float  # linear predictor at 0 total points

    def points(self, X: np.ndarray) -> np.ndarray:
        return 100.0 * self.coef * (X - self.ref) / self.max_range

    def lp_from_total(self, total) -> np.ndarray:
        return self.lp0 + np.asarray(total, dtype=float) * self.max_range / 100.0

    def total_from_lp(self, lp) -> np.ndarray:
        return (np.asarray(lp, dtype=float) - self.lp0) * 100.0 / self.max_range


def _scales(cox, X: pd.DataFrame) -> _Scales:
    from sklearn.utils.validation import check_is_fitted

    from esoct.survival.cox import _as_frame

    check_is_fitted(cox, "coef_")
    features = list(cox.feature_names_in_)
    df = _as_frame(X, features, what="X")
    lo = df.min().to_numpy(dtype=float)
    hi = df.max().to_numpy(dtype=float)
    coef = np.asarray(cox.coef_, dtype=float)
    ranges = np.abs(coef) * (hi - lo)
    if not ranges.max() > 0:
        raise InputError("every covariate is constant in X or has a zero coefficient: nothing to draw")
    ref = np.where(coef >= 0, lo, hi)
    max_range = float(ranges.max())
    return _Scales(
        features=features,
        coef=coef,
        lo=lo,
        hi=hi,
        ref=ref,
        max_range=max_range,
        total_max=float((100.0 * ranges / max_range).sum()),
        lp0=float(coef @ ref),
    )


def nomogram_points(cox, X: pd.DataFrame, time_points=(12, 36), patients: pd.DataFrame | None = None) -> pd.DataFrame:
    """Points of each covariate, total points, linear predictor and survival, as read off the nomogram.

    The scales are those of :func:`nomogram_figure` for the same ``cox`` and ``X``: the
    covariate with the largest ``|coef| * range`` in ``X`` spans 0-100 points, every other
    covariate ``100 * |coef| * (x - x_ref) / that largest range`` (``x_ref`` the covariate's
    minimum when its coefficient is positive, its maximum when negative).

    Parameters
    ----------
    cox : esoct.survival.cox.CoxPH
        Fitted model.
    X : pandas.DataFrame
        Patients that define the covariate ranges (usually the training cohort).
    time_points : sequence of float
        Times of the survival probabilities.
    patients : pandas.DataFrame, optional
        Patients to score (default ``X``); values outside ``X``'s range extrapolate.

    Returns
    -------
    pandas.DataFrame
        ``points[<covariate>]`` columns, ``total_points``, ``linear_predictor`` and
        ``survival_<t>`` per time point, one row per patient.
    """
    from esoct.survival.cox import _as_frame

    sc = _scales(cox, X)
    P = _as_frame(X if patients is None else patients, sc.features, what="patients").to_numpy()
    pts = sc.points(P)
    total = pts.sum(axis=1)
    lp = sc.lp_from_total(total)
    out = pd.DataFrame(pts, columns=[f"points[{f}]" for f in sc.features])
    out["total_points"] = total
    out["linear_predictor"] = lp
    surv = cox.survival_at(lp, np.asarray(time_points, dtype=float))
    for k, t in enumerate(time_points):
        out[f"survival_{t:g}"] = surv[:, k]
    return out


def _nice_ticks(lo: float, hi: float, nbins: int = 6) -> np.ndarray:
    from matplotlib.ticker import MaxNLocator

    if hi <= lo:
        return np.array([lo])
    ticks = MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    eps = 1e-9 * (hi - lo)
    return ticks[(ticks >= lo - eps) & (ticks <= hi + eps)]


def _covariate_ticks(values: pd.Series, lo: float, hi: float) -> np.ndarray:
    uniq = np.unique(values.to_numpy(dtype=float))
    if len(uniq) <= 6 and np.allclose(uniq, np.round(uniq)):
        return uniq
    return _nice_ticks(lo, hi)


def _thin(positions: np.ndarray, labels: list, min_gap: float) -> tuple[np.ndarray, list]:
    """Drop ticks closer than ``min_gap`` (in points units) to the previous kept one."""
    order = np.argsort(positions)
    keep, last = [], -np.inf
    for i in order:
        if positions[i] - last >= min_gap:
            keep.append(i)
            last = positions[i]
    return positions[keep], [labels[i] for i in keep]


def nomogram_figure(
    cox,
    X: pd.DataFrame,
    time_points=(12, 36),
    path: str | Path = "nomogram.png",
    *,
    time_unit: str = "month",
    names: dict | None = None,
    title: str | None = "Nomogram",
    svg: bool = False,
) -> Path:
    """Draw the classic nomogram of a Cox model and save it as PNG.

    Rows, top to bottom: a 0-100 *Points* axis; one axis per covariate spanning its range
    in ``X`` and scaled by ``|coef| * range`` (the widest covariate gets 100 points; a
    negative coefficient runs right to left); *Total points*; the *Linear predictor*; and
    the predicted survival probability at each of ``time_points``, from the model's Breslow
    baseline: ``S(t) = exp(-H0(t) * exp(lp - lp_reference))``. To read it, find each
    covariate's points on the top axis, add them, and drop a vertical line from the total.
    :func:`nomogram_points` gives the same numbers as a table.

    Parameters
    ----------
    cox : esoct.survival.cox.CoxPH
        Fitted model (covariates already numeric: binary 0/1, stage ordinal...).
    X : pandas.DataFrame
        Patients defining the covariate ranges (usually the training cohort).
    time_points : sequence of float
        Times of the survival axes, in ``time_unit``.
    path : str or Path
        PNG file to write (suffix replaced by ``.png``).
    time_unit : str
        Unit word for the survival axis labels ("month" gives "12-month survival").
    names : dict, optional
        Display names of covariates ``{column: label}``.
    title : str or None
        Figure title.
    svg : bool
        Also write an SVG next to the PNG.

    Returns
    -------
    Path
        The PNG written.

    References
    ----------
    .. [1] Iasonos A, Schrag D, Raj GV, Panageas KS. How to build and interpret a nomogram
       for cancer prognosis. J Clin Oncol 2008;26:1364-1370.
    .. [2] Harrell FE. Regression Modeling Strategies, 2nd ed. Springer 2015 (rms::nomogram).
    """
    from esoct.report.style import PALETTE, REFERENCE_GREY, esoct_style, new_figure, save_figure

    sc = _scales(cox, X)
    times = [float(t) for t in time_points]
    h0 = cox.baseline_cumulative_hazard_
    first_event = float(h0.index[np.argmax(h0.to_numpy() > 0)]) if (h0.to_numpy() > 0).any() else np.inf
    for t in times:
        if not t >= first_event:
            raise InputError(
                f"time point {t:g} lies before the first event time {first_event:g}: survival is 1 for everyone"
            )
    names = names or {}
    df = X.loc[:, sc.features]

    rows = 1 + len(sc.features) + 2 + len(times)
    with esoct_style():
        fig = new_figure(figsize=(9.0, 0.62 * rows + (0.6 if title else 0.2)))
        ax = fig.add_axes((0.2, 0.03, 0.76, 0.9 if title else 0.95))
        ax.set_xlim(-1, 101)
        ax.set_ylim(-rows + 0.6, 0.6)
        ax.axis("off")
        tick_h, label_dy, fs = 0.13, 0.18, 8

        def axis_row(y: float, label: str, extent, positions, tick_labels, color="black", bold=False):
            positions = np.asarray(positions, dtype=float)
            ax.plot([min(extent), max(extent)], [y, y], color=color, lw=1.0, solid_capstyle="butt")
            for x, lab in zip(positions, tick_labels):
                ax.plot([x, x], [y, y + tick_h], color=color, lw=0.9)
                ax.text(x, y + label_dy, lab, ha="center", va="bottom", fontsize=fs, color=color)
            ax.text(-3, y, label, ha="right", va="center", fontsize=9, fontweight="bold" if bold else "normal")

        y = 0.0
        minor = np.arange(0, 101, 5)
        ax.plot([0, 100], [y, y], color="black", lw=1.0)
        for x in minor:
            ax.plot([x, x], [y, y + (tick_h if x % 10 == 0 else tick_h / 2)], color="black", lw=0.9)
        for x in range(0, 101, 10):
            ax.text(x, y + label_dy, f"{x}", ha="center", va="bottom", fontsize=fs)
        ax.text(-3, y, "Points", ha="right", va="center", fontsize=9, fontweight="bold")
        for x in range(0, 101, 10):
            ax.plot([x, x], [y, -len(sc.features) - 0.2], color=REFERENCE_GREY, lw=0.4, alpha=0.35, zorder=0)

        for j, feat in enumerate(sc.features):
            y -= 1
            ticks = _covariate_ticks(df[feat], sc.lo[j], sc.hi[j])
            pos = 100.0 * sc.coef[j] * (ticks - sc.ref[j]) / sc.max_range
            labs = [f"{v:g}" for v in ticks]
            pos, labs = _thin(pos, labs, 3.0)
            extent = 100.0 * sc.coef[j] * (np.array([sc.lo[j], sc.hi[j]]) - sc.ref[j]) / sc.max_range
            axis_row(y, names.get(feat, feat), extent, pos, labs)

        scale = 100.0 / sc.total_max  # total points -> x
        y -= 1
        tt = _nice_ticks(0.0, sc.total_max, nbins=10)
        pos, labs = _thin(tt * scale, [f"{v:g}" for v in tt], 3.0)
        axis_row(y, "Total points", (0.0, 100.0), pos, labs, bold=True)

        y -= 1
        lp_lo, lp_hi = sc.lp0, float(sc.lp_from_total(sc.total_max))
        lt = _nice_ticks(lp_lo, lp_hi, nbins=8)
        pos, labs = _thin(sc.total_from_lp(lt) * scale, [f"{v:g}" for v in lt], 3.0)
        axis_row(y, "Linear predictor", (0.0, 100.0), pos, labs)

        for t in times:
            y -= 1
            s_at = cox.survival_at(np.array([lp_lo, lp_hi]), [t])[:, 0]
            s_max, s_min = float(s_at.max()), float(s_at.min())
            probs = [p for p in SURVIVAL_TICKS if s_min <= p <= s_max]
            if probs:
                # invert S(t | lp) = exp(-H0(t) exp(lp - lp_ref)) for lp; H0(t) > 0 checked above
                cum = -np.log(cox.survival_at(np.array([cox.lp_reference_]), [t])[0, 0])
                lps = cox.lp_reference_ + np.log(-np.log(np.asarray(probs)) / cum)
                pos, labs = _thin(sc.total_from_lp(lps) * scale, [f"{p:g}" for p in probs], 4.0)
            else:
                pos, labs = np.array([]), []
            label = f"{t:g}-{time_unit} survival" if time_unit else f"S({t:g})"
            axis_row(y, label, (0.0, 100.0), pos, labs, color=PALETTE[0])
        if title:
            fig.suptitle(title, x=0.5, y=0.99, va="top")
        written = save_figure(fig, path, svg=svg)
    return written[0]
