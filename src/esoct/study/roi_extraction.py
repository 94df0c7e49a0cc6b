"""Cohort ROI extraction: the three ROI kinds of the papers for every patient of a manifest.

Outputs in ``out`` for patient ``<id>`` and time point ``<tp>``:

* ``<id>_<tp>_slices.npz``  ResoLSTM-Depth slice sequence: ``images`` (n, 224, 224) in [0, 1]
  (HU clipped to [-145, 225], min-max), ``masks``, ``slice_index``, ``z_mm`` (head to foot)
* ``<id>_<tp>_slab.npz``    2.5D slab of the longitudinal survival paper: ``channels`` (7, 224, 224)
  (window 50/350, 1 mm isotropic, z-score), ``masks``, ``slice_index``
* ``<id>_<tp>_krt_image.nii.gz`` / ``_krt_mask.nii.gz``  nn-TransEC KRT box (z, y, x) = 128 x 64 x 64
  voxels at ``krt_spacing`` mm, with its geometry
* ``roi_summary.csv`` one row per patient, ``failures.csv`` the patients that failed and why
* ``.<id>_<tp>.inputs`` the key of the CT and mask files (path, size, modification time) and the
  KRT spacing the files were cut from: a rerun reuses a patient's files only when the key is the
  present one, so a manifest edit or a rewritten mask is extracted again
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np

from esoct.errors import InputError
from esoct.io.imageio import read_image, write_image
from esoct.io.manifest import load_manifest
from esoct.study.runner import CohortRun, run_per_patient

KINDS = ("slices", "slab", "krt")


def _outputs(out: Path, pid: str, tp: str, kinds) -> list[Path]:
    files = []
    if "slices" in kinds:
        files.append(out / f"{pid}_{tp}_slices.npz")
    if "slab" in kinds:
        files.append(out / f"{pid}_{tp}_slab.npz")
    if "krt" in kinds:
        files += [out / f"{pid}_{tp}_krt_image.nii.gz", out / f"{pid}_{tp}_krt_mask.nii.gz"]
    return files


def extract_cohort_rois(
    manifest_path: str | Path,
    out: str | Path,
    *,
    kinds=KINDS,
    timepoint: str = "pre",
    krt_spacing=(1.0, 1.0, 1.0),
    progress: bool = True,
    scheduler=None,
    workers: int | None = None,
) -> CohortRun:
    """Extract ROIs for every patient in a manifest, resuming and recording failures.

    Parameters
    ----------
    manifest_path : path
        Cohort manifest CSV.
    out : path
        Output folder.
    kinds : iterable of {"slices", "slab", "krt"}
    timepoint : {"pre", "post"}
        Which scan (``image_<tp>`` / ``mask_<tp>`` columns).
    krt_spacing : tuple of float
        Spacing (z, y, x) mm of the KRT box.
    progress : bool
    scheduler : None, "local", str or distributed.Client, optional
        Run the patients on Dask (see :func:`esoct.study.runner.run_per_patient`); the workers
        must see the manifest's files and ``out``. None: one after the other in this process.
    workers : int, optional
        Worker processes of a local Dask cluster.

    Returns
    -------
    CohortRun
        ``results`` hold one summary dict per patient; written to ``roi_summary.csv``.
    """
    import pandas as pd

    kinds = tuple(kinds)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown ROI kind(s) {sorted(unknown)}; choose from {KINDS}")
    manifest = load_manifest(manifest_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    work = partial(_extract_patient, manifest=manifest, out=out, kinds=kinds, timepoint=timepoint, krt_spacing=krt_spacing)
    run = run_per_patient(
        manifest.patients,
        work,
        done=lambda pid: _is_current(out, pid, timepoint, kinds, manifest, krt_spacing),
        failures_csv=out / "failures.csv",
        desc=f"ROIs ({', '.join(kinds)})",
        progress=progress,
        scheduler=scheduler,
        workers=workers,
    )
    summary = out / "roi_summary.csv"
    previous = pd.read_csv(summary, dtype={"patient_id": str}) if summary.exists() else pd.DataFrame()
    rows = pd.DataFrame(list(run.results.values()))
    if not previous.empty and not rows.empty:
        previous = previous[~previous["patient_id"].isin(rows["patient_id"])]
    table = pd.concat([previous, rows], ignore_index=True) if not rows.empty else previous
    if not table.empty:
        table.sort_values("patient_id").to_csv(summary, index=False)
    return run


def _extract_patient(pid: str, *, manifest, out: Path, kinds: tuple, timepoint: str, krt_spacing) -> dict:
    """Write one patient's ROI files and return its summary row (module level: it must pickle for Dask)."""
    from esoct.preprocess.roi import krt_inputs, longitudinal_inputs, resolstm_inputs

    img_path = manifest.resolve(pid, f"image_{timepoint}")
    msk_path = manifest.resolve(pid, f"mask_{timepoint}")
    if img_path is None or msk_path is None:
        raise InputError(f"no image_{timepoint}/mask_{timepoint} in the manifest", manifest.path, pid)
    image = read_image(img_path, patient=pid)
    mask = read_image(msk_path, patient=pid)
    key = _roi_key(manifest, pid, timepoint, krt_spacing)
    row = {"patient_id": pid, "timepoint": timepoint}
    if "slices" in kinds:
        seq = resolstm_inputs(image, mask, patient=pid)
        save_npz_atomic(out / f"{pid}_{timepoint}_slices.npz", images=seq.images.astype(np.float32),
                        masks=seq.masks, slice_index=seq.slice_index, z_mm=seq.z_mm)
        row["n_slices"] = int(len(seq.slice_index))
    if "slab" in kinds:
        slab = longitudinal_inputs(image, mask, patient=pid)
        save_npz_atomic(out / f"{pid}_{timepoint}_slab.npz", channels=slab.channels.astype(np.float32),
                        masks=slab.masks, slice_index=slab.slice_index)
        row["slab_center_index"] = int(slab.center_index)
    if "krt" in kinds:
        box = krt_inputs(image, mask, spacing_zyx=krt_spacing, patient=pid)
        _write_image_atomic(box.image, out / f"{pid}_{timepoint}_krt_image.nii.gz")
        _write_image_atomic(box.mask, out / f"{pid}_{timepoint}_krt_mask.nii.gz")
        row["krt_tumour_inside"] = bool(box.tumour_inside)
        row["krt_fraction_inside"] = round(float(box.fraction_inside), 4)
    _key_file(out, pid, timepoint).write_text(key + "\n")  # last: the files above are complete and current
    return row


def _key_file(out: Path, pid: str, tp: str) -> Path:
    return out / f".{pid}_{tp}.inputs"


def _roi_key(manifest, pid: str, tp: str, krt_spacing) -> str:
    """Key of what a patient's ROI files are cut from: the CT and mask files and the KRT spacing."""
    from esoct.io.fingerprint import input_key

    return input_key([manifest.resolve(pid, f"image_{tp}"), manifest.resolve(pid, f"mask_{tp}")],
                     {"krt_spacing": [float(v) for v in krt_spacing]})


def _is_current(out: Path, pid: str, tp: str, kinds, manifest, krt_spacing) -> bool:
    """Every ROI file is there and was cut from the manifest's present CT and mask (else: cut again)."""
    key_file = _key_file(out, pid, tp)
    if not key_file.is_file() or not all(p.exists() for p in _outputs(out, pid, tp, kinds)):
        return False
    try:
        return key_file.read_text().strip() == _roi_key(manifest, pid, tp, krt_spacing)
    except (OSError, InputError):
        return False


def save_npz_atomic(path: Path, **arrays) -> Path:
    """``numpy.savez_compressed`` to a temporary name in the same folder, then rename: a file that
    exists is complete, so "done" can mean "the file exists" even after a crash mid-write."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_image_atomic(volume, path: Path) -> Path:
    tmp = path.with_name(f".{os.getpid()}.tmp.{path.name}")
    try:
        write_image(volume, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

