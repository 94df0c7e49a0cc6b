"""(a) ResoLSTM-Depth: one square ROI per tumour slice, ordered head to foot."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from esoct.io.volume import Volume
from esoct.preprocess.resample import AIR_HU
from esoct.preprocess.roi._common import _sample_plane, _superior_step, _tumour


PAPER_MARGIN = (1.0, 1.2)  # ResoLSTM-Depth: side = 1.0-1.2 x tumour diameter
MARGIN_LIMITS = (1.0, 2.0)  # accepted (with a warning outside PAPER_MARGIN)


@dataclass(frozen=True, eq=False)
class RoiSequence:
    """Square 2D tumour ROIs, one per tumour slice, ordered head to foot (superior first).

    Attributes
    ----------
    images : numpy.ndarray, (n, size, size) float32
        Linearly interpolated values (HU unless normalised), air (-1024) outside the scan.
        Rows follow the image's row (y) axis, columns its column (x) axis.
    masks : numpy.ndarray, (n, size, size) uint8
        Tumour (1) / background (0), nearest neighbour.
    slice_index : numpy.ndarray, (n,) int
        Source array z index of each ROI.
    z_mm : numpy.ndarray, (n,) float
        Physical LPS z (mm) of each ROI centre; strictly decreasing (head to foot).
    center_mm : numpy.ndarray, (n, 3) float
        Physical LPS position (x, y, z) mm of each ROI centre.
    boxes_index : numpy.ndarray, (n, 4) float
        The square's edges as fractional source pixel indices ``(y0, y1, x0, x1)``
        (pixel centres are integers; ``y0 - 0.5`` would be a pixel edge).
    side_mm, pixel_size_mm, diameter_mm : numpy.ndarray, (n,) float
        Square side, output pixel size (``side / size``) and tumour diameter (largest
        in-plane bounding-box extent) in mm.
    margin : float
        ``side_mm / diameter_mm``.
    """

    images: np.ndarray
    masks: np.ndarray
    slice_index: np.ndarray
    z_mm: np.ndarray
    center_mm: np.ndarray
    boxes_index: np.ndarray
    side_mm: np.ndarray
    pixel_size_mm: np.ndarray
    diameter_mm: np.ndarray
    margin: float




def _check_margin(margin: float) -> float:
    margin = float(margin)
    if not MARGIN_LIMITS[0] <= margin <= MARGIN_LIMITS[1]:
        raise ValueError(f"margin must be within {MARGIN_LIMITS} x the tumour diameter, got {margin}")
    if not PAPER_MARGIN[0] <= margin <= PAPER_MARGIN[1]:
        warnings.warn(
            f"ROI margin {margin} is outside ResoLSTM-Depth's 1.0-1.2 x tumour diameter", UserWarning, stacklevel=3
        )
    return margin



def slice_sequence(
    image: Volume,
    mask: Volume,
    *,
    margin: float = 1.1,
    size: int = 224,
    label: int = 1,
    patient: str | None = None,
) -> RoiSequence:
    """Square in-plane tumour ROI on every axial slice that contains tumour (ResoLSTM-Depth).

    On slice ``k`` the square is centred on the centre of the tumour's bounding box in that
    slice; its side is ``margin`` x the tumour diameter, the larger of the bounding box's
    in-plane extents in mm (pixel edge to pixel edge). It is sampled on ``size x size`` square
    pixels in mm with linear interpolation (nearest neighbour for the mask), so anisotropic
    pixels become square; outside the scan the image is air (-1024 HU) and the mask 0.

    Parameters
    ----------
    image : Volume
        CT in HU, array ``(z, y, x)``.
    mask : Volume
        Label map on the same grid as ``image``.
    margin : float
        Square side / tumour diameter. The paper uses 1.0-1.2: values in ``[1.0, 2.0]`` are
        accepted, with a ``UserWarning`` outside ``[1.0, 1.2]``; others raise ``ValueError``.
    size : int
        Output side in pixels (224 in the paper).
    label : int
        Tumour label in ``mask``.
    patient : str, optional
        Pseudonymous id, named in errors.

    Returns
    -------
    RoiSequence
        ROIs ordered head to foot (decreasing physical z).

    Raises
    ------
    InputError
        Empty tumour mask, or image and mask grids differ, or non-axial slices.
    """
    margin = _check_margin(margin)
    if int(size) < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    tumour = _tumour(image, mask, label, patient)
    _superior_step(image, patient)
    rois = [_slice_roi(image, tumour, int(k), margin, int(size)) for k in np.flatnonzero(tumour.any(axis=(1, 2)))]
    rois.sort(key=lambda r: -r["center_mm"][2])  # head to foot: decreasing LPS z
    side_mm = np.array([r["side_mm"] for r in rois])
    centers = np.array([r["center_mm"] for r in rois])
    return RoiSequence(
        images=np.stack([r["image"] for r in rois]).astype(np.float32),
        masks=np.stack([r["mask"] for r in rois]).astype(np.uint8),
        slice_index=np.array([r["k"] for r in rois], dtype=int),
        z_mm=centers[:, 2].copy(),
        center_mm=centers,
        boxes_index=np.array([r["box"] for r in rois], dtype=float),
        side_mm=side_mm,
        pixel_size_mm=side_mm / size,
        diameter_mm=np.array([r["diameter_mm"] for r in rois]),
        margin=margin,
    )


def _slice_roi(image: Volume, tumour: np.ndarray, k: int, margin: float, size: int) -> dict:
    """Square ROI of slice ``k``: centred on the tumour's bounding box, side ``margin`` x its diameter (mm)."""
    _, sy, sx = image.spacing
    jj, ii = np.nonzero(tumour[k])
    cy, cx = (jj.min() + jj.max()) / 2.0, (ii.min() + ii.max()) / 2.0
    diameter = max((jj.max() - jj.min() + 1) * sy, (ii.max() - ii.min() + 1) * sx)
    side = margin * diameter
    offsets = (np.arange(size) - (size - 1) / 2.0) * (side / size)  # mm from the centre, square pixels
    rows, cols = cy + offsets / sy, cx + offsets / sx
    half_y, half_x = side / (2 * sy), side / (2 * sx)
    return {
        "k": k,
        "image": _sample_plane(image.array[k].astype(np.float32), rows, cols, 1, AIR_HU),
        "mask": _sample_plane(tumour[k].astype(np.uint8), rows, cols, 0, 0),
        "center_mm": image.index_to_physical([k, cy, cx]),
        "box": (cy - half_y, cy + half_y, cx - half_x, cx + half_x),
        "side_mm": side,
        "diameter_mm": diameter,
    }
