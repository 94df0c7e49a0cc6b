"""Training, prediction and five-fold patient-level cross-validation of the nn-TransEC T-stage classifier.

* :class:`KrtDataset` -- normalised crops ``(N, Z, Y, X)`` with their T stages, and optionally
  the frozen segmentation encoder's features of every crop, computed once (the encoder never
  changes, so caching them saves one encoder pass per step).
* :func:`fit_classifier` -- Adam on the focal loss (gamma 2) with class weights alpha_2 from the
  plan or the inverse class frequency of the training patients; one atomic checkpoint per
  epoch (:mod:`esoct.train.checkpoint`), and a rerun resumes from it; CUDA and mixed precision
  when a GPU is present.
* :func:`t_stage_metrics` -- the paper's Table 8: one-vs-rest AUC with its DeLong CI per stage
  and the macro average (bootstrap CI), precision, recall, specificity, NPV and F1 per stage
  for the argmax prediction, and the confusion matrix.
* :func:`cross_validate` -- five folds stratified by T stage (:mod:`esoct.train.folds`); writes
  ``folds.json``, ``fold-<k>/{checkpoint.pt,predictions.csv,metrics.json}``, the pooled
  ``predictions.csv`` (every patient once), ``metrics.json``, ``table8.csv``, ``confusion.csv``
  and ``figures/confusion.png``. Completed folds are reused on a rerun.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from esoct.errors import InputError
from esoct.models.multitask import T_STAGES
from esoct.segment.plan import class_loss_weights
from esoct.train.checkpoint import load_checkpoint, save_checkpoint
from esoct.train.device import pick_device, seed_everything, seeded_generator
from esoct.train.folds import fold_split, load_or_make_folds
from esoct.train.losses import focal_loss

# ---------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Settings of one classifier training (recorded in every ``metrics.json``).

    Parameters
    ----------
    epochs : int
        Passes over the training patients (the paper: 1000).
    batch_size : int
        Crops per step (the paper: 12).
    lr : float
        Adam learning rate.
    weight_decay : float
        Adam L2 penalty.
    focal_gamma : float
        gamma_2 of the focal loss (2, Lin et al. 2017).
    class_weights : dict, optional
        alpha_2 per T stage (``Plan.class_loss_weights``); ``None``: inverse class frequency of
        the training patients (:func:`esoct.segment.plan.class_loss_weights`, rule
        ``"inverse_frequency"``), computed inside each training fold.
    augment : bool
        Random mirroring along y and x (then the segmentation features are recomputed per step).
    seed : int
        Seed of initialisation, shuffling and augmentation.
    device : str, optional
        ``None``/``"auto"``: CUDA when present, else CPU.
    amp : bool
        Mixed precision (float16 autocast + gradient scaling) on CUDA; ignored on CPU.
    cache_mb : float
        Largest size of the cached segmentation features; above it they are computed per step.
    """

    epochs: int = 100
    batch_size: int = 12
    lr: float = 3e-4
    weight_decay: float = 1e-5
    focal_gamma: float = 2.0
    class_weights: dict | None = None
    augment: bool = False
    seed: int = 0
    device: str | None = None
    amp: bool = True
    cache_mb: float = 2048.0


#: Named settings: ``paper`` as nn-TransEC (1000 epochs, batch 12, Adam; the paper gives no classification
#: learning rate, 3e-4 is ours); ``fast`` for a CPU and the phantom.
PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(epochs=1000, batch_size=12, lr=3e-4, augment=True),
    "fast": TrainConfig(epochs=25, batch_size=8, lr=1e-3, augment=False),
}


def preset(name: str, **overrides) -> TrainConfig:
    """A copy of the named :data:`PRESETS` entry with ``overrides`` applied."""
    if name not in PRESETS:
        raise InputError(f"unknown training preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def stage_codes(labels: Sequence, patient_ids: Sequence[str] | None = None) -> np.ndarray:
    """T stages (``"T1"``..``"T4"``, or 1..4) as class codes 0..3.

    Raises
    ------
    InputError
        A label that is not a T stage, naming the patient.
    """
    out = np.empty(len(labels), dtype=np.int64)
    for i, v in enumerate(labels):
        s = str(v).strip().upper()
        s = s if s.startswith("T") else f"T{s}"
        if s not in T_STAGES:
            who = None if patient_ids is None else str(patient_ids[i])
            raise InputError(f"T stage {v!r} is not one of {T_STAGES}", None, who)
        out[i] = T_STAGES.index(s)
    return out


def alpha_weights(codes: np.ndarray, class_weights: dict | None = None) -> np.ndarray:
    """alpha_2 per class (length 4): the given weights, or inverse frequency of ``codes``."""
    if class_weights is not None:
        unknown = set(class_weights) - set(T_STAGES)
        if unknown:
            raise InputError(f"class_weights has unknown stages {sorted(unknown)}; expected {T_STAGES}")
        return np.array([float(class_weights.get(t, 0.0)) for t in T_STAGES])
    counts = {t: int(np.sum(codes == k)) for k, t in enumerate(T_STAGES)}
    w = class_loss_weights(counts, "inverse_frequency")
    return np.array([w[t] for t in T_STAGES])


# ---------------------------------------------------------------- data


class KrtDataset(torch.utils.data.Dataset):
    """Normalised classifier inputs (KRT crops or downsampled whole volumes) with their T stages.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, Z, Y, X)`` float32, already normalised (:func:`esoct.classify.krt.normalize_ct`).
    labels : sequence
        T stage of each input (``"T1"``..``"T4"``).
    patient_ids : sequence of str
        One per input.
    seg_features : list of torch.Tensor, optional
        Cached segmentation features, one ``(N, C_d, z_d, y_d, x_d)`` tensor per depth
        (:meth:`with_seg_features`).

    Items are dicts with ``image`` ``(1, Z, Y, X)``, ``label`` (code 0..3), ``index`` and, when
    cached, ``seg_features`` (list per depth).
    """

    def __init__(self, images, labels, patient_ids, seg_features: list | None = None):
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise InputError(f"images must have shape (N, Z, Y, X), got {images.shape}")
        if not (len(images) == len(labels) == len(patient_ids)):
            raise InputError(f"{len(images)} images, {len(labels)} labels and {len(patient_ids)} patient ids")
        bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
        if bad.any():
            raise InputError("input holds NaN or infinite values", None, str(np.asarray(patient_ids)[bad][0]))
        self.images = torch.from_numpy(images)
        self.patient_ids = [str(p) for p in patient_ids]
        self.codes = torch.from_numpy(stage_codes(labels, self.patient_ids))
        self.seg_features = seg_features

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        item = {"image": self.images[i][None], "label": self.codes[i], "index": i}
        if self.seg_features is not None:
            item["seg_features"] = [f[i] for f in self.seg_features]
        return item

    def subset(self, indices) -> "KrtDataset":
        """The inputs at ``indices`` (cached features follow)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        feats = None if self.seg_features is None else [f[idx] for f in self.seg_features]
        ds = KrtDataset.__new__(KrtDataset)
        ds.images, ds.codes, ds.seg_features = self.images[idx], self.codes[idx], feats
        ds.patient_ids = [self.patient_ids[int(i)] for i in idx]
        return ds

    def with_seg_features(self, seg_encoder: nn.Module, batch_size: int = 8, device=None) -> "KrtDataset":
        """A copy that carries the frozen segmentation encoder's features of every input."""
        device = pick_device(device)
        seg_encoder = seg_encoder.to(device).eval()
        chunks = []
        with torch.no_grad():
            for s in range(0, len(self), batch_size):
                x = self.images[s : s + batch_size, None].to(device)
                chunks.append([f.detach().float().cpu() for f in seg_encoder(x)])
        feats = [torch.cat([c[d] for c in chunks]) for d in range(len(chunks[0]))]
        ds = self.subset(np.arange(len(self)))
        ds.seg_features = feats
        return ds


def _feature_bytes(model: nn.Module, dataset: KrtDataset) -> float:
    """Bytes the cached segmentation features of ``dataset`` would take (float32)."""
    if getattr(model, "seg_encoder", None) is None or len(dataset) == 0:
        return 0.0
    param = next(model.seg_encoder.parameters())
    with torch.no_grad():
        feats = model.seg_encoder(dataset.images[:1, None].to(param.device, param.dtype))
    return float(sum(f.numel() for f in feats) * 4 * len(dataset))


def _batch_features(batch: dict, device) -> list | None:
    feats = batch.get("seg_features")
    return None if feats is None else [f.to(device, non_blocking=True) for f in feats]


def _mirror(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each crop along y and/or x with probability 1/2 each (seeded)."""
    flips = torch.rand(x.shape[0], 2, generator=gen) < 0.5
    out = x.clone()
    for i in range(x.shape[0]):
        dims = [d for d, f in zip((-2, -1), flips[i].tolist()) if f]
        if dims:
            out[i] = torch.flip(x[i], dims)
    return out


# ---------------------------------------------------------------- training


@dataclass
class FitResult:
    """What :func:`fit_classifier` did: loss per epoch, epochs resumed, wall time (s), device."""

    history: list[float] = field(default_factory=list)
    resumed_from: int = 0
    seconds: float = 0.0
    device: str = "cpu"


def fit_classifier(
    model: nn.Module,
    train: KrtDataset,
    config: TrainConfig,
    checkpoint: str | Path | None = None,
    progress: bool = False,
) -> FitResult:
    """Train the classifier with Adam on the focal loss; checkpoint every epoch and resume.

    Parameters
    ----------
    model : torch.nn.Module
        E.g. :class:`esoct.models.multitask.MultitaskClassifier`; trained in place. Only
        parameters with ``requires_grad`` are optimised (the segmentation encoder is frozen).
    train : KrtDataset
        Training inputs. Segmentation features are cached on it when the model has gates, there
        is no augmentation and they fit in ``config.cache_mb``.
    config : TrainConfig
        Settings.
    checkpoint : str or Path, optional
        Checkpoint file, written atomically after every epoch; when it exists the training
        resumes after its last epoch (same model, optimiser and random states, so the result is
        that of an uninterrupted run).
    progress : bool
        Show a progress bar over epochs.

    Returns
    -------
    FitResult
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    seed_everything(config.seed)
    device = pick_device(config.device)
    use_amp = bool(config.amp and device.type == "cuda")
    model.to(device)
    codes = train.codes.numpy()
    alpha = torch.as_tensor(alpha_weights(codes, config.class_weights), dtype=torch.float32, device=device)
    if getattr(model, "use_gates", False) and train.seg_features is None and not config.augment:
        if _feature_bytes(model, train) <= config.cache_mb * 2**20:
            train = train.with_seg_features(model.seg_encoder, device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    shuffle, aug = seeded_generator(config.seed), seeded_generator(config.seed + 1)
    loader = torch.utils.data.DataLoader(train, batch_size=config.batch_size, shuffle=True, generator=shuffle)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    result = FitResult(device=str(device))
    if checkpoint is not None and Path(checkpoint).is_file():
        info = load_checkpoint(checkpoint, model, optimizer, generators={"shuffle": shuffle, "augment": aug},
                               map_location=device)
        result.resumed_from = info["epoch"]
        result.history = list(info["extra"].get("history", []))
    epochs = range(result.resumed_from, config.epochs)
    for _epoch in tqdm(epochs, disable=not progress, desc="epochs", leave=False):
        model.train()
        total, n = 0.0, 0
        for batch in loader:
            x = batch["image"].to(device, non_blocking=True)
            y = batch["label"].to(device, non_blocking=True)
            feats = _batch_features(batch, device)
            if config.augment:
                x = _mirror(x.cpu(), aug).to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                logits = model(x, feats)
            loss = focal_loss(logits, y, alpha, config.focal_gamma)  # nn-TransEC eq. (4)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach()) * len(y)
            n += len(y)
        result.history.append(total / max(n, 1))
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, epoch=_epoch + 1, extra={"history": result.history},
                            generators={"shuffle": shuffle, "augment": aug})
    result.seconds = time.perf_counter() - t0
    return result


def predict_proba(model: nn.Module, dataset: KrtDataset, batch_size: int = 8, device=None) -> np.ndarray:
    """Stage probabilities (softmax), shape ``(N, 4)``, columns T1..T4."""
    device = pick_device(device)
    use_amp = device.type == "cuda"
    model.to(device).eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(dataset), batch_size):
            x = dataset.images[s : s + batch_size, None].to(device)
            feats = None
            if dataset.seg_features is not None:
                feats = [f[s : s + batch_size].to(device) for f in dataset.seg_features]
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                logits = model(x, feats)
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(T_STAGES)))


# ---------------------------------------------------------------- metrics


@dataclass
class TStageMetrics:
    """The paper's Table 8 for one set of predictions.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per stage and an ``average`` row (macro); columns ``auc``, ``auc_low``,
        ``auc_high`` (DeLong per stage, stratified bootstrap for the macro average),
        ``precision``, ``recall``, ``specificity``, ``npv``, ``f1`` (one-vs-rest, for the argmax
        prediction; NaN when undefined, e.g. precision of a stage never predicted) and ``n``.
    confusion : pandas.DataFrame
        Rows true stage, columns predicted stage.
    accuracy : float
        Fraction of patients whose argmax stage is right.
    """

    table: pd.DataFrame
    confusion: pd.DataFrame
    accuracy: float

    def as_dict(self) -> dict:
        """Plain values for ``metrics.json``."""
        rows = self.table.replace({np.nan: None}).to_dict(orient="index")
        return {"table8": rows, "accuracy": self.accuracy, "confusion": self.confusion.values.tolist(),
                "classes": list(self.confusion.index)}


def t_stage_metrics(y_true, proba, classes=T_STAGES, alpha: float = 0.05, n_resamples: int = 1000,
                    seed: int = 0) -> TStageMetrics:
    """Per-stage one-vs-rest AUC (CI), precision, recall, specificity, NPV and F1, and their average.

    The predicted stage is the argmax of ``proba``. For stage ``c`` a patient is positive when
    their true stage is ``c``; recall = TP/(TP+FN), specificity = TN/(TN+FP), precision =
    TP/(TP+FP), NPV = TN/(TN+FN), F1 = 2TP/(2TP+FP+FN). The ``average`` row is the unweighted
    mean over stages (NaN-aware) and the macro AUC with its bootstrap CI
    (:func:`esoct.evaluate.roc.ovr_auc`).

    Parameters
    ----------
    y_true : array-like, shape (n,)
        True stages (``"T1"``..``"T4"`` or codes 0..3).
    proba : array-like, shape (n, k)
        Stage probabilities, columns in the order of ``classes``.
    classes : sequence of str
        Stage names.
    alpha : float
        1 - confidence level.
    n_resamples, seed : int
        Bootstrap of the macro AUC.

    Returns
    -------
    TStageMetrics

    References
    ----------
    .. [1] Li, C., Wang, R., He, P., Chen, W., Wu, W., Wu, Y. "Segmentation prompts classification:
           a nnUNet-based 3D transfer learning framework with ROI tokenization and cross-task
           attention for esophageal cancer T-stage diagnosis" (nn-TransEC), Expert Systems with
           Applications, Table 8.
    """
    from esoct.evaluate.roc import ovr_auc
    from esoct.evaluate.threshold import confusion

    y = np.asarray(y_true)
    codes = y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else stage_codes(y)
    p = np.asarray(proba, dtype=float)
    k = len(classes)
    pred = p.argmax(axis=1)
    rows = {}
    present = [c for c in range(k) if np.any(codes == c) and np.any(codes != c)]
    auc = None
    if len(present) == k:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            auc = ovr_auc(codes, p, classes=list(range(k)), alpha=alpha, n_resamples=n_resamples, seed=seed)
    for c, name in enumerate(classes):
        t, q = codes == c, pred == c
        tp, fp, fn, tn = int(np.sum(t & q)), int(np.sum(~t & q)), int(np.sum(t & ~q)), int(np.sum(~t & ~q))
        ci = None if auc is None else auc.per_class[c]
        rows[name] = {
            "auc": np.nan if ci is None else ci.estimate,
            "auc_low": np.nan if ci is None else ci.low,
            "auc_high": np.nan if ci is None else ci.high,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "npv": _ratio(tn, tn + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "n": int(t.sum()),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    avg = table.drop(columns="n").mean(axis=0, skipna=True)
    if auc is not None:
        avg["auc"], avg["auc_low"], avg["auc_high"] = auc.macro.estimate, auc.macro.low, auc.macro.high
    avg["n"] = int(len(codes))
    table.loc["average"] = avg
    table["n"] = table["n"].astype(int)
    table.index.name = "stage"
    cm = confusion([classes[c] for c in codes], [classes[c] for c in pred], labels=list(classes))
    return TStageMetrics(table, cm, float(np.mean(pred == codes)) if len(codes) else float("nan"))


def _ratio(a: int, b: int) -> float:
    return a / b if b > 0 else float("nan")


def auc_text(row, digits: int = 3) -> str:
    """``"AUC (low - high)"`` of a table row with ``auc``, ``auc_low``, ``auc_high`` ("n/a" when undefined)."""
    if math.isnan(row["auc"]):
        return "n/a"
    return f"{row['auc']:.{digits}f} ({row['auc_low']:.{digits}f} - {row['auc_high']:.{digits}f})"


def format_table8(table: pd.DataFrame, digits: int = 3) -> str:
    """Table 8 as text: ``AUC (low - high)`` then the other metrics, one line per stage."""
    lines = [f"{'stage':<8}{'AUC (95% CI)':<24}{'precision':>10}{'recall':>8}{'spec.':>8}{'NPV':>8}{'F1':>8}"]
    for name, r in table.iterrows():
        auc = auc_text(r, digits)
        vals = "".join(f"{r[c]:>{w}.{digits}f}" for c, w in (("precision", 10), ("recall", 8), ("specificity", 8),
                                                           ("npv", 8), ("f1", 8)))
        lines.append(f"{name:<8}{auc:<24}{vals}")
    return "\n".join(lines)


# ---------------------------------------------------------------- cross-validation


@dataclass
class CVResult:
    """Outcome of :func:`cross_validate`.

    Attributes
    ----------
    predictions : pandas.DataFrame
        One row per patient: ``patient_id``, ``fold``, ``pT``, ``predicted``, ``p_T1``..``p_T4``.
    metrics : TStageMetrics
        Table 8 on the pooled out-of-fold predictions.
    fold_metrics : list of dict
        Per fold: ``fold``, ``n_train``, ``n_test``, ``accuracy``, ``macro_auc`` (NaN when a
        stage is missing from the test fold), ``seconds``, ``final_loss``, ``resumed_from``.
    out_dir : Path
    """

    predictions: pd.DataFrame
    metrics: TStageMetrics
    fold_metrics: list
    out_dir: Path


ModelFactory = Callable[[int, list], nn.Module]

_FOLD_KEYS = ("fold", "n_train", "n_test", "accuracy", "macro_auc", "seconds", "final_loss", "resumed_from", "device",
              "loss_history")


def cross_validate(
    dataset: KrtDataset,
    model_fn: ModelFactory,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    n_splits: int = 5,
    seed: int = 0,
    progress: bool = False,
    figures: bool = True,
    title: str | None = None,
) -> CVResult:
    """Five-fold patient-level cross-validation of the T-stage classifier, stratified by T stage.

    For fold ``k`` a fresh model ``model_fn(k, train_patient_ids)`` is trained on the other
    folds' patients (:func:`fit_classifier`, checkpoint ``fold-<k>/checkpoint.pt``) and predicts
    its test patients. Folds are saved in ``folds.json`` and reused; a fold whose
    ``predictions.csv`` exists is not retrained. A fold that fails is recorded with its reason in
    ``fold-<k>/error.txt`` and the other folds go on.

    Parameters
    ----------
    dataset : KrtDataset
        All patients (one input each).
    model_fn : callable
        ``model_fn(fold, train_ids) -> nn.Module``; build per fold whatever must not see the
        test patients (e.g. a segmentation encoder trained on ``train_ids``).
    out_dir : str or Path
        Results folder (see the module docstring for its files).
    config : TrainConfig
        Training settings.
    n_splits : int
        Folds.
    seed : int
        Seed of the fold assignment.
    progress : bool
        Progress bars.
    figures : bool
        Write ``figures/confusion.png``.
    title : str, optional
        Name of the model in the figure title.

    Returns
    -------
    CVResult
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = [T_STAGES[int(c)] for c in dataset.codes]
    folds = load_or_make_folds(out / "folds.json", dataset.patient_ids, labels, n_splits=n_splits, seed=seed)
    index = {p: i for i, p in enumerate(dataset.patient_ids)}
    parts, fold_rows, errors = [], [], {}
    for k in range(n_splits):
        fdir = out / f"fold-{k}"
        pred_path = fdir / "predictions.csv"
        if pred_path.is_file():
            parts.append(pd.read_csv(pred_path, dtype={"patient_id": str}))
            saved = json.loads((fdir / "metrics.json").read_text())
            fold_rows.append({k: saved.get(k) for k in _FOLD_KEYS})
            continue
        train_ids, test_ids = fold_split(folds, k)
        try:
            fold_rows.append(_run_fold(k, dataset, index, train_ids, test_ids, model_fn, fdir, config, progress))
            parts.append(pd.read_csv(pred_path, dtype={"patient_id": str}))
        except Exception as exc:  # a failed fold is recorded; the others go on
            fdir.mkdir(parents=True, exist_ok=True)
            (fdir / "error.txt").write_text(f"{type(exc).__name__}: {exc}\n")
            errors[k] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"fold {k} failed ({errors[k]}); the other folds go on", RuntimeWarning, stacklevel=2)
    if not parts:
        raise InputError(f"every fold failed: {errors}", out)
    predictions = pd.concat(parts, ignore_index=True).sort_values(["fold", "patient_id"]).reset_index(drop=True)
    predictions.to_csv(out / "predictions.csv", index=False)
    proba = predictions[[f"p_{t}" for t in T_STAGES]].to_numpy()
    metrics = t_stage_metrics(predictions["pT"].to_numpy(), proba, seed=seed)
    metrics.table.to_csv(out / "table8.csv")
    metrics.confusion.to_csv(out / "confusion.csv")
    doc = {"config": asdict(config), "n_splits": n_splits, "fold_seed": seed, "n_patients": int(len(predictions)),
           "failed_folds": errors, "folds": fold_rows, **metrics.as_dict()}
    (out / "metrics.json").write_text(json.dumps(_plain(doc), indent=1))
    if figures:
        from esoct.report.figures import plot_confusion

        name = f"{title}: " if title else ""
        plot_confusion(metrics.confusion.values, list(T_STAGES), path=out / "figures" / "confusion.png",
                       title=f"{name}T stage, out-of-fold ({n_splits}-fold CV)")
    return CVResult(predictions, metrics, fold_rows, out)


def _run_fold(k, dataset, index, train_ids, test_ids, model_fn, fdir, config, progress) -> dict:
    train = dataset.subset([index[p] for p in train_ids])
    test = dataset.subset([index[p] for p in test_ids])
    model = model_fn(k, list(train_ids))
    fit = fit_classifier(model, train, replace(config, seed=config.seed + k), checkpoint=fdir / "checkpoint.pt",
                         progress=progress)
    proba = predict_proba(model, test, batch_size=config.batch_size, device=config.device)
    codes = test.codes.numpy()
    frame = pd.DataFrame({"patient_id": test.patient_ids, "fold": k, "pT": [T_STAGES[c] for c in codes],
                          "predicted": [T_STAGES[c] for c in proba.argmax(axis=1)]})
    for j, t in enumerate(T_STAGES):
        frame[f"p_{t}"] = proba[:, j]
    fdir.mkdir(parents=True, exist_ok=True)
    m = t_stage_metrics(codes, proba, n_resamples=200, seed=k)
    row = {"fold": k, "n_train": len(train_ids), "n_test": len(test_ids), "accuracy": m.accuracy,
           "macro_auc": float(m.table.loc["average", "auc"]), "seconds": round(fit.seconds, 2),
           "final_loss": fit.history[-1] if fit.history else None, "resumed_from": fit.resumed_from,
           "device": fit.device, "loss_history": fit.history}
    (fdir / "metrics.json").write_text(json.dumps(_plain({**row, **m.as_dict()}), indent=1))
    frame.to_csv(fdir / "predictions.csv", index=False)  # written last: marks the fold complete
    return _plain(row)


def _plain(value):
    """JSON-safe copy: NaN -> None, NumPy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
