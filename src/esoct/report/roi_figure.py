"""Figure of the three ROI extractions of one patient (slice sequence, 2.5D slab, KRT box)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def roi_figure(slices_npz: Path, slab_npz: Path, krt_image: Path, krt_mask: Path, png: Path, title: str = "") -> Path:
    """Draw up to 7 slices of the ResoLSTM sequence, the 7 slab channels and three KRT box views.

    Parameters
    ----------
    slices_npz, slab_npz : Path
        Outputs of :func:`esoct.study.roi_extraction.extract_cohort_rois`.
    krt_image, krt_mask : Path
        KRT box NIfTI files.
    png : Path
        Output PNG.
    title : str
        Figure title.

    Returns
    -------
    Path
        ``png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from esoct.io.imageio import read_image

    seq = np.load(slices_npz)
    slab = np.load(slab_npz)
    box = read_image(krt_image).array
    bmask = read_image(krt_mask).array
    n = 7
    fig, axes = plt.subplots(3, n, figsize=(2.2 * n, 7.2))
    pick = np.linspace(0, len(seq["images"]) - 1, min(n, len(seq["images"]))).round().astype(int)
    for k in range(n):
        ax = axes[0, k]
        if k < len(pick):
            i = pick[k]
            ax.imshow(seq["images"][i], cmap="gray", vmin=0, vmax=1)
            ax.contour(seq["masks"][i], levels=[0.5], colors="r", linewidths=0.8)
            ax.set_title(f"z={seq['z_mm'][i]:.0f} mm", fontsize=8)
        ax.axis("off")
        ax = axes[1, k]
        ax.imshow(slab["channels"][k], cmap="gray")
        ax.contour(slab["masks"][k], levels=[0.5], colors="r", linewidths=0.8)
        ax.set_title(f"slab channel {k}", fontsize=8)
        ax.axis("off")
    cz, cy, cx = (np.array(box.shape) // 2).tolist()
    views = [(box[cz], bmask[cz], "KRT axial"), (box[:, cy, :], bmask[:, cy, :], "KRT coronal"), (box[:, :, cx], bmask[:, :, cx], "KRT sagittal")]
    for k in range(n):
        ax = axes[2, k]
        if k < len(views):
            img, m, t = views[k]
            ax.imshow(np.clip(img, -160, 240), cmap="gray", origin="lower" if k else "upper")
            ax.contour(m == 1, levels=[0.5], colors="r", linewidths=0.8)
            ax.set_title(t, fontsize=8)
        ax.axis("off")
    axes[0, 0].text(-0.15, 0.5, "ResoLSTM\nslices", transform=axes[0, 0].transAxes, ha="right", va="center")
    axes[1, 0].text(-0.15, 0.5, "2.5D slab", transform=axes[1, 0].transAxes, ha="right", va="center")
    axes[2, 0].text(-0.15, 0.5, "KRT box\n128x64x64", transform=axes[2, 0].transAxes, ha="right", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png
