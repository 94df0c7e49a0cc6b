"""Grad-CAM PNGs of one prediction: 3D maps of the 4-class classifier, 2D maps of the ResoLSTM/ResNet slices.

Maps are averaged over the fold models (each explaining the ensemble's predicted class). Titles
name the model and the predicted class only, never the patient.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tstage4_gradcam(models: list, box, x, class_index: int, out_dir: str | Path) -> list[Path]:
    """3D Grad-CAM of the KRT box, mean over fold models, as axial overlays ``tstage4_max/center.png``.

    Parameters
    ----------
    models : list of MultitaskClassifier
        Fold models.
    box : KrtBox
        The crop (``image`` in HU, ``mask`` labels), arrays ``(z, y, x)``.
    x : torch.Tensor
        Normalised input ``(1, 1, Z, Y, X)``.
    class_index : int
        Explained stage (0 = T1).
    out_dir : str or Path
        Folder of the PNGs.

    Returns
    -------
    list of Path
    """
    from esoct.classify.gradcam3d import grad_cam_3d, save_cam_overlays, stage_name

    cams = [grad_cam_3d(m, x, class_index=class_index).cam for m in models]
    cam = np.mean(cams, axis=0)
    top = float(cam.max())
    cam = cam / top if top > 0 else cam
    title = f"4-class T stage, predicted {stage_name(class_index)}"
    paths = save_cam_overlays(box.image.array, cam, out_dir, "tstage4", labels=box.mask.array,
                              spacing_zyx=box.image.spacing, title=title, window=(-200.0, 300.0))
    return [paths["max"], paths["center"]]


def sequence_gradcam(models: list, images: np.ndarray, class_index: int, path: str | Path, title: str,
                     max_slices: int = 8) -> Path:
    """2D Grad-CAM (ResNet layer4) of one slice sequence, mean over fold models, as one montage PNG.

    Parameters
    ----------
    models : list of torch.nn.Module
        Fold models of one kind.
    images : numpy.ndarray, (S, H, W)
        ROIs in [0, 1], head to foot.
    class_index : int
        Explained class.
    path : str or Path
        PNG to write.
    title : str
        Figure title (model and predicted class; no patient field).
    max_slices : int
        At most this many slices, evenly spaced, are drawn.

    Returns
    -------
    Path
    """
    from esoct.report.style import esoct_style, new_figure, save_figure
    from esoct.tstage.explain import grad_cam

    cam = np.mean([grad_cam(m, images, class_idx=class_index) for m in models], axis=0)
    top = float(cam.max())
    cam = cam / top if top > 0 else cam
    idx = np.unique(np.linspace(0, len(images) - 1, min(max_slices, len(images))).round().astype(int))
    with esoct_style():
        fig = new_figure((2.0 * len(idx), 4.6), layout="constrained")
        axes = np.asarray(fig.subplots(2, len(idx), squeeze=False))
        for col, k in enumerate(idx):
            top_ax, cam_ax = axes[0, col], axes[1, col]
            for ax in (top_ax, cam_ax):
                ax.imshow(images[k], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_axis_off()
            cam_ax.imshow(np.ma.masked_less(cam[k], 0.1), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            top_ax.set_title(f"slice {k + 1}/{len(images)}", fontsize=8)
            cam_ax.set_title(f"max {cam[k].max():.2f}", fontsize=8)
        fig.suptitle(title + " (top: ROI, bottom: Grad-CAM, 0-1 over the sequence)", fontsize=9)
    return save_figure(fig, path)[0]
