"""Tumour ROI extraction of the three papers: 2D slice sequence, 2.5D slab and 3D KRT box.

* :func:`slice_sequence` -- ResoLSTM-Depth: one square ROI per tumour slice, head to foot.
* :func:`slab_25d` -- longitudinal survival paper: largest-area slice +- 3 slices as 7 channels.
* :func:`krt_box` -- nn-TransEC knowledge-embedded ROI tokenization: a fixed 3D box on the tumour.

Axial slices are array index ``z`` (the first axis); "head to foot" is decided from the
direction matrix (decreasing physical LPS z), never from the array order.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from esoct.errors import InputError
from esoct.io.volume import Volume
from esoct.preprocess.intensity import clip_hu, minmax, window, zscore
from esoct.preprocess.resample import AIR_HU, resample

PAPER_MARGIN = (1.0, 1.2)  # ResoLSTM-Depth: side = 1.0-1.2 x tumour diameter
MARGIN_LIMITS = (1.0, 2.0)  # accepted (with a warning outside PAPER_MARGIN)


# -- result types ---------------------------------------------------------------------------
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


# -- checks and small helpers ----------------------------------------------------------------
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


def _check_margin(margin: float) -> float:
    margin = float(margin)
    if not MARGIN_LIMITS[0] <= margin <= MARGIN_LIMITS[1]:
        raise ValueError(f"margin must be within {MARGIN_LIMITS} x the tumour diameter, got {margin}")
    if not PAPER_MARGIN[0] <= margin <= PAPER_MARGIN[1]:
        warnings.warn(
            f"ROI margin {margin} is outside ResoLSTM-Depth's 1.0-1.2 x tumour diameter", UserWarning, stacklevel=3
        )
    return margin


# -- (a) ResoLSTM-Depth slice sequence --------------------------------------------------------
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


# -- (b) 2.5D slab of the longitudinal survival paper -----------------------------------------
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


# -- (c) nn-TransEC KRT box --------------------------------------------------------------------
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


# -- the papers' pipelines ----------------------------------------------------------------------
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
