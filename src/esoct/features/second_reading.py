"""Features of a second segmentation per patient, for the ICC filter.

A second reader's mask (manifest column ``mask_pre_reader2``) is used where the manifest has
one; for the other patients a perturbed copy of the first mask (erosion, dilation or contour
noise, :func:`esoct.select.icc.perturbed_masks`) is generated reproducibly from the seed and
the patient id. The features of these second segmentations are extracted with the same
PyRadiomics settings, caching, parallelism and failure handling as the first
(:func:`esoct.features.cohort.extract_cohort`), and plug into
:class:`esoct.select.icc.ICCFilter` through :func:`reader_tables`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import InputError
from esoct.features.cohort import CohortFeatures, extract_cohort

SOURCE_COLUMNS = ("patient_id", "source", "mask", "reason")


@dataclass
class SecondReading:
    """Result of :func:`extract_second_reading`.

    Attributes
    ----------
    features : CohortFeatures
        The extraction on the second segmentations (time point ``pre``).
    sources : pandas.DataFrame
        One row per patient: ``patient_id``, ``source`` (``"reader2"``, ``"perturbed"`` or
        ``"failed"``), ``mask`` (file used) and ``reason`` (why a patient has no second mask).
    """

    features: CohortFeatures
    sources: pd.DataFrame


def patient_seed(seed: int, patient_id: str) -> int:
    """A per-patient seed that depends only on ``seed`` and the id (not on cohort order or size)."""
    digest = hashlib.sha256(f"{seed}:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def extract_second_reading(
    manifest_path: str | Path,
    out_parquet: str | Path,
    *,
    params: str | Path | dict | None = None,
    perturbation: str = "contour",
    radius: int = 1,
    flip_fraction: float = 0.25,
    seed: int = 0,
    label: int = 1,
    use_reader2: bool = True,
    **extract_kwargs,
) -> SecondReading:
    """Extract features of a second segmentation of every patient's pre-treatment scan.

    Parameters
    ----------
    manifest_path : str or Path
        Cohort manifest (DESIGN.md).
    out_parquet : str or Path
        Parquet file of the second reading's features; the perturbed masks, the derived
        manifest and ``second_reading_sources.csv`` are written next to it.
    params : str, Path or dict, optional
        PyRadiomics parameters, the same as for the first reading.
    perturbation : {"contour", "erode", "dilate"}
        Kind of perturbation for patients without a second reader (see
        :func:`esoct.select.icc.perturbed_masks`).
    radius : int
        Perturbation radius in voxels.
    flip_fraction : float
        Share of the contour band flipped by contour noise (0.25: about the disagreement of
        two readers on a tumour of a few ml at 2 mm voxels).
    seed : int
        Seed; each patient's perturbation uses :func:`patient_seed` (seed, patient id).
    label : int
        ROI label in the masks (1 = tumour); the perturbed mask holds this label only.
    use_reader2 : bool
        Use ``mask_pre_reader2`` where given (False: perturb every patient).
    **extract_kwargs
        Passed to :func:`esoct.features.cohort.extract_cohort` (``workers``, ``scheduler``,
        ``cache_dir``, ``progress``).

    Returns
    -------
    SecondReading
    """
    from esoct.io.imageio import read_image, write_image
    from esoct.io.manifest import load_manifest
    from esoct.io.volume import Volume
    from esoct.select.icc import perturbed_masks

    manifest = load_manifest(manifest_path)
    out_parquet = Path(out_parquet)
    mask_dir = out_parquet.parent / "second_reading_masks"
    rows, sources = [], []
    for pid in manifest.patients:
        image = manifest.resolve(pid, "image_pre")
        reader2 = manifest.resolve(pid, "mask_pre_reader2") if use_reader2 and _has(manifest, "mask_pre_reader2") else None
        if reader2 is not None:
            rows.append({"patient_id": pid, "center": _center(manifest, pid), "image_pre": str(image), "mask_pre": str(reader2)})
            sources.append({"patient_id": pid, "source": "reader2", "mask": str(reader2), "reason": ""})
            continue
        first = manifest.resolve(pid, "mask_pre")
        if image is None or first is None:
            sources.append({"patient_id": pid, "source": "failed", "mask": "", "reason": "no pre-treatment image/mask"})
            continue
        target = mask_dir / f"{_safe(pid)}_pre_{perturbation}{radius}_f{flip_fraction:g}_seed{seed}.nii.gz"
        try:
            if not target.is_file():
                mask = read_image(first)
                (perturbed,) = perturbed_masks(
                    mask.array == label, patient_seed(seed, pid), n=1, kinds=(perturbation,), radius=radius,
                    flip_fraction=flip_fraction,
                )
                out = Volume(perturbed.astype(np.uint8) * np.uint8(label), mask.spacing, mask.origin, mask.direction)
                write_image(out, target)
        except InputError as exc:
            reason = exc.for_patient(pid).problem if exc.patient is None else exc.problem
            sources.append({"patient_id": pid, "source": "failed", "mask": "", "reason": f"{first}: {reason}"})
            continue
        rows.append({"patient_id": pid, "center": _center(manifest, pid), "image_pre": str(image), "mask_pre": str(target)})
        sources.append({"patient_id": pid, "source": "perturbed", "mask": str(target), "reason": ""})
    derived = out_parquet.parent / "second_reading_manifest.csv"
    derived.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["patient_id", "center", "image_pre", "mask_pre"]).to_csv(derived, index=False)
    features = extract_cohort(derived, out_parquet, params=params, timepoints=("pre",), label=label, **extract_kwargs)
    table = pd.DataFrame(sources, columns=list(SOURCE_COLUMNS))
    table.to_csv(out_parquet.parent / "second_reading_sources.csv", index=False)
    return SecondReading(features, table)


def reader_tables(first: pd.DataFrame, second: pd.DataFrame, timepoint: str = "pre") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature tables of the two readings, indexed by patient id, for :class:`esoct.select.icc.ICCFilter`.

    Parameters
    ----------
    first, second : pandas.DataFrame
        Long tables of :func:`esoct.features.cohort.extract_cohort` (``patient_id``,
        ``timepoint``, features).
    timepoint : str
        Time point of the first reading to pair with the second (``pre``).

    Returns
    -------
    (reader1, reader2) : tuple of pandas.DataFrame
        Same feature columns, indexed by ``patient_id``; ``reader2`` holds only the patients
        whose second reading succeeded. Use ``ICCFilter(reader2=reader2)`` with ``reader1``
        (or delta features with ``reader1=reader1``).
    """
    r1 = first[first["timepoint"] == timepoint].drop(columns="timepoint").set_index("patient_id")
    r2 = second.drop(columns="timepoint").set_index("patient_id")
    missing = sorted(set(r1.columns) - set(r2.columns))
    if missing:
        raise InputError(f"the second reading lacks {len(missing)} features of the first, e.g. {missing[:3]}")
    return r1, r2[r1.columns]


def _center(manifest, pid: str) -> str:
    return str(manifest.row(pid)["center"])


def _has(manifest, column: str) -> bool:
    return column in manifest.table.columns


def _safe(pid: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in str(pid))
