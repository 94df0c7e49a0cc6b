"""The papers' full input pipelines: intensity settings + resampling + ROI extraction."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from esoct.io.volume import Volume
from esoct.preprocess.intensity import clip_hu, minmax, window, zscore
from esoct.preprocess.resample import resample
from esoct.preprocess.roi._common import _tumour
from esoct.preprocess.roi.krt import KrtBox, krt_box
from esoct.preprocess.roi.sequence import RoiSequence, slice_sequence
from esoct.preprocess.roi.slab import RoiSlab, slab_25d


def resolstm_inputs(
    image: Volume,
    mask: Volume,
    *,
    margin: float = 1.1,
    size: int = 224,
    label: int = 1,
    hu_range=(-145.0, 225.0),
    patient: str | None = None,
) -> RoiSequence:
    """ResoLSTM-Depth input: :func:`slice_sequence`, HU clipped to ``hu_range``, min-max to [0, 1].

    Min-max uses the fixed bounds ``hu_range`` (-145 HU -> 0, 225 HU -> 1) so every patient
    shares the same scale; air padding becomes 0.

    Returns
    -------
    RoiSequence
        ``images`` (n, size, size) float32 in [0, 1], head to foot.
    """
    seq = slice_sequence(image, mask, margin=margin, size=size, label=label, patient=patient)
    low, high = hu_range
    return replace(seq, images=minmax(clip_hu(seq.images, low, high), low, high))


def _tumour_crop(tumour: np.ndarray, spacing, margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """``(start, size)`` of the tumour bounding box grown by ``margin_mm``, clipped to the volume."""
    idx = np.argwhere(tumour)
    grow = np.ceil(margin_mm / np.asarray(spacing)).astype(int)
    lo = np.maximum(idx.min(axis=0) - grow, 0)
    hi = np.minimum(idx.max(axis=0) + grow + 1, tumour.shape)
    return lo, hi - lo


def longitudinal_inputs(
    image: Volume,
    mask: Volume,
    *,
    window_hu=(50.0, 350.0),
    spacing_zyx=(1.0, 1.0, 1.0),
    n_adjacent: int = 3,
    size: int = 224,
    label: int = 1,
    crop_margin_mm: float | None = 20.0,
    patient: str | None = None,
) -> RoiSlab:
    """Longitudinal survival paper input: window 50/350, 1 mm isotropic, z-score, 7-slice slab.

    Steps: :func:`window` (centre, width in HU) -> z-score with the mean and std of the whole
    windowed scan on its original grid -> 3rd-order B-spline resampling of the image (nearest
    neighbour for the mask) to ``spacing_zyx`` mm ``(z, y, x)`` -> values clipped back into the
    z-scored window (B-spline over/undershoots sharp window edges, by ~40 HU on real CT) ->
    :func:`slab_25d`. B-spline interpolation reproduces affine intensity maps, so z-scoring
    before resampling equals z-scoring after it with the original-grid statistics.

    With ``crop_margin_mm`` set, only the tumour's bounding box grown by that many mm (clipped to
    the scan) is resampled: much faster, and the same slab up to the sub-millimetre placement of
    the 1 mm grid, which then starts at the crop's corner voxel. The margin must exceed
    ``n_adjacent`` output slices plus one input slice. ``None`` resamples the whole scan.

    Returns
    -------
    RoiSlab
        ``channels`` (2n+1, size, size) float32 z-scores; indices refer to the resampled grid.
    """
    tumour = _tumour(image, mask, label, patient)
    windowed = window(image, *window_hu)
    z = zscore(windowed)  # InputError on a constant scan
    mean, std = float(np.mean(windowed.array, dtype=np.float64)), float(np.std(windowed.array, dtype=np.float64))
    low, high = window_hu[0] - window_hu[1] / 2.0, window_hu[0] + window_hu[1] / 2.0
    z_low, z_high = (low - mean) / std, (high - mean) / std
    if crop_margin_mm is not None:
        need = n_adjacent * float(spacing_zyx[0]) + max(image.spacing)
        if crop_margin_mm < need:
            raise ValueError(f"crop_margin_mm={crop_margin_mm} is below the {need:g} mm the slab needs")
        start, extent = _tumour_crop(tumour, image.spacing, crop_margin_mm)
        z, mask = z.crop(start, extent), mask.crop(start, extent)
    z_r = resample(z, spacing_zyx, interpolator="bspline", default_value=z_low)
    z_r = z_r.with_array(np.clip(z_r.array, z_low, z_high).astype(np.float32))
    mask_r = resample(mask, spacing_zyx, is_label=True)
    return slab_25d(z_r, mask_r, n_adjacent=n_adjacent, size=size, label=label, patient=patient)


def krt_inputs(
    image: Volume,
    mask: Volume,
    *,
    spacing_zyx=(1.0, 1.0, 1.0),
    size_zyx=(128, 64, 64),
    label: int = 1,
    patient: str | None = None,
) -> KrtBox:
    """nn-TransEC input: a KRT box of ``size_zyx`` voxels at ``spacing_zyx`` mm around the tumour.

    Only a region around the tumour (the box's physical size plus 10 mm, padded with air where it
    leaves the scan) is resampled -- linear for the image, nearest neighbour for the label map --
    so the work is proportional to the box, not the scan. Then :func:`krt_box` cuts the box.

    Returns
    -------
    KrtBox
        ``image`` and ``mask`` Volumes of shape ``size_zyx`` at ``spacing_zyx`` mm.
    """
    tumour = _tumour(image, mask, label, patient)
    half_mm = np.asarray(size_zyx) * np.asarray(spacing_zyx, dtype=float) / 2 + 10.0
    half_vox = np.ceil(half_mm / np.asarray(mask.spacing)).astype(int)
    start = np.floor(np.argwhere(tumour).mean(axis=0)).astype(int) - half_vox
    extent = 2 * half_vox + 1
    image_r = resample(image.crop(start, extent, fill=-1024), spacing_zyx, interpolator="linear")
    mask_r = resample(mask.crop(start, extent, fill=0), spacing_zyx, is_label=True)
    return krt_box(image_r, mask_r, size_zyx=size_zyx, label=label, patient=patient)
