"""A self-contained HTML page showing phantom patients per T stage, so a person can judge the phantom."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from esoct.io.imageio import read_image

ORGAN_COLOURS = {1: "#ff3b30", 2: "#ff9500", 3: "#34c759", 4: "#af52de", 5: "#0a84ff"}
ORGAN_NAMES = {1: "tumour", 2: "aorta", 3: "esophagus", 4: "lymph node", 5: "pericardium"}
LAYER_COLOURS = {1: "#ffd60a", 2: "#64d2ff", 3: "#ff453a", 4: "#30d158", 5: "#8e8e93"}


def _window(hu: np.ndarray, center: float = 40.0, width: float = 400.0) -> np.ndarray:
    lo, hi = center - width / 2, center + width / 2
    return (np.clip(hu, lo, hi) - lo) / (hi - lo)


def _overlay(ax, labels2d: np.ndarray, colours: dict) -> None:
    """Draw the outline of each label value in its colour."""
    for value, colour in colours.items():
        m = labels2d == value
        if m.any():
            ax.contour(m.astype(float), levels=[0.5], colors=[colour], linewidths=1.2)


def patient_figure(cohort: Path, record: dict, png: Path) -> Path:
    """Figure of one patient: axial CT at the largest tumour section, organ overlay, wall layers, coronal view.

    Parameters
    ----------
    cohort : Path
        Phantom cohort folder.
    record : dict
        The patient's record from truth.json.
    png : Path
        Where to save the PNG.

    Returns
    -------
    Path
        ``png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = record["files"]["pre"]
    image = read_image(cohort / files["image"])
    labels = read_image(cohort / files["labels"]).array
    layers = read_image(cohort / files["layers"]).array
    hu = image.array
    area = (labels == 1).sum(axis=(1, 2))
    z = int(np.argmax(area))
    ys, xs = np.nonzero(labels[z] == 1)
    cy, cx = int(ys.mean()), int(xs.mean())
    half = int(round(32 / image.spacing[1]))
    win = (slice(max(cy - half, 0), cy + half), slice(max(cx - half, 0), cx + half))
    sz, sy, sx = image.spacing
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    axes[0].imshow(_window(hu[z]), cmap="gray", aspect=sy / sx)
    axes[0].add_patch(plt.Rectangle((win[1].start, win[0].start), 2 * half, 2 * half, fill=False, ec="yellow", lw=1))
    axes[0].set_title("axial, window 40/400")
    axes[1].imshow(_window(hu[z][win]), cmap="gray")
    _overlay(axes[1], labels[z][win], ORGAN_COLOURS)
    axes[1].set_title("organ labels (zoom)")
    axes[2].imshow(_window(hu[z][win]), cmap="gray")
    _overlay(axes[2], layers[z][win], LAYER_COLOURS)
    _overlay(axes[2], (labels[z][win] == 1).astype(np.uint8), {1: "#ff3b30"})
    axes[2].set_title("wall layers + tumour (zoom)")
    axes[3].imshow(_window(hu[:, :, cx]), cmap="gray", origin="lower", aspect=sz / sy)
    _overlay(axes[3], labels[:, :, cx], ORGAN_COLOURS)
    axes[3].set_title("sagittal through tumour")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    depth = record["invasion_depth_mm"]
    fig.suptitle(
        f"{record['patient_id']}  centre {record['center']}  pT{record['t_stage']}"
        f"{' (' + record['t4_target'] + ')' if record.get('t4_target') else ''}  depth {depth:.1f} mm  "
        f"volume {record['tumour_volume_ml_pre']:.1f} ml  LNM {record['lnm']}  spacing {sx:.2f} x {sy:.2f} x {sz:.1f} mm",
        fontsize=11,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png


def _img_tag(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" style="max-width:100%">'


def _legend(colours: dict, names: dict) -> str:
    return " ".join(f'<span style="color:{c}">&#9632;</span> {html.escape(names[k])}' for k, c in colours.items())


def write_gallery(cohort: str | Path, out_html: str | Path, per_stage: int = 2, extra_figures: list[tuple[str, Path]] | None = None) -> Path:
    """Write an HTML page with ``per_stage`` patients of each T stage from a phantom cohort.

    Parameters
    ----------
    cohort : path
        Folder written by :func:`esoct.phantom.cohort.generate_cohort`.
    out_html : path
        Output HTML file; PNGs go to ``figures/`` beside it and are also embedded.
    per_stage : int
        Patients shown per T stage.
    extra_figures : list of (title, png path), optional
        More figures to append (e.g. ROI extractions).

    Returns
    -------
    Path
        The HTML file.
    """
    cohort = Path(cohort)
    out_html = Path(out_html)
    truth = json.loads((cohort / "truth.json").read_text())
    figdir = out_html.parent / "figures"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>esoct phantom cohort</title>",
        "<style>body{font-family:sans-serif;max-width:1300px;margin:auto;background:#111;color:#eee}"
        "h2{border-bottom:1px solid #444}td,th{padding:2px 8px}</style></head><body>",
        f"<h1>esoct phantom cohort</h1><p>{truth['n_patients']} patients, seed {truth['seed']}; "
        f"T stages {truth['summary']['t_stage_counts']}; centres {truth['summary']['center_counts']}; "
        f"censoring {truth['summary']['censoring_rate']}; oracle C-index {truth['summary']['oracle_c_index']}.</p>",
        f"<p>Organ labels: {_legend(ORGAN_COLOURS, ORGAN_NAMES)}. Wall layers: "
        f"{_legend(LAYER_COLOURS, {1: 'mucosa', 2: 'submucosa', 3: 'muscularis propria', 4: 'adventitia', 5: 'lumen'})}.</p>",
    ]
    for stage in (1, 2, 3, 4):
        chosen = [r for r in truth["patients"] if r["t_stage"] == stage][:per_stage]
        parts.append(f"<h2>pT{stage}</h2>")
        if not chosen:
            parts.append("<p>no patient of this stage in the cohort</p>")
        for rec in chosen:
            png = patient_figure(cohort, rec, figdir / f"{rec['patient_id']}_pre.png")
            parts.append(_img_tag(png))
    for title, png in extra_figures or []:
        parts.append(f"<h2>{html.escape(title)}</h2>{_img_tag(Path(png))}")
    parts.append("</body></html>")
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text("\n".join(parts))
    return out_html
