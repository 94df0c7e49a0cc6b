"""Resampling of CT volumes and label maps to a new voxel spacing, in physical space (SimpleITK)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from esoct.io.volume import Volume

AIR_HU = -1024.0

INTERPOLATORS = ("bspline", "linear", "nearest")


def _sitk_interpolator(name: str):
    import SimpleITK as sitk

    return {"bspline": sitk.sitkBSpline, "linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}[name]


def _choose_interpolator(is_label: bool, interpolator: str | None) -> str:
    if interpolator is None:
        return "nearest" if is_label else "bspline"
    name = str(interpolator).lower()
    if name not in INTERPOLATORS:
        raise ValueError(f"unknown interpolator {interpolator!r}; choose from {INTERPOLATORS}")
    if is_label and name != "nearest":
        raise ValueError(f"label maps are resampled with nearest neighbour only, not {name!r}")
    return name


def _apply(volume: Volume, reference, is_label: bool, interpolator: str | None, default_value) -> Volume:
    """Resample ``volume`` onto the grid of the SimpleITK image ``reference``."""
    import SimpleITK as sitk

    name = _choose_interpolator(is_label, interpolator)
    if default_value is None:
        default_value = 0.0 if is_label else AIR_HU
    dtype = volume.array.dtype
    if not is_label:
        source = volume.with_array(volume.array.astype(np.float32, copy=False))
    elif dtype == bool:
        source = volume.with_array(volume.array.astype(np.uint8))
    else:
        source = volume
    image = source.to_sitk()
    f = sitk.ResampleImageFilter()
    f.SetReferenceImage(reference)
    f.SetInterpolator(_sitk_interpolator(name))
    f.SetDefaultPixelValue(float(default_value))
    f.SetOutputPixelType(image.GetPixelID())
    out = Volume.from_sitk(f.Execute(image), meta=dict(volume.meta))
    return out.with_array(out.array.astype(bool)) if dtype == bool and is_label else out


def resample(
    volume: Volume,
    spacing_zyx,
    *,
    is_label: bool = False,
    interpolator: str | None = None,
    default_value: float | None = None,
) -> Volume:
    """Resample a volume to a new voxel spacing, keeping origin, direction and physical extent.

    The output grid has the same origin (centre of voxel ``[0, 0, 0]``) and direction as the
    input and ``round(old_size * old_spacing / new_spacing)`` voxels per axis, so it covers the
    input's physical extent to within one output voxel. Output voxels whose centres fall more than
    half an input voxel beyond the last input voxel centre get ``default_value``.

    Parameters
    ----------
    volume : Volume
        CT image (HU) or label map, array ``(z, y, x)``.
    spacing_zyx : sequence of 3 float
        Target voxel size in mm, ``(z, y, x)`` order.
    is_label : bool
        Label map: nearest-neighbour interpolation, integer dtype and label set kept.
    interpolator : {"bspline", "linear", "nearest"}, optional
        Image interpolation. Default: ``"bspline"`` (3rd-order B-spline, as nnU-Net and
        nn-TransEC) for images, ``"nearest"`` for labels (the only choice allowed for labels).
    default_value : float, optional
        Value outside the input: -1024 HU (air) for images, 0 for labels.

    Returns
    -------
    Volume
        Images as float32 HU, label maps in the input dtype; ``meta`` is copied.

    Examples
    --------
    >>> v = Volume(np.zeros((4, 10, 10), np.int16), spacing=(5.0, 1.0, 1.0))
    >>> resample(v, (1.0, 1.0, 1.0), is_label=True).shape
    (20, 10, 10)
    """
    import SimpleITK as sitk

    new_spacing = np.asarray(spacing_zyx, dtype=float).reshape(3)
    if np.any(new_spacing <= 0):
        raise ValueError(f"spacing must be three positive numbers (z, y, x) in mm, got {spacing_zyx}")
    extent = np.asarray(volume.shape) * np.asarray(volume.spacing)
    new_shape = np.maximum(np.rint(extent / new_spacing).astype(int), 1)
    reference = sitk.Image([int(n) for n in new_shape[::-1]], sitk.sitkUInt8)
    reference.SetSpacing(tuple(float(s) for s in new_spacing[::-1]))
    reference.SetOrigin(volume.origin)
    reference.SetDirection(tuple(volume.direction.ravel()))
    return _apply(volume, reference, is_label, interpolator, default_value)


def resample_like(
    volume: Volume,
    reference: Volume,
    is_label: bool = False,
    *,
    interpolator: str | None = None,
    default_value: float | None = None,
) -> Volume:
    """Resample ``volume`` onto ``reference``'s grid (size, spacing, origin, direction) via physical space.

    Typical use: put a mask drawn on another grid onto the CT's grid,
    ``resample_like(mask, image, is_label=True)``.

    Parameters
    ----------
    volume : Volume
        What to resample, array ``(z, y, x)``.
    reference : Volume
        The grid to sample on; its values are not used.
    is_label : bool
        Nearest neighbour and the input dtype (labels), else float32 with B-spline by default.
    interpolator, default_value
        As in :func:`resample`.

    Returns
    -------
    Volume
        Shape, spacing, origin and direction of ``reference``.
    """
    import SimpleITK as sitk

    grid = sitk.Image([int(n) for n in reference.size_xyz], sitk.sitkUInt8)
    grid.SetSpacing(reference.spacing_xyz)
    grid.SetOrigin(reference.origin)
    grid.SetDirection(tuple(reference.direction.ravel()))
    return _apply(volume, grid, is_label, interpolator, default_value)


def median_spacing(volumes_or_spacings: Iterable) -> tuple[float, float, float]:
    """Per-axis median voxel spacing of a cohort (nnU-Net's target spacing).

    Parameters
    ----------
    volumes_or_spacings : iterable of Volume or of (z, y, x) spacings in mm

    Returns
    -------
    tuple of float
        Median spacing in mm, ``(z, y, x)`` order.
    """
    rows = [v.spacing if isinstance(v, Volume) else tuple(v) for v in volumes_or_spacings]
    if not rows:
        raise ValueError("median_spacing needs at least one volume or spacing")
    arr = np.asarray(rows, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"each spacing must be (z, y, x) in mm, got array of shape {arr.shape}")
    return tuple(float(s) for s in np.median(arr, axis=0))
