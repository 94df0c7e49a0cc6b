"""One fold of T-stage training: epochs with a progress bar and a log, a checkpoint per epoch, exact resume.

Files in ``out_dir`` (``models/tstage/<model>/fold-<k>/`` of a study):

* ``last.pt``   checkpoint after the last completed epoch (model, optimiser, scheduler, gradient
  scaler, random states, history): a stopped run continues from it and ends with the same weights
  and predictions as an uninterrupted one (same device and thread count)
* ``best.pt``   the selected model (see :mod:`esoct.tstage.presets`), loadable with :func:`load_model`
* ``train.log`` one line per epoch: learning rate, training loss, validation loss/accuracy/AUC
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from esoct.errors import InputError
from esoct.models.resolstm import build_model
from esoct.train.checkpoint import load_checkpoint, save_checkpoint
from esoct.train.device import pick_device, seed_everything, seeded_generator
from esoct.tstage.data import SequenceDataset, SequenceSet, pad_collate
from esoct.tstage.presets import Preset, lr_at_epoch


@dataclass
class FoldTraining:
    """Outcome of :func:`train_fold`.

    Attributes
    ----------
    model : torch.nn.Module or None
        The selected model in eval mode (None when the run was stopped before finishing).
    history : list of dict
        One dict per epoch: ``epoch`` (1-based), ``lr``, ``train_loss``, ``val_loss``,
        ``val_accuracy``, ``val_auc``, ``seconds``.
    best_epoch : int
        1-based epoch of the selected model.
    best_path : Path
    completed : bool
        All epochs done.
    """

    model: nn.Module | None
    history: list = field(default_factory=list)
    best_epoch: int = 0
    best_path: Path | None = None
    completed: bool = False


def make_model(kind: str, preset: Preset, num_classes: int, weights: str | Path | None = None) -> nn.Module:
    """``"resolstm"`` or ``"resnet"`` with the preset's width, LSTM and dropout settings."""
    return build_model(kind, num_classes=num_classes, in_channels=1, width=preset.width,
                       hidden_size=preset.hidden_size, num_layers=preset.num_layers, dropout=preset.dropout,
                       weights=weights)


def _autocast(device: torch.device, amp: bool):
    """float16 autocast on CUDA when ``amp``; a no-op context on CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=bool(amp and device.type == "cuda"))


def predict_proba(model: nn.Module, sequences: SequenceSet, *, batch_size: int = 8, device=None,
                  amp: bool = True) -> np.ndarray:
    """Class probabilities of every patient, ``(P, K)``, in ``sequences`` order (eval mode, no augmentation).

    Parameters
    ----------
    model : torch.nn.Module
        :class:`~esoct.models.resolstm.ResoLSTMDepth` or
        :class:`~esoct.models.resolstm.ResNetSliceClassifier`.
    sequences : SequenceSet
        ROIs at the size the model was trained on.
    batch_size : int
    device : str or torch.device, optional
        Default: the model's device.
    amp : bool
        float16 autocast on CUDA.

    Returns
    -------
    numpy.ndarray, (P, K) float64
    """
    device = next(model.parameters()).device if device is None else pick_device(str(device))
    model = model.to(device).eval()
    loader = DataLoader(SequenceDataset(sequences), batch_size=batch_size, shuffle=False, collate_fn=pad_collate)
    out = []
    with torch.no_grad(), _autocast(device, amp):
        for batch in loader:
            logits = model(batch["x"].to(device), batch["lengths"])
            out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    if not out:
        return np.zeros((0, 0))
    return np.concatenate(out).astype(np.float64)


def _val_metrics(proba: np.ndarray, y: np.ndarray) -> dict:
    """Loss (mean NLL), accuracy and AUC (binary: of class 1; multiclass: macro one-vs-rest) of a prediction."""
    from sklearn.metrics import roc_auc_score

    eps = 1e-12
    loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], eps, 1.0))))
    acc = float(np.mean(proba.argmax(axis=1) == y))
    try:
        if proba.shape[1] == 2:
            auc = float(roc_auc_score(y, proba[:, 1]))
        else:
            auc = float(roc_auc_score(y, proba, multi_class="ovr", labels=list(range(proba.shape[1]))))
    except ValueError:  # one class only in the validation set
        auc = float("nan")
    return {"val_loss": loss, "val_accuracy": acc, "val_auc": auc}


def _log(path: Path, message: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def _better(metrics: dict, best: dict | None) -> bool:
    """Higher validation accuracy wins; ties go to the lower validation loss."""
    if best is None:
        return True
    if metrics["val_accuracy"] != best["val_accuracy"]:
        return metrics["val_accuracy"] > best["val_accuracy"]
    return metrics["val_loss"] < best["val_loss"]


def train_fold(
    kind: str,
    train: SequenceSet,
    val: SequenceSet | None,
    preset: Preset,
    out_dir: str | Path,
    *,
    seed: int = 0,
    device: str | None = None,
    weights: str | Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    desc: str | None = None,
) -> FoldTraining:
    """Train one model on one fold, resuming from ``out_dir/last.pt`` when it exists.

    Each epoch: seeded shuffling and augmentation (random rotation and flips, the same for all
    slices of a patient), Adam on the cross-entropy (:meth:`loss` of the model), the preset's
    learning-rate schedule, float16 mixed precision on CUDA; then ``val`` is predicted, a line is
    logged, the selected model is written to ``best.pt`` when it improves and a checkpoint to
    ``last.pt``. An interrupted run started again with the same arguments continues after the last
    completed epoch and gives the same result as an uninterrupted run; a checkpoint written for
    other patients, model, seed or settings is refused (``InputError``), never resumed. Raising
    ``preset.epochs`` continues a finished run.

    Parameters
    ----------
    kind : {"resolstm", "resnet"}
    train : SequenceSet
        Training patients (every class present).
    val : SequenceSet or None
        Validation patients for model selection (``preset.selection`` "inner" or "test");
        None only with ``selection="last"``.
    preset : Preset
    out_dir : str or Path
        Fold folder (created).
    seed : int
        Seeds weights initialisation, shuffling, augmentation and dropout.
    device : str, optional
        ``"cpu"``, ``"cuda"``; default CUDA when available.
    weights : str or Path, optional
        Local ResNet-18 weights to start from.
    progress : bool
        Progress bar (epochs; postfix: training loss and validation metrics).
    stop_after : int, optional
        Stop after this many completed epochs (simulates an interruption; tests).
    desc : str, optional
        Progress bar label.

    Returns
    -------
    FoldTraining
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = sorted(set(range(len(train.class_names))) - set(np.unique(train.labels).tolist()))
    if missing:
        names = [train.class_names[i] for i in missing]
        raise InputError(f"training set has no patient of class {', '.join(names)}; cannot train this fold", out_dir)
    if val is None and preset.selection != "last":
        raise InputError(f"selection {preset.selection!r} needs validation patients")
    seed_everything(seed)
    dev = pick_device(device)
    amp = bool(preset.amp and dev.type == "cuda")
    model = make_model(kind, preset, len(train.class_names), weights).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_at_epoch(preset, e) / preset.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    gen = seeded_generator(seed)
    last, best_path, log_path = out_dir / "last.pt", out_dir / "best.pt", out_dir / "train.log"
    start, history, best = 0, [], None
    fingerprint = _fingerprint(kind, train, val, preset, seed)
    if last.exists():
        # CPU: the random states must be CPU tensors; model and optimiser states are copied to ``dev``.
        info = load_checkpoint(last, model, opt, sched, generators={"shuffle": gen}, map_location="cpu")
        saved = info["extra"].get("fingerprint")
        if saved is not None and saved != fingerprint:
            raise InputError("checkpoint belongs to another run (other patients, model, seed or preset settings); "
                             "delete the fold folder to train again", last)
        start, history, best = info["epoch"], info["extra"].get("history", []), info["extra"].get("best")
        if info["extra"].get("scaler"):
            scaler.load_state_dict(info["extra"]["scaler"])
        _log(log_path, f"resumed after epoch {start}")
    else:
        _log(log_path, f"start {kind} on {dev} (amp={amp}), {len(train)} training / "
                       f"{0 if val is None else len(val)} validation patients, preset {preset.to_dict()}, seed {seed}")
    dataset = SequenceDataset(train, augment=True, rotate_deg=preset.rotate_deg, flip=preset.flip, seed=seed)
    loader = DataLoader(dataset, batch_size=preset.batch_size, shuffle=True, generator=gen, collate_fn=pad_collate,
                        num_workers=0)
    bar = tqdm(total=preset.epochs, initial=start, desc=desc or kind, unit="epoch", disable=not progress, leave=False)
    epoch = start
    for epoch in range(start, preset.epochs):
        if stop_after is not None and epoch >= stop_after:
            bar.close()
            return FoldTraining(None, history, best["epoch"] if best else 0, best_path, False)
        t0 = time.perf_counter()
        dataset.set_epoch(epoch)
        model.train()
        losses, weights_n = [], []
        for batch in tqdm(loader, desc=f"epoch {epoch + 1}/{preset.epochs}", unit="batch", leave=False,
                          disable=not progress):
            opt.zero_grad(set_to_none=True)
            with _autocast(dev, amp):
                loss = model.loss(batch["x"].to(dev), batch["lengths"], batch["y"].to(dev))
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.detach()))
            weights_n.append(len(batch["y"]))
        lr = opt.param_groups[0]["lr"]
        sched.step()
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": float(np.average(losses, weights=weights_n))}
        if val is not None and len(val):
            row.update(_val_metrics(predict_proba(model, val, batch_size=preset.batch_size, amp=amp), val.labels))
        else:
            row.update({"val_loss": float("nan"), "val_accuracy": float("nan"), "val_auc": float("nan")})
        row["seconds"] = round(time.perf_counter() - t0, 3)
        history.append(row)
        if preset.selection == "last" or _better(row, best):
            best = {k: row[k] for k in ("epoch", "val_loss", "val_accuracy")}
            _save_model(best_path, model, train.class_names, preset, row)
        save_checkpoint(last, model, opt, sched, epoch + 1, generators={"shuffle": gen},
                        extra={"history": history, "best": best, "scaler": scaler.state_dict() if amp else None,
                               "fingerprint": fingerprint})
        _log(log_path, f"epoch {epoch + 1}/{preset.epochs} lr {lr:.3g} train_loss {row['train_loss']:.4f} "
                       f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.3f} val_auc {row['val_auc']:.3f} "
                       f"({row['seconds']:.1f} s){' *' if best['epoch'] == epoch + 1 else ''}")
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_accuracy']:.3f}",
                        val_auc=f"{row['val_auc']:.3f}")
        bar.update()
    bar.close()
    if best is None or not best_path.exists():
        raise InputError("no completed epoch and no selected model in this fold folder", out_dir)
    if start < preset.epochs:
        _log(log_path, f"done: selected epoch {best['epoch']} (val_acc {best['val_accuracy']:.3f})")
    model = load_model(best_path, device=dev)
    return FoldTraining(model, history, int(best["epoch"]), best_path, True)


def _fingerprint(kind: str, train: SequenceSet, val: SequenceSet | None, preset: Preset, seed: int) -> str:
    """Hash of what determines a run except the number of epochs (which may be raised to train on)."""
    import hashlib
    import json

    settings = {k: v for k, v in preset.to_dict().items() if k not in ("epochs", "name")}
    doc = {"kind": kind, "seed": int(seed), "preset": settings, "train": list(train.patient_ids),
           "val": [] if val is None else list(val.patient_ids)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_model(path: Path, model: nn.Module, class_names, preset: Preset, row: dict) -> None:
    import os

    tmp = path.with_name(path.name + ".tmp")
    torch.save({"config": dict(model.config), "state_dict": model.state_dict(), "class_names": list(class_names),
                "preset": preset.to_dict(), "epoch": int(row["epoch"]),
                "val": {k: row[k] for k in ("val_loss", "val_accuracy", "val_auc")}}, tmp)
    os.replace(tmp, path)


def load_model(path: str | Path, device: str | torch.device | None = "cpu") -> nn.Module:
    """A trained T-stage model from its ``best.pt``, in eval mode.

    The returned module has ``config`` (constructor settings), ``class_names`` and ``preset``
    (whose ``image_size`` the inputs must have).

    Raises
    ------
    InputError
        Missing, corrupt or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("trained model file not found", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        config = dict(state["config"])
        kind = config.pop("kind")
        model = build_model(kind, **config)
        model.load_state_dict(state["state_dict"])
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        raise InputError(f"corrupt or incompatible model file ({type(exc).__name__}: {str(exc)[:200]})", path) from exc
    model.class_names = tuple(state.get("class_names", ()))
    model.preset = state.get("preset", {})
    model.selected_epoch = int(state.get("epoch", 0))
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return model.to(dev).eval()
