"""Checks and sampling helpers shared by the ROI extractions."""

from __future__ import annotations


import numpy as np
from scipy import ndimage

from esoct.errors import InputError
from esoct.io.volume import Volume


def _tumour(image: Volume, mask: Volume, label: int, patient: str | None) -> np.ndarray:
    """Validate an image/mask pair and return the boolean tumour array ``(z, y, x)``."""
    if not isinstance(image, Volume) or not isinstance(mask, Volume):
        raise TypeError("image and mask must be esoct Volume objects (geometry is needed)")
    source = mask.meta.get("source")
    if not image.same_geometry(mask):
        diffs = "; ".join(image.geometry_differences(mask))
        raise InputError(f"mask and image grids differ (mask vs image): {diffs}", source, patient)
    tumour = mask.array == label
    if not tumour.any():
        raise InputError(f"mask has no voxel with label {label} (tumour)", source, patient)
    return tumour


def _superior_step(volume: Volume, patient: str | None) -> float:
    """Physical z change (mm) per +1 step of the array z index; sign > 0 means towards the head."""
    cos_z = float(volume.direction[2, 2])
    if abs(cos_z) < 0.5:
        raise InputError(
            f"array z axis is not axial (direction z-cosine {cos_z:.2f}); reorient the scan to axial slices",
            volume.meta.get("source"),
            patient,
        )
    return cos_z * volume.spacing[0]


def _round_half_up(x) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=float) + 0.5).astype(int)


def _sample_plane(plane: np.ndarray, rows: np.ndarray, cols: np.ndarray, order: int, cval: float) -> np.ndarray:
    """Sample a 2D array on the grid ``rows x cols`` (fractional indices).

    Inside the pixel extent ``[-0.5, n - 0.5]`` the edge pixel is extended (as ITK does);
    beyond it the value is ``cval``.
    """
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    out = ndimage.map_coordinates(plane, [rr, cc], order=order, mode="nearest")
    outside = (rr < -0.5) | (rr > plane.shape[0] - 0.5) | (cc < -0.5) | (cc > plane.shape[1] - 0.5)
    out[outside] = cval
    return out


def _holds(dtype: np.dtype, value: float) -> bool:
    """True when ``dtype`` represents ``value`` exactly (e.g. int16 holds -1024, uint8 does not)."""
    try:
        return bool(np.array(value, dtype=dtype) == value)
    except (OverflowError, ValueError):
        return False
