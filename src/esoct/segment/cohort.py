"""Segment a whole cohort with a trained network: one label map per patient, resumable, on Dask or here.

Each patient's task loads the segmenter itself from its checkpoint path (once per worker
process, then cached), so no torch model travels through pickle, and runs torch on one thread.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from esoct.errors import InputError

_SEGMENTERS: dict = {}  # per-process cache: checkpoint (path, size, mtime) -> Segmenter


def output_path(out_dir: str | Path, patient_id: str, timepoint: str = "pre") -> Path:
    """``<out_dir>/<patient_id>_<timepoint>_seg.nii.gz``: where :func:`segment_cohort` writes a label map."""
    return Path(out_dir) / f"{patient_id}_{timepoint}_seg.nii.gz"


def segment_cohort(
    segmenter_path: str | Path,
    manifest_path: str | Path,
    out_dir: str | Path,
    *,
    timepoint: str = "pre",
    postprocess: bool = True,
    device: str | None = None,
    scheduler=None,
    workers: int | None = None,
    progress: bool = True,
    patients=None,
):
    """Predict the label map of every patient's CT, skipping those already written.

    Parameters
    ----------
    segmenter_path : str or Path
        A cascade folder (:func:`esoct.segment.cascade.write_cascade`) or a training checkpoint
        (:func:`esoct.segment.training.train_segmentation`), read with
        :func:`esoct.segment.cascade.load_segmentation` by every task.
    manifest_path : str or Path
        Cohort manifest; the ``image_<timepoint>`` column is segmented.
    out_dir : str or Path
        Output folder: ``<patient_id>_<timepoint>_seg.nii.gz`` (uint8 label map with the input
        image's shape, spacing, origin and direction) and ``failures.csv``.
    timepoint : {"pre", "post"}
        Which scan.
    postprocess : bool
        Apply the connected-component rules (:func:`esoct.segment.inference.predict_volume`).
    device : str, optional
        Where each task runs the network: ``"cpu"``, ``"cuda"``...; default CUDA when the
        worker has it, else CPU.
    scheduler : None, "local", str or distributed.Client, optional
        Run on Dask (``"local"``: a local cluster; an address or client: that cluster). The
        workers must see the checkpoint, the images and ``out_dir``. None: here, one patient
        after the other.
    workers : int, optional
        Worker processes of a local Dask cluster.
    progress : bool
        Show a progress bar.
    patients : sequence of str, optional
        Only these patients (default: every patient of the manifest).

    Returns
    -------
    esoct.study.runner.CohortRun
        ``results`` map patient id to the written file; ``failures`` to the reason;
        ``skipped`` lists patients whose file already existed.

    Raises
    ------
    InputError
        Missing checkpoint (checked before any patient runs) or manifest.
    """
    from esoct.io.manifest import load_manifest
    from esoct.study.runner import run_per_patient

    segmenter_path = Path(segmenter_path).resolve()
    if not segmenter_path.exists():
        raise InputError("segmentation model not found (a cascade folder or a checkpoint)", segmenter_path)
    manifest = load_manifest(manifest_path)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = partial(segment_patient, segmenter_path=str(segmenter_path), manifest=manifest, out_dir=str(out_dir),
                   timepoint=timepoint, postprocess=postprocess, device=device)
    return run_per_patient(
        manifest.patients if patients is None else list(patients),
        work,
        done=lambda pid: output_path(out_dir, pid, timepoint).is_file(),
        failures_csv=out_dir / "failures.csv",
        desc=f"segmenting ({timepoint})",
        progress=progress,
        scheduler=scheduler,
        workers=workers,
    )


def segment_patient(pid: str, *, segmenter_path: str, manifest, out_dir: str, timepoint: str = "pre",
                    postprocess: bool = True, device: str | None = None) -> str:
    """Segment one patient's ``image_<timepoint>`` and write its label map (runs where the task lands).

    With a cascade, stage 1's own label map is written beside it (``<id>_<timepoint>_stage1.nii.gz``)
    so that each stage can be scored.

    Returns
    -------
    str
        The written file. Files are written under a temporary name and renamed, so an
        interrupted run never leaves a partial label map that would be taken as done.
    """
    import torch

    from esoct.io.imageio import read_image

    torch.set_num_threads(1)
    image_path = manifest.resolve(pid, f"image_{timepoint}")
    if image_path is None:
        raise InputError(f"manifest cell image_{timepoint} is empty", manifest.path, pid)
    image = read_image(image_path, patient=pid)
    model = _segmenter(segmenter_path, device)
    labels, info = model.predict(image, postprocess=postprocess, patient=pid)
    target = output_path(out_dir, pid, timepoint)
    if "stage1_labels" in info:
        _write_atomic(info["stage1_labels"], stage1_path(out_dir, pid, timepoint))
    _write_atomic(labels, target)
    return str(target)


def stage1_path(out_dir: str | Path, patient_id: str, timepoint: str = "pre") -> Path:
    """``<out_dir>/<patient_id>_<timepoint>_stage1.nii.gz``: a cascade's stage-1 label map."""
    return Path(out_dir) / f"{patient_id}_{timepoint}_stage1.nii.gz"


def _write_atomic(volume, target: Path) -> None:
    from esoct.io.imageio import write_image

    tmp = target.with_name(f".{target.name[:-len('.nii.gz')]}.tmp{os.getpid()}.nii.gz")
    write_image(volume, tmp)
    os.replace(tmp, target)


def _segmenter(path: str, device: str | None):
    """The segmentation model of ``path`` (cascade folder or checkpoint) on ``device``, loaded once per process.

    Reloaded when the file (a cascade's ``cascade.json``) changes.
    """
    from esoct.segment.cascade import CASCADE_FILE, is_cascade, load_segmentation

    key_file = Path(path) / CASCADE_FILE if is_cascade(path) and Path(path).is_dir() else Path(path)
    st = os.stat(key_file)
    key = (path, st.st_size, st.st_mtime_ns, device)
    if key not in _SEGMENTERS:
        _SEGMENTERS.clear()
        _SEGMENTERS[key] = load_segmentation(path, device=device)
    return _SEGMENTERS[key]
