"""Figures of the segmentation cascade: the node FROC curve and the learning curves of the stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from esoct.report.style import esoct_style, new_figure, save_figure


def plot_froc(curve: pd.DataFrame, path: str | Path, *, title: str = "Lymph nodes: FROC") -> Path:
    """FROC curve of node detection (:func:`esoct.evaluate.node_detection.froc`), the operating point in use marked.

    Parameters
    ----------
    curve : pandas.DataFrame
        ``min_volume_mm3``, ``fp_per_patient``, ``sensitivity`` (first row: no extra size threshold).
    path : str or Path
        PNG file.
    title : str

    Returns
    -------
    Path
    """
    with esoct_style():
        fig = new_figure((5.2, 4.0), layout="constrained")
        ax = fig.add_subplot()
        fp, sens = curve["fp_per_patient"].to_numpy(float), curve["sensitivity"].to_numpy(float)
        order = np.argsort(fp, kind="stable")
        ax.step(fp[order], sens[order], where="post", color="#1f77b4", label="minimum node volume varied")
        ax.scatter(fp[:1], sens[:1], color="#d62728", zorder=3, label=f"in use: {fp[0]:.2f} FP/patient, sensitivity {sens[0]:.2f}")
        ax.set_xlabel("false positives per patient")
        ax.set_ylabel("sensitivity (nodes >= 5 mm short axis)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=8)
        return save_figure(fig, path)[0]


def plot_learning_curves(histories: dict, path: str | Path, *, title: str = "Segmentation: learning curves",
                         loss: str = "ce_dice") -> Path:
    """Training loss per epoch of each run.

    Parameters
    ----------
    histories : dict
        Name -> list of epoch records with ``epoch`` and ``loss`` (``history.json`` of a training run),
        or a list of losses.
    path : str or Path
        PNG file.
    loss : {"ce_dice", "focal_dice"}
        The loss trained (named on the y axis).

    Returns
    -------
    Path
    """
    with esoct_style():
        fig = new_figure((6.0, 4.0), layout="constrained")
        ax = fig.add_subplot()
        import matplotlib.pyplot as plt

        n_colours = len(plt.rcParams["axes.prop_cycle"].by_key().get("color", [None]))
        for i, (name, history) in enumerate(h for h in histories.items() if h[1]):
            losses = [h["loss"] if isinstance(h, dict) else float(h) for h in history]
            # past the colour cycle the line style changes, so no two curves look alike;
            # a run of a few epochs gets large markers so that it is seen at all
            ax.plot(np.arange(1, len(losses) + 1), losses, marker="o", markersize=2.5 if len(losses) > 5 else 6,
                    linestyle=("-", "--", ":")[(i // max(n_colours, 1)) % 3], label=name)
        ax.set_xlabel("epoch")
        name = {"ce_dice": "cross-entropy + Dice", "focal_dice": "focal + Dice"}.get(loss, loss)
        ax.set_ylabel(f"training loss ({name}, deep-supervised)")
        ax.set_title(title)
        ax.legend(fontsize=7)
        return save_figure(fig, path)[0]
