"""One matplotlib style for every esoct figure, a figure factory that needs no display, and saving."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Okabe-Ito palette (Okabe & Ito 2008), distinguishable with every common colour-vision deficiency.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")

#: Grey for reference lines (chance diagonal, treat-none) and per-fold curves.
REFERENCE_GREY = "#7F7F7F"

#: Resolution of saved PNG files (dots per inch).
SAVE_DPI = 200

#: rcParams of the esoct style, applied by :func:`esoct_style`.
RC_PARAMS = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "figure.titlesize": 12,
    "figure.dpi": 100,
    "axes.prop_cycle": None,  # set below from PALETTE
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#D9D9D9",
    "grid.linestyle": "-",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.8,
    "patch.linewidth": 0.6,
    "savefig.dpi": SAVE_DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "savefig.facecolor": "white",
    "svg.fonttype": "none",
}


def _rc() -> dict:
    """RC_PARAMS with the colour cycle built (cycler is imported lazily with matplotlib)."""
    from cycler import cycler

    return {**RC_PARAMS, "axes.prop_cycle": cycler(color=list(PALETTE))}


@contextmanager
def esoct_style(**overrides) -> Iterator[None]:
    """Apply the esoct matplotlib style inside a ``with`` block, restoring the previous one after.

    Parameters
    ----------
    **overrides
        rcParams that replace the style's own; their names contain dots, so pass them as
        ``esoct_style(**{"font.size": 12})``.

    Yields
    ------
    None
    """
    import matplotlib as mpl

    with mpl.rc_context({**_rc(), **overrides}):
        yield


def new_figure(figsize: tuple[float, float] = (5.0, 4.2), **kwargs):
    """Create a Figure drawn by the Agg canvas, outside pyplot (no display, nothing kept alive).

    Call it inside :func:`esoct_style` so the figure takes the style.

    Parameters
    ----------
    figsize : tuple of float
        Width and height in inches.
    **kwargs
        Passed to :class:`matplotlib.figure.Figure` (e.g. ``layout="constrained"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path, svg: bool = False, dpi: int = SAVE_DPI) -> list[Path]:
    """Write a figure as PNG (and SVG next to it on request), creating the folder.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or Path
        PNG file; a missing or different suffix is replaced by ``.png``.
    svg : bool
        Also write ``path`` with the suffix ``.svg`` (text kept as text).
    dpi : int
        PNG resolution.

    Returns
    -------
    list of Path
        The files written, PNG first.
    """
    png = Path(path).with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    written = [png]
    with esoct_style():
        fig.savefig(png, dpi=dpi, format="png")
        if svg:
            written.append(png.with_suffix(".svg"))
            fig.savefig(written[-1], format="svg")
    return written
