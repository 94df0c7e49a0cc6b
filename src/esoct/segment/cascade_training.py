"""Train the segmentation cascade from a training cohort, every setting from its plans.

Steps (each resumable, each fitted on the training patients only):

1. **Stage-1 plan**: the cohort's fingerprint, then nnU-Net's ``3d_lowres`` rule: starting from
   the full-resolution target spacing, the spacing grows by 3 % per step (the finer axes first
   while any axis is more than twice as fine as the coarsest) until the plan's patch covers at
   least a quarter of the median resampled image (:func:`lowres_plan`).
2. **Stage 1** trains on the whole CTs with :func:`esoct.segment.cascade.stage1_targets`.
3. **Crops**: stage 1 predicts every training CT; the box around its esophagus, dilated by the
   station margin, is cut from the CT, the reference labels and stage 1's labels and written as
   NIfTI with a manifest (``crops/manifest.csv``): the stage-2 data set, also exported for nnU-Net.
   Training on stage 1's own boxes (not the reference's) gives stage 2 the boxes it sees in use.
4. **Stage-2 plan**: the fingerprint of the crops and the plan rules (median spacing, patch,
   topology, normalisation) on them.
5. **Stage 2** trains on the crops with stage 1's organs as one-hot channels and nnU-Net's
   foreground oversampling (a third of the patches centred on a foreground voxel).

Study-file overrides (spacing, patch, features) are passed to :func:`esoct.segment.plan.make_plan`,
so the saved plan is what was trained.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import InputError
from esoct.segment.cascade import CONTEXT_CLASSES, CascadeSegmenter, context_channels, crop_box, stage1_targets
from esoct.segment.data import Augmentation, Case, PatchDataset, Preprocessing, load_case
from esoct.segment.training import TrainingConfig, model_from_plan, train_segmentation


@dataclass
class CascadeSettings:
    """What the study file may set for the cascade; ``None`` leaves a value to the plan.

    Attributes
    ----------
    stage1_spacing, stage2_spacing : tuple of 3 float or None
        Target spacing ``(z, y, x)`` mm (None: the lowres rule / the plan on the crops).
    stage1_patch, stage2_patch : tuple of 3 int or None
        Patch ``(z, y, x)`` voxels (None: the plan's, fitted to ``memory_budget_mb``).
    base_features, max_features : int
        Channels of the first stage and the cap (nnU-Net: 32, 320; CPU default 16, 128).
    memory_budget_mb : float
        Activation memory of a training step, MiB (plan rule 4); sets the patch when not given.
    stage1_epochs, stage2_epochs, iterations, batch : int
        Training length per stage: ``epochs * iterations`` steps of ``batch`` patches.
    stage1_minutes, stage2_minutes : float or None
        A wall-time budget per stage instead of the epoch count: the epochs are set from a timed
        probe of 3 steps (recorded in the run's ``history.json``).
    learning_rate, dice_weight : float
    loss : {"ce_dice", "focal_dice"}
        ``ce_dice``: cross-entropy + ``dice_weight`` x Dice, nnU-Net's default (the focal term at
        alpha 1, gamma 0); ``focal_dice``: nn-TransEC's focal loss (alpha 0.25, gamma 2) + Dice.
        The focal loss down-weights the moderately confident voxels at the tumour/wall boundary,
        which is where the first full runs failed (docs/segmentation_cascade.md).
    foreground_fraction : float
        Share of patches centred on a foreground voxel (nnU-Net: 1/3).
    class_weights : dict
        Draw weight of each foreground class for those patches (tumour and nodes more often).
    margin_mm : tuple of 3 float or None
        Crop dilation (None: :data:`esoct.phantom.stations.DEFAULT_MARGIN_MM`).
    min_node_mm3 : float
        Post-processing: smallest node kept.
    context : bool
        Stage 2 takes stage 1's organs as input channels.
    residual, deep_supervision : bool
        Network ablations (nn-TransEC Table 11).
    max_train_patients : int
        At most this many training-centre patients (file order).
    """

    stage1_spacing: tuple | None = None
    stage2_spacing: tuple | None = None
    stage1_patch: tuple | None = None
    stage2_patch: tuple | None = None
    base_features: int = 16
    max_features: int = 128
    memory_budget_mb: float = 150.0
    stage1_epochs: int = 20
    stage2_epochs: int = 40
    iterations: int = 20
    batch: int = 2
    stage1_minutes: float | None = None
    stage2_minutes: float | None = None
    learning_rate: float = 3e-3
    dice_weight: float = 1.0
    loss: str = "ce_dice"
    foreground_fraction: float = 1.0 / 3.0
    class_weights: dict = field(default_factory=lambda: {1: 2.0, 4: 2.0})
    margin_mm: tuple | None = None
    min_node_mm3: float = 30.0
    context: bool = True
    residual: bool = True
    deep_supervision: bool = True
    max_train_patients: int = 1000

    def margin(self) -> tuple:
        """The crop margin in use, mm ``(z, y, x)``."""
        from esoct.phantom.stations import DEFAULT_MARGIN_MM

        return tuple(float(v) for v in (self.margin_mm or DEFAULT_MARGIN_MM))


def lowres_plan(fingerprint, *, threshold: float = 0.25, factor: float = 1.03, spacing=None, **plan_kwargs):
    """nnU-Net's ``3d_lowres`` rule: coarsen the spacing until the patch covers ``threshold`` of the median image.

    Parameters
    ----------
    fingerprint : esoct.segment.plan.Fingerprint
    threshold : float
        Smallest patch / median-image voxel ratio (nnU-Net: 0.25).
    factor : float
        Spacing growth per step (nnU-Net: 1.03).
    spacing : sequence of 3 float, optional
        Fixed spacing instead of the rule (a study-file override).
    **plan_kwargs
        Passed to :func:`esoct.segment.plan.make_plan`.

    Returns
    -------
    esoct.segment.plan.Plan
    """
    from esoct.segment.plan import make_plan, target_spacing

    if spacing is not None:
        return make_plan(fingerprint, spacing=spacing, **plan_kwargs)
    sp = np.asarray(target_spacing(fingerprint.spacings, fingerprint.shapes)[0], dtype=float)
    for _ in range(200):
        plan = make_plan(fingerprint, spacing=tuple(sp), **plan_kwargs)
        if np.prod(plan.patch_size) >= threshold * np.prod(plan.median_shape):
            return plan
        fine = sp.max() / sp > 2
        sp = np.where(fine, sp * factor, sp) if fine.any() else sp * factor
    return plan


def _network(plan, in_channels: int, s: CascadeSettings):
    return model_from_plan(plan, in_channels=in_channels, residual=s.residual, deep_supervision=4 if s.deep_supervision else 1)


#: (alpha, gamma) of the focal term per ``CascadeSettings.loss``; alpha 1, gamma 0 is the cross-entropy.
LOSSES = {"ce_dice": (1.0, 0.0), "focal_dice": (0.25, 2.0)}


def _config(s: CascadeSettings, epochs: int, seed: int) -> TrainingConfig:
    if s.loss not in LOSSES:
        raise InputError(f"cascade loss {s.loss!r} is not one of {sorted(LOSSES)}")
    alpha, gamma = LOSSES[s.loss]
    return TrainingConfig(epochs=epochs, iterations_per_epoch=s.iterations, batch_size=s.batch,
                          learning_rate=s.learning_rate, dice_weight=s.dice_weight, focal_alpha=alpha,
                          focal_gamma=gamma, seed=seed)


def epochs_for_budget(model, dataset: PatchDataset, config: TrainingConfig, minutes: float) -> int:
    """Epochs of ``config.iterations_per_epoch`` steps that fit in ``minutes``, from 3 timed steps on a copy.

    Returns
    -------
    int
        At least 1.
    """
    import torch

    from esoct.train.losses import DeepSupervisionLoss, SegmentationLoss

    probe = copy.deepcopy(model).train()
    opt = torch.optim.Adam(probe.parameters(), lr=1e-4)
    loss_fn = DeepSupervisionLoss(SegmentationLoss(dice_weight=config.dice_weight))
    times = []
    for i in range(4):
        t0 = time.perf_counter()
        batch = [dataset[j] for j in range(i * config.batch_size, (i + 1) * config.batch_size)]
        x = torch.stack([b["image"] for b in batch])
        y = torch.stack([b["label"] for b in batch])
        opt.zero_grad()
        loss_fn(probe(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    per_step = float(np.median(times[1:]))
    return max(1, int(minutes * 60.0 / (per_step * config.iterations_per_epoch)))


def train_stage(model, cases: list[Case], plan, prep: Preprocessing, run_dir: Path, s: CascadeSettings, *,
                epochs: int, minutes: float | None, seed: int, progress: bool):
    """Train one stage on foreground-oversampled patches of ``cases``; returns the TrainingResult.

    ``minutes`` (when given and no checkpoint exists yet) sets the epochs by :func:`epochs_for_budget`;
    the chosen count is kept in ``run_dir/epochs.txt`` so a resumed run trains the same schedule.
    """
    data = PatchDataset(cases, tuple(plan.patch_size), s.iterations * s.batch, augmentation=Augmentation(),
                        foreground_fraction=s.foreground_fraction, background=prep.background, seed=seed,
                        class_weights=s.class_weights or None)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "epochs.txt"
    if saved.is_file():
        epochs = int(saved.read_text())
    elif minutes:
        epochs = epochs_for_budget(model, data, _config(s, 1, seed), minutes)
    saved.write_text(f"{int(epochs)}\n")
    return train_segmentation(model, data, run_dir, _config(s, int(epochs), seed), preprocessing=prep, resume=True,
                              progress=progress, desc=f"train {run_dir.name}")


def fit_stage1(manifest, train_ids, out_dir: Path, s: CascadeSettings, *, seed: int = 0, progress: bool = True):
    """Plan (lowres rule) and train stage 1 on the whole training CTs.

    Returns
    -------
    (Segmenter, Plan, TrainingResult)
    """
    from esoct.io.manifest import Manifest
    from esoct.segment.plan import extract_fingerprint

    training = Manifest(manifest.table[manifest.table["patient_id"].isin(train_ids)], manifest.root, manifest.path)
    fp = extract_fingerprint(training, progress=False, seed=seed)
    plan = lowres_plan(fp, spacing=s.stage1_spacing, patch_size=s.stage1_patch, base_features=s.base_features,
                       max_features=s.max_features, memory_budget_mb=s.memory_budget_mb)
    prep = Preprocessing.from_plan(plan)
    cases = []
    for pid in train_ids:
        case = load_case(training, pid, prep)
        cases.append(Case(pid, case.image, case.labels.with_array(stage1_targets(case.labels.array))))
    result = train_stage(_network(plan, 1, s), cases, plan, prep, Path(out_dir) / "stage1", s, epochs=s.stage1_epochs,
                         minutes=s.stage1_minutes, seed=seed, progress=progress)
    return result.segmenter, plan, result


def write_crops(manifest, patients, stage1, out_dir: Path, margin_mm, *, progress: bool = True) -> tuple[Path, dict]:
    """Cut every patient's esophageal box (from stage 1's prediction) and write the stage-2 data set.

    Parameters
    ----------
    manifest : esoct.io.manifest.Manifest
    patients : sequence of str
    stage1 : Segmenter
    out_dir : Path
        Receives ``<id>_image.nii.gz``, ``<id>_labels.nii.gz``, ``<id>_stage1.nii.gz`` and
        ``manifest.csv`` (``patient_id, center, image_pre, mask_pre, stage1_pre, pT, box_start, box_size``).
        Patients already written are reused.
    margin_mm : tuple of 3 float

    Returns
    -------
    (Path, dict)
        The crop manifest and ``{patient_id: reason}`` of patients that failed.
    """
    from esoct.io.imageio import read_image, write_image
    from esoct.segment.inference import predict_volume
    from esoct.study.runner import run_per_patient

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = manifest.table.set_index("patient_id")

    def work(pid: str) -> dict:
        files = {k: out_dir / f"{pid}_{k}.nii.gz" for k in ("image", "labels", "stage1")}
        image = read_image(manifest.resolve(pid, "image_pre"), patient=pid)
        if not all(f.is_file() for f in files.values()):
            reference = read_image(manifest.resolve(pid, "mask_pre"), patient=pid)
            lab1, _ = predict_volume(stage1, image, postprocess=True, min_tumour_ml=0.0)
            start, size = crop_box(reference, margin_mm, patient=pid)
            try:  # stage 1's box as it is in use, widened to hold every reference structure of the box
                s1, n1 = crop_box(lab1, margin_mm, patient=pid)
                hi = np.maximum(np.add(start, size), np.add(s1, n1))
                start = tuple(int(v) for v in np.minimum(start, s1))
                size = tuple(int(v) for v in hi - np.asarray(start))
            except InputError:  # stage 1 missed the esophagus: the reference box alone
                pass
            for key, vol, fill in (("labels", reference, 0), ("stage1", lab1, 0), ("image", image, -1024)):
                tmp = out_dir / f".{pid}_{key}.tmp.nii.gz"
                write_image(vol.crop(start, size, fill=fill), tmp)
                tmp.replace(files[key])
        crop = read_image(files["image"], patient=pid)
        start = np.rint(image.physical_to_index(np.asarray(crop.origin)[None])[0]).astype(int)
        return {"patient_id": pid, "center": table.loc[pid, "center"], "image_pre": files["image"].name,
                "mask_pre": files["labels"].name, "stage1_pre": files["stage1"].name, "pT": table.loc[pid].get("pT", ""),
                "box_start": " ".join(str(int(v)) for v in start), "box_size": " ".join(str(v) for v in crop.shape)}

    run = run_per_patient(list(patients), work, desc="stage-2 crops", progress=progress)
    rows = [run.results[p] for p in patients if p in run.results]
    if not rows:
        raise InputError(f"no stage-2 crop could be made: {run.failures}", manifest.path)
    path = out_dir / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, dict(run.failures)


def stage2_cases(crop_manifest, patients, prep: Preprocessing, context: bool) -> list[Case]:
    """Stage-2 training cases: crop CT + reference labels at stage 2's spacing, stage 1's organs as channels."""
    from esoct.io.imageio import read_image

    cases = []
    for pid in patients:
        case = load_case(crop_manifest, pid, prep)
        if context:
            lab1 = prep.labels(read_image(crop_manifest.resolve(pid, "stage1_pre"), patient=pid))
            case.extra = context_channels(lab1.array)
        cases.append(case)
    return cases


def plan_stage2(crop_manifest, s: CascadeSettings, seed: int = 0):
    """The plan rules run on the crops (with the study file's overrides)."""
    from esoct.segment.plan import extract_fingerprint, make_plan

    fp = extract_fingerprint(crop_manifest, progress=False, seed=seed)
    return make_plan(fp, spacing=s.stage2_spacing, patch_size=s.stage2_patch, base_features=s.base_features,
                     max_features=s.max_features, memory_budget_mb=s.memory_budget_mb)


def fit_stage2(crop_manifest, patients, plan, out_dir: Path, s: CascadeSettings, *, seed: int = 0,
               progress: bool = True, model=None):
    """Train stage 2 on the crops (``model``: another network taking the same channels, for baselines).

    Returns
    -------
    (Segmenter, TrainingResult)
    """
    prep = Preprocessing.from_plan(plan)
    cases = stage2_cases(crop_manifest, patients, prep, s.context)
    in_channels = 1 + (len(CONTEXT_CLASSES) if s.context else 0)
    model = model if model is not None else _network(plan, in_channels, s)
    result = train_stage(model, cases, plan, prep, Path(out_dir), s, epochs=s.stage2_epochs, minutes=s.stage2_minutes,
                         seed=seed, progress=progress)
    return result.segmenter, result


@dataclass
class CascadeFit:
    """What :func:`fit_cascade` made."""

    cascade: CascadeSegmenter
    plans: dict
    crop_manifest: Path
    failures: dict
    seconds: dict
    histories: dict


def fit_cascade(manifest, train_ids, out_dir, settings: CascadeSettings | None = None, *, seed: int = 0,
                progress: bool = True) -> CascadeFit:
    """Plan and train both stages on ``train_ids`` (see the module docstring); resumable in ``out_dir``.

    Parameters
    ----------
    manifest : esoct.io.manifest.Manifest
        Cohort (CT ``image_pre`` and label map ``mask_pre``).
    train_ids : sequence of str
        Training patients only.
    out_dir : str or Path
        ``stage1/``, ``crops/``, ``stage2/`` run folders.
    settings : CascadeSettings, optional
    seed : int
    progress : bool

    Returns
    -------
    CascadeFit
    """
    from esoct.io.manifest import load_manifest
    from esoct.train.device import seed_everything

    s = settings or CascadeSettings()
    out_dir = Path(out_dir)
    seed_everything(seed)
    t0 = time.perf_counter()
    stage1, plan1, res1 = fit_stage1(manifest, train_ids, out_dir, s, seed=seed, progress=progress)
    t1 = time.perf_counter()
    crop_path, failures = write_crops(manifest, train_ids, stage1, out_dir / "crops", s.margin(), progress=progress)
    crops = load_manifest(crop_path)
    plan2 = plan_stage2(crops, s, seed)
    t2 = time.perf_counter()
    stage2, res2 = fit_stage2(crops, crops.patients, plan2, out_dir / "stage2", s, seed=seed, progress=progress)
    t3 = time.perf_counter()
    cascade = CascadeSegmenter(stage1, stage2, s.margin(), s.min_node_mm3, context=s.context)
    return CascadeFit(cascade, {"stage1": plan1, "stage2": plan2}, crop_path, failures,
                      {"stage1_train": round(t1 - t0, 1), "crops": round(t2 - t1, 1), "stage2_train": round(t3 - t2, 1)},
                      {"stage1": res1.history, "stage2": res2.history})


def settings_dict(s: CascadeSettings) -> dict:
    """JSON-ready settings (tuples as lists, class-weight keys as strings)."""
    d = asdict(s)
    d["class_weights"] = {str(k): float(v) for k, v in (s.class_weights or {}).items()}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
