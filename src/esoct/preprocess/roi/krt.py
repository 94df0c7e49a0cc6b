"""(c) nn-TransEC knowledge-embedded ROI tokenization (KRT): a fixed 3D box on the tumour."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from esoct.io.volume import Volume
from esoct.preprocess.resample import AIR_HU
from esoct.preprocess.roi._common import _holds, _round_half_up, _tumour


@dataclass(frozen=True, eq=False)
class KrtBox:
    """nn-TransEC KRT box: fixed-size image and label crops with exact geometry.

    Attributes
    ----------
    image, mask : Volume
        Crops of shape ``size_zyx``; ``image`` padded with ``fill_image`` (air), ``mask`` (the
        whole label map, all labels kept) with 0 where the box leaves the volume. Their origin
        is the physical position of the box's voxel ``[0, 0, 0]``.
    center_index : tuple of int
        Source ``(z, y, x)`` index of the box centre; it sits at box voxel ``size_zyx // 2``.
    start_index : tuple of int
        Source ``(z, y, x)`` index of box voxel ``[0, 0, 0]`` (may be negative).
    fraction_inside : float
        Fraction of the box's voxels that lie inside the source volume.
    tumour_inside : bool
        Every tumour voxel of the source lies in the box.
    """

    image: Volume
    mask: Volume
    center_index: tuple[int, int, int]
    start_index: tuple[int, int, int]
    fraction_inside: float
    tumour_inside: bool




def krt_box(
    image: Volume,
    mask: Volume,
    *,
    size_zyx=(128, 64, 64),
    center: str = "mass",
    label: int = 1,
    fill_image: float = AIR_HU,
    patient: str | None = None,
) -> KrtBox:
    """Fixed-size 3D box centred on the tumour (nn-TransEC knowledge-embedded ROI tokenization).

    The centre is the tumour's centre of mass (``center="mass"``) or the centre of its bounding
    box (``center="bbox"``, the paper's wording), rounded half up to a voxel index ``c``; the box
    spans ``c - size // 2`` to ``c - size // 2 + size - 1`` on each axis. Where it leaves the
    volume the image is padded with ``fill_image`` (air) and the mask with 0. Warns when part of
    the tumour falls outside the box.

    Parameters
    ----------
    image : Volume
        CT, array ``(z, y, x)``; resample first for a box in mm (nn-TransEC uses the cohort's
        median spacing, see :func:`esoct.preprocess.resample.median_spacing`).
    mask : Volume
        Label map on the same grid; cropped whole (all labels kept).
    size_zyx : tuple of int
        Box size in voxels, ``(z, y, x)``; 128 x 64 x 64 in the paper.
    center : {"mass", "bbox"}
        How the tumour centre is defined.
    label : int
        Tumour label.
    fill_image : float
        Image value outside the volume (HU).
    patient : str, optional
        Named in errors and warnings.

    Returns
    -------
    KrtBox

    Raises
    ------
    InputError
        Empty tumour mask, or image and mask grids differ.
    """
    size = np.asarray(size_zyx, dtype=int).reshape(3)
    if np.any(size <= 0):
        raise ValueError(f"size_zyx must be three positive voxel counts, got {size_zyx}")
    if center not in ("mass", "bbox"):
        raise ValueError(f"center must be 'mass' or 'bbox', got {center!r}")
    tumour = _tumour(image, mask, label, patient)
    idx = np.argwhere(tumour)
    c = idx.mean(axis=0) if center == "mass" else (idx.min(axis=0) + idx.max(axis=0)) / 2.0
    c = _round_half_up(c)
    start = c - size // 2
    source = image
    if not _holds(image.array.dtype, fill_image):
        source = image.with_array(image.array.astype(np.float32))
    box_image = source.crop(start, size, fill=fill_image)
    box_mask = mask.crop(start, size, fill=0)
    inside = np.clip(np.minimum(start + size, image.shape) - np.maximum(start, 0), 0, None)
    n_in = int(np.count_nonzero(box_mask.array == label))
    tumour_inside = n_in == len(idx)
    if not tumour_inside:
        who = f"patient {patient}: " if patient else ""
        box = tuple(int(v) for v in size)
        warnings.warn(
            f"{who}tumour extends beyond the KRT box {box} ({n_in} of {len(idx)} voxels inside)",
            UserWarning,
            stacklevel=2,
        )
    return KrtBox(
        image=box_image,
        mask=box_mask,
        center_index=tuple(int(v) for v in c),
        start_index=tuple(int(v) for v in start),
        fraction_inside=float(np.prod(inside) / np.prod(size)),
        tumour_inside=tumour_inside,
    )
