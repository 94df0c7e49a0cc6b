"""What a user checks first about a scan (``esoct info``): geometry, HU range, series, problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from esoct.io.imageio import read_image


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    for suffix, fmt in ((".nii.gz", "nifti"), (".nii", "nifti"), (".nrrd", "nrrd"), (".nhdr", "nrrd"), (".mha", "metaimage"), (".mhd", "metaimage")):
        if name.endswith(suffix):
            return fmt
    return "dicom-file"


def _geometry_problems(volume) -> list[str]:
    problems = []
    d = volume.direction
    a = np.abs(d)
    if not np.allclose(d, np.eye(3), atol=1e-3):
        if np.allclose(a.sum(axis=0), 1, atol=1e-3) and np.allclose(a.sum(axis=1), 1, atol=1e-3) and np.allclose(a, np.round(a), atol=1e-3):
            flipped = [ax for ax, v in zip("xyz", np.diag(d)) if v < 0]
            what = f"flipped {', '.join(flipped)} axis" if flipped and np.allclose(a, np.eye(3), atol=1e-3) else "permuted axes"
            problems.append(f"direction is not the identity ({what}): physical positions are right, but overlaying "
                            "this array on another by index would be wrong; resample in physical space")
        else:
            problems.append("oblique acquisition (direction is not axis-aligned)")
    ratio = max(volume.spacing) / min(volume.spacing)
    if ratio > 5:
        problems.append(f"strongly anisotropic voxels (largest/smallest spacing {ratio:.1f})")
    return problems


def _intensity_problems(array: np.ndarray, modality: str | None) -> list[str]:
    problems = []
    if modality in (None, "", "CT") and array.min() >= 0 and array.max() > 1000:
        problems.append("values look like raw stored values, not HU (minimum >= 0): RescaleIntercept may be missing")
    if array.max() == array.min():
        problems.append("the image is constant")
    return problems


def describe_scan(path: str | Path, series_uid: str | None = None) -> dict:
    """Summarise a scan for a first check, without any patient-identifying field.

    Parameters
    ----------
    path : str or Path
        NIfTI/NRRD file or DICOM folder.
    series_uid : str, optional
        For a DICOM folder with several series, which one to describe.

    Returns
    -------
    dict
        JSON-serialisable: ``format``, ``size`` (x, y, z), ``spacing_mm`` (x, y, z),
        ``origin_mm`` (x, y, z), ``direction`` (9 numbers, row-major ITK matrix),
        ``extent_mm`` (x, y, z), ``dtype``, ``hu`` (min, p1, p50, p99, max),
        ``series_description``, ``modality``, ``manufacturer``, ``n_series`` (DICOM)
        and ``problems`` (list of sentences).
    """
    path = Path(path)
    fmt = _format_of(path)
    problems: list[str] = []
    n_series = None
    if fmt == "dicom":
        from esoct.io.dicom import list_series, read_dicom_series

        series = read_dicom_series(path, series_uid=series_uid)
        volume = series.volume
        problems += series.problems
        n_series = len(list_series(path))
        if n_series > 1:
            problems.append(f"the folder holds {n_series} series; described the {'chosen' if series_uid else 'largest'} one")
    else:
        volume = read_image(path)
    arr = volume.array
    p = np.percentile(arr, [1, 50, 99])
    modality = volume.meta.get("modality")
    problems += _geometry_problems(volume) + _intensity_problems(arr, modality)
    return {
        "path": path.name,
        "format": fmt,
        "size": list(volume.size_xyz),
        "spacing_mm": [round(float(v), 6) for v in volume.spacing_xyz],
        "origin_mm": [round(float(v), 4) for v in volume.origin],
        "direction": [round(float(v), 6) for v in volume.direction.ravel()],
        "extent_mm": [round(float(n * s), 3) for n, s in zip(volume.size_xyz, volume.spacing_xyz)],
        "dtype": str(arr.dtype),
        "hu": {"min": float(arr.min()), "p1": float(p[0]), "p50": float(p[1]), "p99": float(p[2]), "max": float(arr.max())},
        "series_description": volume.meta.get("series_description"),
        "modality": modality,
        "manufacturer": volume.meta.get("manufacturer"),
        "n_series": n_series,
        "problems": problems,
    }


def format_description(desc: dict) -> str:
    """Readable multi-line text of :func:`describe_scan`'s result."""
    hu = desc["hu"]
    lines = [
        f"{desc['path']} ({desc['format']})",
        f"  size (x, y, z):     {' x '.join(str(v) for v in desc['size'])} voxels",
        f"  spacing (x, y, z):  {' x '.join(f'{v:.4g}' for v in desc['spacing_mm'])} mm",
        f"  origin (x, y, z):   {', '.join(f'{v:.2f}' for v in desc['origin_mm'])} mm (LPS)",
        f"  direction:          {' '.join(f'{v:.3g}' for v in desc['direction'])}",
        f"  extent (x, y, z):   {' x '.join(f'{v:.1f}' for v in desc['extent_mm'])} mm",
        f"  values ({desc['dtype']}):  min {hu['min']:.0f}, p1 {hu['p1']:.0f}, median {hu['p50']:.0f}, "
        f"p99 {hu['p99']:.0f}, max {hu['max']:.0f}",
    ]
    for key, label in (("series_description", "series"), ("modality", "modality"), ("manufacturer", "manufacturer"),
                       ("n_series", "series in folder")):
        if desc.get(key) not in (None, ""):
            lines.append(f"  {label + ':':<19} {desc[key]}")
    lines.append("  problems:           " + ("none found" if not desc["problems"] else ""))
    lines += [f"    - {p}" for p in desc["problems"]]
    return "\n".join(lines)
