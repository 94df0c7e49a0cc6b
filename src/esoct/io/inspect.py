"""What a user checks first about a scan (``esoct info``): geometry, HU range, series, problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from esoct.errors import InputError
from esoct.io.imageio import read_image
from esoct.io.volume import Volume

_FORMATS = ((".nii.gz", "nifti"), (".nii", "nifti"), (".nrrd", "nrrd"), (".nhdr", "nrrd"), (".mha", "metaimage"),
            (".mhd", "metaimage"))
_MAX_PERCENTILE_SAMPLES = 8_000_000  # above this many voxels, percentiles come from a regular subsample
_ANISOTROPY_LIMIT = 5.0


def _format_of(path: Path) -> str:
    if path.is_dir():
        return "dicom"
    name = path.name.lower()
    return next((fmt for suffix, fmt in _FORMATS if name.endswith(suffix)), "dicom-file")


def _direction_problems(direction: np.ndarray) -> list[str]:
    d = np.asarray(direction, dtype=float)
    if not np.allclose(d.T @ d, np.eye(3), atol=1e-3):
        return ["direction matrix is not orthonormal (non-orthogonal axes): physical positions are unreliable"]
    if np.allclose(d, np.eye(3), atol=1e-3):
        return []
    a = np.abs(d)
    if not np.allclose(a, np.round(a), atol=1e-3):
        return [("oblique direction (axes are not aligned with the patient's x, y, z): resample in physical space "
                "before comparing with axis-aligned scans")]
    if np.allclose(a, np.eye(3), atol=1e-3):
        flipped = [axis for axis, v in zip("xyz", np.diag(d)) if v < 0]
        what = f"flipped {' and '.join(flipped)} " + ("axes" if len(flipped) > 1 else "axis")
    else:
        what = "permuted axes"
    return [(f"direction is not the identity ({what}): physical positions are right, but overlaying this array on "
            "another by index would be wrong; resample in physical space")]


def _spacing_problems(spacing_xyz) -> list[str]:
    ratio = max(spacing_xyz) / min(spacing_xyz)
    if ratio <= _ANISOTROPY_LIMIT:
        return []
    return [(f"anisotropic spacing: ratio {ratio:.1f} between largest and smallest voxel side "
            f"(> {_ANISOTROPY_LIMIT:g}); 3D features and resampling will be dominated by the slice spacing")]


def _label_values(array: np.ndarray) -> int | None:
    """Number of distinct values when the array looks like a label map (small non-negative integers), else None."""
    if array.size == 0 or not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
        return None
    return int(np.unique(array).size)


def _intensity_problems(array: np.ndarray, modality: str | None) -> list[str]:
    if array.size == 0:
        return ["the image is empty"]
    if array.max() == array.min():
        return [f"the image is constant ({float(array.min()):g})"]
    n_labels = _label_values(array)
    if n_labels is not None:
        return [(f"values look like a label map ({n_labels} distinct integers from {int(array.min())} to "
                f"{int(array.max())}), not a CT")]
    if modality in (None, "", "CT") and array.min() >= 0:
        return [(f"values look like raw stored values, not HU (min >= 0: {float(array.min()):g}); "
                "RescaleIntercept (typically -1024) may be missing")]
    return []


def _value_summary(array: np.ndarray) -> dict:
    flat = array.ravel()
    if flat.size == 0:
        return {"min": None, "p1": None, "p50": None, "p99": None, "max": None, "mean": None}
    sample = flat[:: max(1, flat.size // _MAX_PERCENTILE_SAMPLES)]
    p1, p50, p99 = (float(v) for v in np.percentile(sample, [1, 50, 99]))
    return {"min": float(flat.min()), "p1": p1, "p50": p50, "p99": p99, "max": float(flat.max()),
            "mean": round(float(sample.mean(dtype=np.float64)), 3)}


def _read(path: Path, series_uid: str | None) -> tuple[Volume, dict, list[str]]:
    """The volume, DICOM-only fields and the reader's problems."""
    if not path.exists():
        raise InputError("file or folder does not exist", path)
    if not path.is_dir():
        return read_image(path), {}, []
    from esoct.io.dicom import read_dicom_series

    series = read_dicom_series(path, series_uid=series_uid)
    problems = list(series.problems)
    n = len(series.all_series)
    if n > 1:
        problems.append(f"the folder holds {n} series; described the {'chosen' if series_uid else 'first (CT, most slices)'}"
                        " one (choose another with its SeriesInstanceUID)")
    extra = {
        "slice_thickness_mm": series.info.slice_thickness,
        "convolution_kernel": series.info.convolution_kernel,
        "series_uid": series.info.series_uid,
        "n_series": n,
        "series": [s.to_dict() for s in series.all_series],
    }
    return series.volume, extra, problems


def describe_scan(path: str | Path, series_uid: str | None = None) -> dict:
    """Summarise a scan for a first check, without any patient-identifying field.

    Parameters
    ----------
    path : str or Path
        NIfTI/NRRD/MetaImage file or DICOM folder.
    series_uid : str, optional
        For a DICOM folder with several series, which one to describe
        (default: the CT series with most slices).

    Returns
    -------
    dict
        JSON-serialisable. ``path`` (file name only), ``format``, ``size``
        (x, y, z voxels), ``spacing_mm`` (x, y, z), ``origin_mm`` (x, y, z, LPS),
        ``direction`` (9 numbers, the row-major ITK matrix), ``extent_mm``
        (x, y, z: size times spacing), ``dtype``, ``hu`` (``min``, ``p1``, ``p50``,
        ``p99``, ``max``, ``mean``; percentiles from a regular subsample above 8
        million voxels), ``series_description``, ``modality``, ``manufacturer``,
        for DICOM folders also ``slice_thickness_mm``, ``convolution_kernel``,
        ``series_uid``, ``n_series`` and ``series`` (one summary per series; ``n_series``
        is None for files), and ``problems`` (list of sentences, empty when none found).

    Raises
    ------
    InputError
        Missing or unreadable file, folder without a CT series.
    """
    path = Path(path)
    volume, extra, problems = _read(path, series_uid)
    arr = volume.array
    modality = volume.meta.get("modality")
    problems += _direction_problems(volume.direction) + _spacing_problems(volume.spacing_xyz)
    problems += _intensity_problems(arr, modality)
    desc = {
        "path": path.name,
        "format": _format_of(path),
        "size": [int(v) for v in volume.size_xyz],
        "spacing_mm": [round(float(v), 6) for v in volume.spacing_xyz],
        "origin_mm": [round(float(v), 4) for v in volume.origin],
        "direction": [round(float(v), 6) + 0.0 for v in volume.direction.ravel()],
        "extent_mm": [round(float(n * s), 3) for n, s in zip(volume.size_xyz, volume.spacing_xyz)],
        "dtype": str(arr.dtype),
        "hu": _value_summary(arr),
        "series_description": volume.meta.get("series_description"),
        "modality": modality,
        "manufacturer": volume.meta.get("manufacturer"),
        "n_series": None,
    }
    desc.update(extra)
    desc["problems"] = problems
    return desc


def _join(values, fmt: str, sep: str) -> str:
    return sep.join(format(v, fmt) for v in values)


def format_description(desc: dict) -> str:
    """Readable multi-line text of :func:`describe_scan`'s result.

    Parameters
    ----------
    desc : dict
        What :func:`describe_scan` returned.

    Returns
    -------
    str
        One fact per line, problems last (``none found`` when there are none).
    """
    hu = desc["hu"]
    values = "empty" if hu["min"] is None else (
        f"min {hu['min']:.0f}, p1 {hu['p1']:.0f}, median {hu['p50']:.0f}, p99 {hu['p99']:.0f}, max {hu['max']:.0f}")
    lines = [
        f"{desc['path']} ({desc['format']})",
        f"  size (x, y, z):     {_join(desc['size'], 'd', ' x ')} voxels",
        f"  spacing (x, y, z):  {_join(desc['spacing_mm'], '.4g', ' x ')} mm",
        f"  origin (x, y, z):   {_join(desc['origin_mm'], '.2f', ', ')} mm (LPS)",
        f"  direction:          {_join(desc['direction'], '.3g', ' ')}",
        f"  extent (x, y, z):   {_join(desc['extent_mm'], '.1f', ' x ')} mm",
        f"  values ({desc['dtype']}):".ljust(22) + values,
    ]
    for key, label, unit in (("series_description", "series", ""), ("modality", "modality", ""),
                             ("manufacturer", "manufacturer", ""), ("slice_thickness_mm", "slice thickness", " mm"),
                             ("convolution_kernel", "kernel", ""), ("n_series", "series in folder", "")):
        if desc.get(key) not in (None, ""):
            lines.append(f"  {label + ':':<19} {desc[key]}{unit}")
    problems = desc.get("problems") or []
    lines.append("  problems:           " + ("none found" if not problems else ""))
    lines += [f"    - {p}" for p in problems]
    return "\n".join(lines)
