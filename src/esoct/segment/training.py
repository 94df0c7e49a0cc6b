"""Train the segmentation network: Adam, cosine decay, deep-supervised focal loss, per-epoch checkpoints, exact resume.

:func:`train_segmentation` trains one :class:`esoct.models.unet3d.UNet3D` on a
:class:`esoct.segment.data.PatchDataset` for ``epochs x iterations_per_epoch`` steps:

* Adam (Kingma & Ba), learning rate 1e-3 decayed by a cosine schedule to 0 over the epochs
  (nn-TransEC Sec. 4.1.4), stepped once per epoch;
* loss: :class:`esoct.train.losses.DeepSupervisionLoss` over the network's four outputs of the
  focal loss (alpha 0.25, gamma 2), plus a soft Dice loss when ``dice_weight > 0``;
* gradient-norm clipping at 12 (nnU-Net); float16 autocast + gradient scaling on CUDA;
* after every epoch an atomic checkpoint ``checkpoint.pt`` (weights, optimiser, scheduler,
  scaler, random states, history and what inference needs), ``history.json`` and a line in
  ``train.log``. Calling again with the same folder resumes after the last complete epoch and
  ends with the same weights as an uninterrupted run (patches depend only on seed, epoch, index).
* under ``torchrun`` (a process group initialised, e.g. by
  :func:`esoct.train.distributed.init_distributed`, with several processes) the network is
  wrapped in DistributedDataParallel: each rank draws its own patches (sampling seed
  ``dataset.seed + rank``), gradients are averaged, and only rank 0 writes the checkpoint,
  ``history.json`` and ``train.log`` and shows progress. See ``docs/scale_out.md``.

:mod:`esoct.segment.cascade_training` builds the two-stage cascade (nn-TransEC Fig. 5) from it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from esoct.errors import InputError
from esoct.progress import progress_bar
from esoct.segment.data import PatchDataset, Preprocessing
from esoct.segment.inference import Segmenter

CHECKPOINT = "checkpoint.pt"
# settings that may change between a run and its resumption (they do not change the result on CPU)
_RESUME_FREE = ("device", "num_workers", "amp")


@dataclass
class TrainingConfig:
    """Optimisation settings of one segmentation training run.

    Parameters
    ----------
    epochs : int
        Epochs (100 in the paper).
    iterations_per_epoch : int
        Optimiser steps per epoch (nnU-Net: 250).
    batch_size : int
        Patches per step (2 in the paper).
    learning_rate : float
        Initial Adam learning rate (1e-3), decayed with a cosine to 0 at the last epoch.
    weight_decay : float
        Adam weight decay (nnU-Net's 3e-5).
    focal_alpha, focal_gamma : float
        Focal loss (0.25, 2).
    dice_weight : float
        Weight of the optional soft Dice loss (0: off, as the paper).
    ds_weights : list of float, optional
        Deep-supervision weights, full resolution first (default: halving, normalised).
    grad_clip : float
        Gradient-norm clip.
    seed : int
        Seeds torch/NumPy/Python and the patch sampling.
    device : str, optional
        ``"cuda"``, ``"cpu"``...; default CUDA when available.
    amp : bool
        Mixed precision on CUDA.
    num_workers : int
        DataLoader worker processes (0: load in the main process).
    """

    epochs: int = 100
    iterations_per_epoch: int = 250
    batch_size: int = 2
    learning_rate: float = 1e-3
    weight_decay: float = 3e-5
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    dice_weight: float = 0.0
    ds_weights: list | None = None
    grad_clip: float = 12.0
    seed: int = 0
    device: str | None = None
    amp: bool = True
    num_workers: int = 0

    def __post_init__(self):
        for name in ("epochs", "iterations_per_epoch", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class TrainingResult:
    """What :func:`train_segmentation` returns.

    Attributes
    ----------
    segmenter : Segmenter
        The trained network (eval mode) with its preprocessing and patch size.
    history : list of dict
        One entry per epoch: ``epoch`` (1-based), ``loss`` (mean training loss), ``lr``, ``seconds``.
    checkpoint : Path
        The last checkpoint (load it with :func:`esoct.segment.inference.load_segmenter`).
    resumed_from : int
        Epochs already complete when this call started (0 for a fresh run).
    """

    segmenter: Segmenter
    history: list = field(default_factory=list)
    checkpoint: Path | None = None
    resumed_from: int = 0


def model_from_plan(plan, in_channels: int = 1, n_classes: int = 6, residual: bool = True, deep_supervision: int = 4):
    """A :class:`~esoct.models.unet3d.UNet3D` with a plan's stages, strides, kernels and features."""
    from esoct.models.unet3d import UNet3D

    n_stages = len(plan.features_per_stage)
    return UNet3D(
        in_channels, n_classes, channels=plan.features_per_stage, strides=plan.strides, kernel_sizes=plan.kernel_sizes,
        residual=residual, deep_supervision=min(deep_supervision, n_stages - 1),
    )


def _file_logger(path: Path) -> tuple[logging.Logger, logging.Handler]:
    log = logging.getLogger(f"esoct.segment.training.{path}")
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    return log, handler


def _check_resume(saved: dict, segmenter: dict, config: TrainingConfig, path: Path) -> None:
    """Refuse to resume a checkpoint made with another network, preprocessing or training setting."""
    old = saved.get("segmenter", {})
    for key in ("model_config", "preprocessing", "patch_size", "n_classes"):
        if old.get(key) != segmenter.get(key):
            raise InputError(
                f"checkpoint was made with another {key} ({old.get(key)} vs {segmenter.get(key)} now); "
                "use a new output folder or the same settings",
                path,
            )
    now = asdict(config)
    for key, value in saved.get("training", {}).items():
        if key not in _RESUME_FREE and now.get(key) != value:
            raise InputError(f"checkpoint was made with {key}={value!r}, now {now.get(key)!r}; cannot resume", path)


def train_segmentation(
    model: torch.nn.Module,
    dataset: PatchDataset,
    out_dir: str | Path,
    config: TrainingConfig | None = None,
    *,
    preprocessing: Preprocessing,
    resume: bool = True,
    progress: bool = True,
    on_epoch_end: Callable[[int, list], None] | None = None,
    desc: str = "training",
) -> TrainingResult:
    """Train a segmentation network, checkpointing every epoch; resume from ``out_dir`` when possible.

    Parameters
    ----------
    model : UNet3D
        The network (its ``config`` is stored so inference can rebuild it).
    dataset : PatchDataset
        Training patches; ``iterations_per_epoch * batch_size`` are drawn per epoch.
    out_dir : str or Path
        Run folder: ``checkpoint.pt``, ``history.json``, ``train.log``.
    config : TrainingConfig, optional
        Optimisation settings (defaults: the paper's).
    preprocessing : Preprocessing
        The spacing and normalisation the dataset's cases were made with (stored for inference).
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` when it exists (else it is overwritten). Under
        DDP every rank loads the same checkpoint; ``out_dir`` must be on a file system all
        ranks see.
    progress : bool
        A progress bar over every step of the run with its ETA, the epoch and the running loss
        (rank 0 only under DDP; nested under an open bar, :mod:`esoct.progress`).
    desc : str
        Label of the progress bar (e.g. ``"stage 1"``).
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, history)`` after each epoch's checkpoint (validation, early stop
        by raising...). Called on every rank under DDP (raise on all ranks or none).

    Returns
    -------
    TrainingResult
        ``history`` losses are averaged over the ranks under DDP; ``segmenter.model`` is the
        unwrapped network (its ``state_dict`` has no ``module.`` prefix).

    Raises
    ------
    InputError
        A checkpoint in ``out_dir`` that was made with other settings, or a corrupt one.
    """
    from esoct.train import distributed as ddp

    rank_info = ddp.current()
    if not rank_info.distributed:
        return _train(model, dataset, out_dir, config, preprocessing, resume, progress, on_epoch_end, rank_info, desc)
    base_seed = dataset.seed
    dataset.seed = ddp.shard_seed(base_seed, rank_info)  # each rank draws its own patches
    try:
        return _train(model, dataset, out_dir, config, preprocessing, resume, progress, on_epoch_end, rank_info, desc)
    finally:
        dataset.seed = base_seed


def _null_logger() -> logging.Logger:
    log = logging.getLogger("esoct.segment.training.nonmain")
    log.propagate = False
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    return log


def _train(model, dataset, out_dir, config, preprocessing, resume, progress, on_epoch_end, rank_info, desc) -> TrainingResult:
    """The loop of :func:`train_segmentation`; ``rank_info`` says which rank this is (world size 1: plain)."""

    from esoct.train.checkpoint import load_checkpoint, safe_load, save_checkpoint
    from esoct.train.device import pick_device, seed_everything
    from esoct.train.distributed import barrier, mean_over_ranks, wrap_model
    from esoct.train.losses import DeepSupervisionLoss, SegmentationLoss

    config = config or TrainingConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / CHECKPOINT
    device = pick_device(config.device)
    if rank_info.distributed and device.type == "cuda":
        device = rank_info.device  # one GPU per rank: cuda:<LOCAL_RANK>
    use_amp = bool(config.amp and device.type == "cuda")
    if device.type == "cpu":
        # Late in a cosine schedule Adam's moments and the gradients drift into subnormal floats,
        # which x86 CPUs compute ~100x slower: bench_cascade's stage-2 epochs went from 11 s to
        # 30 s after epoch ~85. Flushing them to zero costs nothing in accuracy.
        torch.set_flush_denormal(True)
    n_classes = int(getattr(model, "n_classes", 0) or model.config["n_classes"])
    divisor = getattr(model, "size_divisor", (1, 1, 1))
    if any(p % d for p, d in zip(dataset.patch_size, divisor)):
        raise InputError(f"patch size {dataset.patch_size} must be a multiple of {divisor} (the product of the network's strides)")
    segmenter = Segmenter(model, preprocessing, dataset.patch_size, n_classes)
    seg_meta = segmenter.to_dict()

    seed_everything(config.seed)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=0.0)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    criterion = DeepSupervisionLoss(
        SegmentationLoss(config.focal_alpha, config.focal_gamma, dice_weight=config.dice_weight), weights=config.ds_weights
    )

    history: list = []
    start = 0
    barrier()  # every rank sees the same checkpoint (or none)
    if resume and ckpt.is_file():
        try:
            saved_extra = safe_load(ckpt).get("extra", {})
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"corrupt checkpoint ({type(exc).__name__}); delete it to start again", ckpt) from exc
        _check_resume(saved_extra, seg_meta, config, ckpt)
        saved = load_checkpoint(ckpt, model, optimizer, scheduler, map_location="cpu")  # RNG states must stay on the CPU
        start = saved["epoch"]
        history = list(saved["extra"].get("history", []))
        if saved["extra"].get("scaler"):
            scaler.load_state_dict(saved["extra"]["scaler"])

    net = wrap_model(model, rank_info)  # DDP under torchrun (broadcasts rank 0's weights), else the model itself
    log, handler = _file_logger(out_dir / "train.log") if rank_info.is_main else (_null_logger(), None)
    bar = None
    try:
        if start == 0:
            n_params = sum(p.numel() for p in model.parameters())
            log.info("start: device %s, amp %s, %d parameters, config %s", device, use_amp, n_params, json.dumps(asdict(config)))
            log.info("segmenter %s", json.dumps(seg_meta))
        elif start < config.epochs:
            log.info("resume after epoch %d of %d", start, config.epochs)
        n_samples = config.iterations_per_epoch * config.batch_size
        bar = progress_bar(total=config.epochs * config.iterations_per_epoch, initial=start * config.iterations_per_epoch,
                           desc=desc, unit="steps", enabled=progress and rank_info.is_main)
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            dataset.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=config.batch_size, sampler=range(n_samples), num_workers=config.num_workers,
                pin_memory=device.type == "cuda",
            )
            net.train()
            lr = optimizer.param_groups[0]["lr"]
            total, steps = 0.0, 0
            for batch in loader:
                x = batch["image"].to(device, non_blocking=True)
                y = batch["label"].to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    outputs = net(x)
                loss = criterion(outputs, y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, step {steps + 1}; lower the learning rate")
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach())
                steps += 1
                bar.set_postfix_str(f"epoch {epoch + 1}/{config.epochs} loss {total / steps:.4f}", refresh=False)
                bar.update(1)
            bar.set_postfix_str(f"epoch {epoch + 1}/{config.epochs} loss {total / max(steps, 1):.4f}")  # shown once per epoch at least
            scheduler.step()
            loss_mean = mean_over_ranks(total / max(steps, 1), rank_info)
            entry = {"epoch": epoch + 1, "loss": loss_mean, "lr": lr, "seconds": round(time.perf_counter() - t0, 3)}
            history.append(entry)
            if rank_info.is_main:  # the unwrapped model: no "module." prefix in the checkpoint
                extra = {"history": history, "segmenter": seg_meta, "training": asdict(config), "scaler": scaler.state_dict()}
                save_checkpoint(ckpt, model, optimizer, scheduler, epoch=epoch + 1, extra=extra)
                (out_dir / "history.json").write_text(json.dumps(history, indent=1) + "\n")
            log.info("epoch %d/%d loss %.5f lr %.3g %.1f s", epoch + 1, config.epochs, entry["loss"], lr, entry["seconds"])
            barrier()  # the checkpoint is complete before any rank goes on
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, history)
    finally:
        if bar is not None:
            bar.close()
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
    model.eval()
    return TrainingResult(segmenter, history, ckpt, start)
