"""The 4-class T-stage task of a study (nn-TransEC classifier on KRT crops), with Grad-CAM cases for the viewer.

Each patient's baseline CT is cropped around the tumour of its reference label map (the KRT box,
``krt_size`` voxels at ``krt_spacing`` mm) and normalised with nnU-Net's CT scheme. A residual 3D
encoder with the nn-TransEC head is cross-validated (patient-level folds stratified by T stage,
focal loss with class weights from the training fold); the paper's cross-task gates and encoder
transfer need a segmentation encoder per fold and are left to ``bench/classify_phantom.py``.

Outputs: ``cache/krt/<size>@<spacing>/<id>.npz`` (crops), ``results/tstage4/`` (``folds.json``, ``fold-<k>/``,
``predictions.csv``, ``table8.csv``, ``confusion.csv``, ``metrics.json``, ``figures/``),
``models/tstage4/fold-<k>/model.pt`` (:func:`esoct.classify.model_file.load_classifier`) and
``results/viewer/<id>.npz`` for a few patients: the crop in HU, its label map and the Grad-CAM of
the fold model that did not see the patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import InputError


@dataclass
class Tstage4Settings:
    """Settings of the 4-class task (the study file's keys).

    Attributes
    ----------
    folds : int
    epochs, batch_size : int
    learning_rate : float
    features : tuple of int
        Channels per encoder stage.
    krt_size : tuple of int
        KRT box ``(z, y, x)`` voxels.
    krt_spacing : tuple of float
        Spacing of the box ``(z, y, x)`` mm.
    viewer_cases : int
        Patients written for the report's case viewer.
    """

    folds: int = 5
    epochs: int = 15
    batch_size: int = 8
    learning_rate: float = 1e-3
    features: tuple = (8, 16, 32, 64)
    krt_size: tuple = (32, 32, 32)
    krt_spacing: tuple = (4.0, 2.0, 2.0)
    viewer_cases: int = 4


def krt_inputs(manifest, out_dir: Path, size, spacing, progress: bool = True, scheduler=None):
    """KRT crops of every patient around the reference tumour, cached as ``<id>.npz`` (image HU, labels).

    Each crop file holds the key of its inputs (:func:`esoct.io.fingerprint.input_key` of the
    patient's CT and mask files, the size and the spacing); a crop whose key differs (a manifest
    edit, a rewritten mask) is cut again.

    Returns
    -------
    crops : dict
        Patient id -> (image HU float32 (z, y, x), labels uint8 (z, y, x)).
    failures : dict
        Patient id -> reason.
    """
    from esoct.study.runner import run_per_patient

    out_dir.mkdir(parents=True, exist_ok=True)

    def one(pid):
        from esoct.io.fingerprint import input_key

        path = out_dir / f"{pid}.npz"
        key = input_key([manifest.resolve(pid, "image_pre"), manifest.resolve(pid, "mask_pre")],
                        {"size": list(size), "spacing": [float(v) for v in spacing]})
        cached = _cached_crop(path, key)
        if cached is not None:
            return cached
        image, labels = _crop(manifest, pid, size, spacing)
        tmp = out_dir / f"{pid}.tmp.npz"
        np.savez_compressed(tmp, image=image, labels=labels, spacing=np.asarray(spacing, float), input_key=key)
        tmp.replace(path)
        return image, labels

    run = run_per_patient(manifest.patients, one, desc="KRT crops", progress=progress)
    return run.results, dict(run.failures)


def _cached_crop(path: Path, key: str):
    """(image, labels) of a crop file made from the same inputs, else None (missing, stale or unreadable)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            if "input_key" not in z.files or str(z["input_key"]) != key:
                return None
            return z["image"], z["labels"]
    except (OSError, ValueError, EOFError):
        return None


def _crop(manifest, pid, size, spacing):
    from esoct.classify.krt import krt_crop
    from esoct.io.imageio import read_image

    image = read_image(manifest.resolve(pid, "image_pre"), patient=pid)
    labels = read_image(manifest.resolve(pid, "mask_pre"), patient=pid)
    box = krt_crop(image, labels, tuple(size), spacing_zyx=tuple(spacing), patient=pid)
    return box.image.array.astype(np.float32), box.mask.array.astype(np.uint8)


def run_tstage4_study(
    manifest_path: str | Path,
    out: str | Path,
    *,
    settings: Tstage4Settings | None = None,
    seed: int = 0,
    progress: bool = True,
):
    """Cross-validate the 4-class T-stage classifier of a study (see the module docstring).

    Parameters
    ----------
    manifest_path : str or Path
        Cohort manifest with ``pT`` (T1..T4).
    out : str or Path
        Study directory.
    settings : Tstage4Settings, optional
    seed : int
    progress : bool

    Returns
    -------
    esoct.classify.multitask.CVResult
    """
    from esoct.classify.krt import DEFAULT_NORMALIZATION, normalize_ct
    from esoct.classify.model_file import save_classifier
    from esoct.classify.multitask import KrtDataset, TrainConfig, cross_validate
    from esoct.io.manifest import load_manifest
    from esoct.models.multitask import build_multitask_classifier
    from esoct.models.unet3d import UNetEncoder
    from esoct.train.checkpoint import load_checkpoint

    s = settings or Tstage4Settings()
    out = Path(out)
    res_dir, model_dir = out / "results" / "tstage4", out / "models" / "tstage4"
    manifest = load_manifest(manifest_path)
    box = "x".join(str(int(v)) for v in s.krt_size) + "@" + "x".join(f"{float(v):g}" for v in s.krt_spacing)
    crops, failures = krt_inputs(manifest, out / "cache" / "krt" / box, s.krt_size, s.krt_spacing, progress)
    stages = manifest.table.set_index("patient_id")["pT"].astype(str).str.upper()
    ids = [p for p in manifest.patients if p in crops and stages.get(p, "") in ("T1", "T2", "T3", "T4")]
    for p in manifest.patients:
        if p in crops and p not in ids:
            failures[p] = f"patient {p}: pT {stages.get(p)!r} is not T1..T4"
    if len(ids) < s.folds:
        raise InputError(f"{len(ids)} usable patients for {s.folds} folds", manifest_path)
    images = np.stack([normalize_ct(crops[p][0]) for p in ids])
    dataset = KrtDataset(images, [stages[p] for p in ids], ids)
    n = len(s.features)
    strides = [[1, 1, 1]] + [[2, 2, 2]] * (n - 1)

    def encoder_factory(residual=True):
        return UNetEncoder(1, list(s.features), strides, 3, residual=residual)

    def model_fn(fold, train_ids):
        model, _ = build_multitask_classifier(None, encoder_factory, residual=True, gates=False, transfer=False,
                                              hidden=64, seed=seed + fold)
        return model

    config = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.learning_rate, seed=seed)
    result = cross_validate(dataset, model_fn, res_dir, config, n_splits=s.folds, seed=seed, progress=progress,
                            title="KRT classifier")
    krt_meta = {"size_zyx": list(s.krt_size), "spacing_zyx": list(s.krt_spacing), "normalization": dict(DEFAULT_NORMALIZATION)}
    models = {}
    for k in range(s.folds):
        path = model_dir / f"fold-{k}" / "model.pt"
        ckpt = res_dir / f"fold-{k}" / "checkpoint.pt"
        if not ckpt.is_file():
            continue
        model = model_fn(k, [])
        load_checkpoint(ckpt, model, restore_rng=False)
        model.eval()
        save_classifier(path, model, krt=krt_meta, extra={"class_names": ["T1", "T2", "T3", "T4"], "fold": k})
        models[k] = model
    pd.DataFrame(sorted(failures.items()), columns=["patient_id", "reason"]).to_csv(res_dir / "failures.csv",
                                                                                   index=False)
    _viewer_cases(result.predictions, models, crops, s, out / "results" / "viewer", manifest)
    return result


def _viewer_cases(predictions: pd.DataFrame, models: dict, crops: dict, s: Tstage4Settings, viewer_dir: Path,
                  manifest=None) -> None:
    """Write ``results/viewer/<id>.npz`` for a few patients, one per T stage first, with their fold's Grad-CAM.

    With the manifest, each case also gets the whole-volume viewer's files (:func:`_whole_volume_files`).
    """
    from esoct.classify.gradcam3d import grad_cam_3d
    from esoct.classify.krt import normalize_ct

    viewer_dir.mkdir(parents=True, exist_ok=True)
    picked = predictions.sort_values(["pT", "patient_id"]).groupby("pT").head(1)
    rest = predictions[~predictions["patient_id"].isin(picked["patient_id"])].sort_values("patient_id")
    chosen = pd.concat([picked, rest]).head(s.viewer_cases)
    for row in chosen.itertuples():
        model = models.get(int(row.fold))
        if model is None or row.patient_id not in crops:
            continue
        image, labels = crops[row.patient_id]
        cam = grad_cam_3d(model, normalize_ct(image))
        title = (f"{row.patient_id}: reference {row.pT}, predicted {row.predicted} "
                 f"(fold {row.fold} model; Grad-CAM of T{cam.class_index + 1})")
        np.savez_compressed(viewer_dir / f"{row.patient_id}.npz", image=image.astype(np.float32),
                            labels=labels.astype(np.uint8), gradcam=cam.cam.astype(np.float32),
                            spacing=np.asarray(s.krt_spacing, float), title=np.array(title))
        if manifest is not None:
            _whole_volume_files(manifest, row.patient_id, cam.cam, s, viewer_dir)


def _whole_volume_files(manifest, pid: str, cam: np.ndarray, s: Tstage4Settings, viewer_dir: Path) -> None:
    """``<id>_ct.nii.gz`` (the CT shrunk to 256 voxels in-plane), ``<id>_reference.nii.gz`` and
    ``<id>_gradcam.nii.gz`` (the KRT crop's Grad-CAM at the crop's place in the patient) for the report's
    whole-volume viewer (:mod:`esoct.report.volume_viewer`)."""
    from esoct.classify.krt import krt_crop
    from esoct.io.imageio import read_image, write_image
    from esoct.io.volume import Volume
    from esoct.report.volume_viewer import display_grid

    image = read_image(manifest.resolve(pid, "image_pre"), patient=pid)
    labels = read_image(manifest.resolve(pid, "mask_pre"), patient=pid)
    box = krt_crop(image, labels, tuple(s.krt_size), spacing_zyx=tuple(s.krt_spacing), patient=pid)
    if cam.shape != box.image.array.shape:
        raise InputError(f"Grad-CAM {cam.shape} does not fit the KRT crop {box.image.array.shape}", patient=pid)
    write_image(display_grid(image, 256), viewer_dir / f"{pid}_ct.nii.gz")
    write_image(labels.with_array(np.asarray(labels.array).astype(np.uint8)), viewer_dir / f"{pid}_reference.nii.gz")
    write_image(Volume(cam.astype(np.float32), box.image.spacing, box.image.origin, box.image.direction),
                viewer_dir / f"{pid}_gradcam.nii.gz")
