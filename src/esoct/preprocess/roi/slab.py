"""(b) The longitudinal survival paper's 2.5D slab: largest-area slice +- 3 slices as 7 channels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from esoct.io.volume import Volume
from esoct.preprocess.roi._common import _superior_step, _tumour


@dataclass(frozen=True, eq=False)
class RoiSlab:
    """2.5D tumour slab: the largest cross-section slice and its neighbours as channels.

    Attributes
    ----------
    channels : numpy.ndarray, (2n+1, size, size) float32
        Head to foot; the middle channel is the largest-area slice.
    masks : numpy.ndarray, (2n+1, size, size) uint8
        Tumour (1) / background (0) on the same pixels.
    center_index : int
        Source z index of the largest-area slice.
    slice_index : numpy.ndarray, (2n+1,) int
        Source z index of each channel (edge slices repeat where the slab left the volume).
    z_mm : numpy.ndarray, (2n+1,) float
        Physical LPS z (mm) of each channel's slice (at the box centre).
    box : tuple of int
        ``(y0, y1, x0, x1)`` half-open source pixel indices of the minimal rectangle holding
        the tumour in every channel's slice.
    n_padded : int
        Channels that lay beyond the volume and replicate the edge slice.
    area_mm2 : float
        Tumour cross-section area of the centre slice, mm^2.
    """

    channels: np.ndarray
    masks: np.ndarray
    center_index: int
    slice_index: np.ndarray
    z_mm: np.ndarray
    box: tuple[int, int, int, int]
    n_padded: int
    area_mm2: float




def _nearest_rows(start: int, stop: int, size: int) -> np.ndarray:
    """Source indices for a nearest-neighbour resize of ``[start, stop)`` to ``size`` pixels (pixel centres)."""
    n = stop - start
    return start + np.minimum(((np.arange(size) + 0.5) * n / size).astype(int), n - 1)


def slab_25d(
    image: Volume,
    mask: Volume,
    *,
    n_adjacent: int = 3,
    size: int = 224,
    label: int = 1,
    patient: str | None = None,
) -> RoiSlab:
    """Largest tumour cross-section slice plus ``n_adjacent`` slices above and below, as channels.

    The centre slice has the largest tumour area (pixel count x in-plane pixel area, mm^2; ties go
    to the most superior slice). Channels run head to foot. Slices beyond the volume repeat the
    edge slice (counted in ``n_padded``). The minimal rectangle holding the tumour in all chosen
    slices is cut from every slice and resized to ``size x size`` with nearest-neighbour
    interpolation (pixel-centre mapping), as the paper states -- output values are source values
    and the rectangle's aspect ratio is not kept. Resample to isotropic pixels first if needed
    (see :func:`longitudinal_inputs`).

    Parameters
    ----------
    image : Volume
        CT (HU or normalised), array ``(z, y, x)``.
    mask : Volume
        Label map on the same grid.
    n_adjacent : int
        Slices on each side of the centre slice (3 in the paper: 7 channels).
    size : int
        Output side in pixels.
    label : int
        Tumour label.
    patient : str, optional
        Named in errors.

    Returns
    -------
    RoiSlab

    Raises
    ------
    InputError
        Empty tumour mask, image and mask grids differ, or non-axial slices.
    """
    if n_adjacent < 0 or size < 1:
        raise ValueError(f"need n_adjacent >= 0 and size >= 1, got {n_adjacent} and {size}")
    tumour = _tumour(image, mask, label, patient)
    step = _superior_step(image, patient)
    nz = image.shape[0]
    head_to_foot = np.arange(nz)[::-1] if step > 0 else np.arange(nz)
    area = tumour.sum(axis=(1, 2)) * image.spacing[1] * image.spacing[2]
    center = int(head_to_foot[np.argmax(area[head_to_foot])])
    direction = -1 if step > 0 else 1
    wanted = center + direction * np.arange(-n_adjacent, n_adjacent + 1)
    slices = np.clip(wanted, 0, nz - 1)
    union = tumour[np.unique(slices)].any(axis=0)
    jj, ii = np.nonzero(union)
    y0, y1, x0, x1 = int(jj.min()), int(jj.max()) + 1, int(ii.min()), int(ii.max()) + 1
    grid = np.ix_(_nearest_rows(y0, y1, size), _nearest_rows(x0, x1, size))
    channels = np.stack([image.array[k][grid] for k in slices]).astype(np.float32)
    masks = np.stack([tumour[k][grid] for k in slices]).astype(np.uint8)
    cy, cx = (y0 + y1 - 1) / 2.0, (x0 + x1 - 1) / 2.0
    z_mm = image.index_to_physical(np.stack([slices, np.full(len(slices), cy), np.full(len(slices), cx)], axis=1))[:, 2]
    return RoiSlab(
        channels=channels,
        masks=masks,
        center_index=center,
        slice_index=slices.astype(int),
        z_mm=z_mm,
        box=(y0, y1, x0, x1),
        n_padded=int(np.sum(wanted != slices)),
        area_mm2=float(area[center]),
    )
