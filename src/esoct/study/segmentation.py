"""The segmentation task of a study: plan -> train a 3D U-Net on the training centres -> segment the test centres.

Steps: fingerprint and plan of the training patients only (``models/segmentation/plan.json``),
normalisation from their foreground intensities, a residual 3D U-Net with deep supervision trained
on foreground-biased patches (focal + Dice loss, the tumour drawn more often; checkpoint every epoch,
so an interrupted run resumes), then sliding-window inference on every test-centre patient,
scored against the reference masks with Dice, IoU, HD95 and ASSD per class and volume agreement
(Pearson r, Bland-Altman) per class.

Outputs: ``models/segmentation/{segmenter.pt, plan.json}``, ``results/segmentation/``
(``labels/<id>_pre_seg.nii.gz`` predictions on each input grid, ``per_patient.csv``, ``summary.csv``,
``volume_agreement.csv``, ``metrics.json``, ``figures/volume_agreement.png``, ``failures.csv``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import InputError

CLASSES = {1: "tumour", 2: "aorta", 3: "esophagus", 4: "lymph node", 5: "pericardium"}


@dataclass
class SegmentationSettings:
    """CPU-sized training settings of the study's segmentation task (the study file's keys).

    Attributes
    ----------
    spacing : tuple of float
        Training spacing ``(z, y, x)`` mm; ``None`` takes the plan's.
    patch : tuple of int
        Patch ``(z, y, x)`` voxels.
    features : tuple of int
        Channels per encoder stage.
    epochs, iterations, batch : int
        Training length: ``epochs * iterations`` steps of ``batch`` patches.
    learning_rate : float
    dice_weight : float
        Weight of the soft Dice loss beside the focal loss.
    tumour_weight : float
        Foreground patches are centred on the tumour this many times as often as on each organ.
    max_train_patients : int
        At most this many training-centre patients are used (file order).
    """

    spacing: tuple | None = (5.0, 4.0, 4.0)
    patch: tuple = (24, 48, 48)
    features: tuple = (8, 16, 32, 64, 64)
    epochs: int = 30
    iterations: int = 10
    batch: int = 2
    learning_rate: float = 3e-3
    dice_weight: float = 1.0
    tumour_weight: float = 4.0
    max_train_patients: int = 16


@dataclass
class SegmentationStudy:
    """What :func:`run_segmentation_study` produced."""

    per_patient: pd.DataFrame
    summary: pd.DataFrame
    failures: dict = field(default_factory=dict)
    segmenter_path: Path | None = None


def foreground_normalisation(manifest, patients, samples_per_case: int = 20000, seed: int = 0) -> dict:
    """nnU-Net's CT scheme from the training patients' foreground: 0.5/99.5 % percentiles, mean, SD (HU).

    Parameters
    ----------
    manifest : esoct.io.manifest.Manifest
    patients : sequence of str
        Training patients only (the test patients must not inform the normalisation).
    samples_per_case : int
        Foreground voxels drawn per patient.
    seed : int

    Returns
    -------
    dict
        ``clip_low``, ``clip_high``, ``mean``, ``std`` in HU.
    """
    from esoct.io.imageio import read_image

    values = []
    rng = np.random.default_rng(seed)
    for pid in patients:
        img = read_image(manifest.resolve(pid, "image_pre"), patient=pid).array
        lab = read_image(manifest.resolve(pid, "mask_pre"), patient=pid).array
        fg = img[lab > 0].astype(np.float64)
        if fg.size:
            values.append(rng.choice(fg, size=min(len(fg), samples_per_case), replace=False))
    if not values:
        raise InputError("no foreground voxel in any training mask: cannot set the CT normalisation", manifest.path)
    v = np.concatenate(values)
    lo, hi = np.percentile(v, [0.5, 99.5])
    return {"clip_low": float(lo), "clip_high": float(hi), "mean": float(v.mean()), "std": float(v.std())}


def train_patients_and_test(manifest, test_centers, max_train: int) -> tuple[list[str], list[str]]:
    """Training-centre patients (at most ``max_train``, file order) and every test-centre patient."""
    centre = manifest.table.set_index("patient_id")["center"].astype(str)
    test = [p for p in manifest.patients if centre[p] in {str(c) for c in test_centers}]
    train = [p for p in manifest.patients if p not in set(test)][: int(max_train)]
    if not test:  # no external centre: hold out the last fifth
        k = max(1, len(train) // 5)
        train, test = train[:-k], train[-k:]
    return train, test


def run_segmentation_study(
    manifest_path: str | Path,
    out: str | Path,
    *,
    test_centers=(),
    settings: SegmentationSettings | None = None,
    seed: int = 0,
    progress: bool = True,
    scheduler=None,
) -> SegmentationStudy:
    """Plan, train and evaluate the segmentation network of a study (see the module docstring).

    Parameters
    ----------
    manifest_path : str or Path
        Cohort manifest (baseline CT and nn-TransEC label map per patient).
    out : str or Path
        Study directory.
    test_centers : sequence of str
        Held-out centres (empty: the last fifth of the patients).
    settings : SegmentationSettings, optional
    seed : int
    progress : bool
    scheduler : str or distributed.Client, optional
        Dask scheduler for the inference on the test patients (:mod:`esoct.scale.dask`).

    Returns
    -------
    SegmentationStudy
    """
    from esoct.io.manifest import Manifest, load_manifest
    from esoct.models.unet3d import UNet3D
    from esoct.segment.data import Augmentation, PatchDataset, Preprocessing, load_cases
    from esoct.segment.plan import compute_plan
    from esoct.segment.training import TrainingConfig, train_segmentation
    from esoct.train.device import seed_everything

    s = settings or SegmentationSettings()
    out = Path(out)
    res_dir, model_dir = out / "results" / "segmentation", out / "models" / "segmentation"
    res_dir.mkdir(parents=True, exist_ok=True)
    model_dir.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(manifest_path)
    train_ids, test_ids = train_patients_and_test(manifest, test_centers, s.max_train_patients)
    training = Manifest(manifest.table[manifest.table["patient_id"].isin(train_ids)], manifest.root, manifest.path)

    segmenter_path = model_dir / "segmenter.pt"
    if not segmenter_path.is_file():
        _, plan = compute_plan(training, model_dir / "plan", progress=False)
        shutil.copyfile(model_dir / "plan" / "plan.json", model_dir / "plan.json")
        spacing = tuple(float(v) for v in (s.spacing or plan.target_spacing))
        norm = foreground_normalisation(training, train_ids, seed=seed)
        prep = Preprocessing(spacing, norm["clip_low"], norm["clip_high"], norm["mean"], norm["std"])
        cases, load_failures = load_cases(training, train_ids, prep, progress=False)
        if not cases:
            raise InputError(f"no training case could be loaded: {load_failures}", manifest_path)
        n_stages = len(s.features)
        seed_everything(seed)
        net = UNet3D(1, 6, channels=tuple(s.features), strides=[1, (1, 2, 2)] + [2] * (n_stages - 2),
                     deep_supervision=min(4, n_stages - 1))
        data = PatchDataset(cases, tuple(s.patch), s.iterations * s.batch, augmentation=Augmentation(),
                            foreground_fraction=2 / 3, background=prep.background, seed=seed,
                            class_weights={1: float(s.tumour_weight)})
        config = TrainingConfig(epochs=s.epochs, iterations_per_epoch=s.iterations, batch_size=s.batch,
                                learning_rate=s.learning_rate, dice_weight=s.dice_weight, seed=seed)
        run_dir = out / "cache" / "segmentation" / "training"
        train_segmentation(net, data, run_dir, config, preprocessing=prep, resume=True, progress=progress)
        shutil.copyfile(run_dir / "checkpoint.pt", segmenter_path.with_suffix(".tmp"))
        segmenter_path.with_suffix(".tmp").replace(segmenter_path)
    per_patient, failures = _segment_and_score(segmenter_path, manifest, test_ids, res_dir, progress, scheduler)
    summary, agreement = _summaries(per_patient)
    summary.to_csv(res_dir / "summary.csv", index=False)
    agreement.to_csv(res_dir / "volume_agreement.csv", index=False)
    pd.DataFrame(sorted(failures.items()), columns=["patient_id", "reason"]).to_csv(res_dir / "failures.csv",
                                                                                   index=False)
    (res_dir / "metrics.json").write_text(json.dumps({
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(s).items()},
        "train_patients": train_ids, "test_patients": test_ids, "seed": seed,
        "summary": summary.to_dict("records"), "failures": failures}, indent=1, default=float))
    _figure(per_patient, res_dir / "figures" / "volume_agreement.png")
    return SegmentationStudy(per_patient, summary, failures, segmenter_path)


def _segment_and_score(segmenter_path: Path, manifest, patients, res_dir: Path, progress: bool, scheduler=None):
    """Segment the test patients (on Dask when ``scheduler`` is given; finished ones are skipped) and score them."""
    from esoct.evaluate.segmentation import segmentation_table
    from esoct.segment.cohort import output_path, segment_cohort
    from esoct.study.runner import run_per_patient

    labels_dir = res_dir / "labels"
    inference = segment_cohort(segmenter_path, manifest.path, labels_dir, patients=patients, scheduler=scheduler,
                               progress=progress)
    done = [p for p in patients if p not in inference.failures]
    scored = run_per_patient(done, lambda pid: segmentation_table(manifest.resolve(pid, "mask_pre"),
                                                                  output_path(labels_dir, pid), CLASSES, patient=pid),
                             desc="scoring", progress=False)
    tables = [scored.results[p] for p in done if p in scored.results]
    per_patient = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    per_patient.to_csv(res_dir / "per_patient.csv", index=False)
    return per_patient, {**inference.failures, **scored.failures}


def _summaries(per_patient: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from esoct.evaluate.segmentation import cohort_volume_agreement

    if per_patient.empty:
        return pd.DataFrame(), pd.DataFrame()
    rows = []
    for name, part in per_patient.groupby("name", sort=False):
        row = {"class": name, "n": int(len(part))}
        for col in ("dice", "iou", "hd95_mm", "assd_mm"):
            v = part[col].astype(float)
            finite = v[np.isfinite(v)]
            text = f"{finite.mean():.3f} ({finite.std(ddof=1) if len(finite) > 1 else 0.0:.3f})" if len(finite) else "n/a"
            if len(finite) < len(v):  # a class missing from the prediction has no surface distance
                text += f" [{len(v) - len(finite)} of {len(v)} undefined]"
            row[col] = text
        rows.append(row)
    agreement = cohort_volume_agreement(per_patient)
    return pd.DataFrame(rows), agreement


def _figure(per_patient: pd.DataFrame, path: Path) -> None:
    from esoct.report.agreement_figure import plot_volume_agreement

    if per_patient.empty:
        return
    volumes = {}
    for name in ("tumour", "aorta", "esophagus"):
        part = per_patient[per_patient["name"] == name]
        if len(part) >= 3:
            volumes[name] = (part["volume_ref_ml"].to_numpy(float), part["volume_pred_ml"].to_numpy(float))
    if volumes:
        plot_volume_agreement(volumes, path=path)
