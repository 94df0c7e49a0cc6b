"""Volume agreement figures of a segmentation (nn-TransEC Fig. 11): predicted-vs-reference scatter with Pearson r, and Bland-Altman."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from esoct.errors import InputError
from esoct.evaluate.segmentation import VolumeAgreement, volume_agreement
from esoct.report.figures import PlotResult, _axes, _finish, _format_p
from esoct.report.style import PALETTE, REFERENCE_GREY, esoct_style, new_figure

_POINT = PALETTE[0]  # blue points, as in the paper
_FIT = PALETTE[1]  # vermillion fitted line
_BAND = PALETTE[5]  # sky-blue limits-of-agreement band


def _pair(reference_ml, predicted_ml) -> tuple[np.ndarray, np.ndarray, VolumeAgreement]:
    stats = volume_agreement(reference_ml, predicted_ml)  # validates both
    return np.asarray(reference_ml, dtype=float).ravel(), np.asarray(predicted_ml, dtype=float).ravel(), stats


def _num(value: float) -> str:
    """Three significant digits with a typographic minus, as on the axes."""
    return f"{value:.3g}".replace("-", "\u2212")


def _text_box(ax, text: str, loc: str) -> None:
    x, ha = (0.03, "left") if "left" in loc else (0.97, "right")
    y, va = (0.97, "top") if "upper" in loc else (0.03, "bottom")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=8.5,
            bbox={"boxstyle": "round,pad=0.35", "facecolor": "white", "edgecolor": "#BFBFBF", "alpha": 0.9})


def plot_volume_correlation(
    reference_ml,
    predicted_ml,
    *,
    title: str | None = None,
    unit: str = "ml",
    ax=None,
    path: str | Path | None = None,
    svg: bool = False,
) -> PlotResult:
    """Predicted vs reference volume, one point per patient, with the fitted line, identity and Pearson r.

    Parameters
    ----------
    reference_ml, predicted_ml : array-like of float
        Volumes of the same patients, ml (at least 3).
    title : str, optional
        Axes title (e.g. the class name).
    unit : str
        Unit written on the axes (the values are not converted).
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    path : str or Path, optional
        Save the figure here (PNG).
    svg : bool
        Also save an SVG.

    Returns
    -------
    PlotResult
        ``(fig, ax)``; ``data`` holds ``stats`` (:class:`~esoct.evaluate.segmentation.VolumeAgreement`:
        Pearson r and p as printed in the upper box, slope and intercept of the red line as printed
        in the lower box) and ``limits`` (the common x/y range).
    """
    ref, pred, stats = _pair(reference_ml, predicted_ml)
    lo = float(min(ref.min(), pred.min()))
    hi = float(max(ref.max(), pred.max()))
    pad = 0.06 * (hi - lo if hi > lo else max(hi, 1.0))
    limits = (max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad)
    with esoct_style():
        fig, ax = _axes(ax, (4.6, 4.4))
        ax.plot(limits, limits, ls="--", color=PALETTE[2], lw=1.2, label="Identity (y = x)")
        ax.scatter(ref, pred, s=26, color=_POINT, alpha=0.85, edgecolor="white", linewidth=0.5, zorder=3,
                   label=f"Patients (n = {stats.n})")
        if np.isfinite(stats.slope):
            xs = np.array(limits)
            ax.plot(xs, stats.slope * xs + stats.intercept, color=_FIT, lw=1.6, label="Least-squares fit")
            sign = "+" if stats.intercept >= 0 else "\u2212"
            text = (f"Pearson r = {stats.pearson_r:.3f}, {_format_p(stats.p_value)}\n"
                    f"fit: y = {stats.slope:.3f} x {sign} {abs(stats.intercept):.3g}")
        else:
            text = "Pearson r undefined (constant volumes)"
        _text_box(ax, text, "upper left")
        ax.set_xlim(limits)
        ax.set_ylim(limits)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(f"Reference volume ({unit})")
        ax.set_ylabel(f"Predicted volume ({unit})")
        ax.legend(loc="lower right")
        if title:
            ax.set_title(title)
    return _finish(fig, ax, {"stats": stats, "limits": limits}, path, svg)


def plot_bland_altman(
    reference_ml,
    predicted_ml,
    *,
    title: str | None = None,
    unit: str = "ml",
    ax=None,
    path: str | Path | None = None,
    svg: bool = False,
) -> PlotResult:
    """Bland-Altman plot: difference (predicted - reference) against the mean of both, with bias and 95 % limits.

    Parameters
    ----------
    reference_ml, predicted_ml : array-like of float
        Volumes of the same patients, ml (at least 3).
    title : str, optional
        Axes title.
    unit : str
        Unit written on the axes.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of on a new figure.
    path : str or Path, optional
        Save the figure here (PNG).
    svg : bool
        Also save an SVG.

    Returns
    -------
    PlotResult
        ``(fig, ax)``; ``data`` holds ``stats`` (:class:`~esoct.evaluate.segmentation.VolumeAgreement`:
        the solid line is ``mean_difference_ml``, the dashed lines and the shaded band
        ``loa_low_ml`` .. ``loa_high_ml``), ``mean`` and ``difference`` (the plotted points).

    References
    ----------
    Bland, J. M., & Altman, D. G. (1986). Statistical methods for assessing agreement between two methods of
    clinical measurement. The Lancet, 327(8476), 307-310.
    """
    ref, pred, stats = _pair(reference_ml, predicted_ml)
    mean = (ref + pred) / 2
    diff = pred - ref
    with esoct_style():
        fig, ax = _axes(ax, (5.0, 4.0))
        ax.axhspan(stats.loa_low_ml, stats.loa_high_ml, color=_BAND, alpha=0.18, lw=0, label="95 % limits of agreement")
        for y in (stats.loa_low_ml, stats.loa_high_ml):
            ax.axhline(y, color="black", ls="--", lw=1.0)
        ax.axhline(0.0, color=REFERENCE_GREY, lw=0.8)
        ax.axhline(stats.mean_difference_ml, color="black", lw=1.4, label="Mean difference")
        ax.scatter(mean, diff, s=26, color=_POINT, alpha=0.85, edgecolor="white", linewidth=0.5, zorder=3)
        x_hi = ax.get_xlim()[1]
        for y, text in ((stats.loa_high_ml, f"+1.96 SD  {_num(stats.loa_high_ml)}"),
                        (stats.mean_difference_ml, f"mean  {_num(stats.mean_difference_ml)}"),
                        (stats.loa_low_ml, f"\u22121.96 SD  {_num(stats.loa_low_ml)}")):
            ax.annotate(text, (x_hi, y), xytext=(-3, 3), textcoords="offset points", ha="right", va="bottom", fontsize=8,
                        bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.75})
        lo = min(stats.loa_low_ml, float(diff.min()), 0.0)
        hi = max(stats.loa_high_ml, float(diff.max()), 0.0)
        pad = 0.18 * (hi - lo if hi > lo else 1.0)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel(f"Mean of predicted and reference volume ({unit})")
        ax.set_ylabel(f"Predicted \u2212 reference ({unit})")
        ax.legend(loc="best")
        if title:
            ax.set_title(title)
    return _finish(fig, ax, {"stats": stats, "mean": mean, "difference": diff}, path, svg)


def plot_volume_agreement(
    volumes: Mapping[str, tuple],
    *,
    unit: str = "ml",
    path: str | Path | None = None,
    svg: bool = False,
) -> PlotResult:
    """The paper's Fig. 11: one column per class, correlation on top (A) and Bland-Altman below (B).

    Parameters
    ----------
    volumes : mapping class name -> (reference_ml, predicted_ml)
        Volumes of each class over the same or different patients.
    unit : str
        Unit written on the axes.
    path : str or Path, optional
        Save the figure here (PNG).
    svg : bool
        Also save an SVG.

    Returns
    -------
    PlotResult
        ``(fig, axes)`` with ``axes`` of shape (2, n_classes); ``data["stats"]`` maps each class
        to its :class:`~esoct.evaluate.segmentation.VolumeAgreement`.
    """
    if not volumes:
        raise InputError("no class volumes given")
    names = list(volumes)
    with esoct_style():
        fig = new_figure((4.2 * len(names), 8.0), layout="constrained")
        axes = np.asarray(fig.subplots(2, len(names), squeeze=False))
        stats = {}
        for j, name in enumerate(names):
            try:
                ref, pred = volumes[name]
            except (TypeError, ValueError):
                raise InputError(f"volumes[{name!r}] must be a pair (reference_ml, predicted_ml)") from None
            top = plot_volume_correlation(ref, pred, title=f"A{j + 1}  {name}", unit=unit, ax=axes[0, j])
            plot_bland_altman(ref, pred, title=f"B{j + 1}  {name}", unit=unit, ax=axes[1, j])
            stats[name] = top.data["stats"]
    return _finish(fig, axes, {"stats": stats}, path, svg)
