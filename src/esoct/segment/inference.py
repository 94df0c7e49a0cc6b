"""Predict a label map for a CT Volume: resample, normalise, Gaussian sliding window, mirroring TTA, post-process.

The pipeline of :func:`predict_volume` (nnU-Net's inference, nn-TransEC Sec. 3.3):

1. resample the CT to the training spacing (3rd-order B-spline) and clip + z-score it
   (:class:`esoct.segment.data.Preprocessing`);
2. MONAI ``sliding_window_inference`` over patches of the training size, overlap 0.5,
   Gaussian importance weighting (``sigma_scale`` 0.125, as nnU-Net), softmax per patch;
   optional mirroring test-time augmentation: the softmax averaged over all flips of the
   mirror axes (8 passes for 3 axes);
3. argmax over classes;
4. back to the input's grid with nearest-neighbour resampling -- the output Volume has
   exactly the input's shape, spacing, origin and direction;
5. connected-component post-processing (:func:`esoct.segment.postprocess.postprocess_labels`)
   on the final grid, so the tumour volume threshold is in the output's millilitres.

The network runs on CUDA with automatic mixed precision when present; the whole-volume
probability map is accumulated on the CPU so large thin-slice volumes fit.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from esoct.errors import InputError
from esoct.io.volume import Volume
from esoct.segment.data import Preprocessing
from esoct.segment.postprocess import PostprocessReport, postprocess_labels


class _SoftmaxPredictor:
    """Patch predictor for the sliding window: softmax of the logits, averaged over mirrored copies."""

    def __init__(self, model: nn.Module, mirror_axes: Sequence[int] | None, amp: bool):
        self.model = model
        self.amp = amp
        axes = [] if not mirror_axes else [int(a) + 2 for a in mirror_axes]  # spatial axis -> tensor axis
        self.flips = [list(c) for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]

    def _probs(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=self.amp and x.device.type == "cuda"):
            out = self.model(x)
        if isinstance(out, (list, tuple)):
            out = out[0]
        return torch.softmax(out.float(), dim=1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for dims in self.flips:
            p = self._probs(torch.flip(x, dims) if dims else x)
            p = torch.flip(p, dims) if dims else p
            total = p if total is None else total + p
        return total / len(self.flips)


def sliding_window_probabilities(
    model: nn.Module,
    image: torch.Tensor | np.ndarray,
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    mirror_axes: Sequence[int] | None = None,
    sw_batch_size: int = 2,
    pad_value: float = 0.0,
    device: str | torch.device | None = None,
    amp: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Class probabilities of a whole (preprocessed) image by Gaussian-weighted sliding windows.

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, C_in, *patch_size)`` to logits ``(N, n_classes, *patch_size)`` (a list: the first
        element is used). Put in eval mode here.
    image : torch.Tensor or numpy.ndarray
        ``(C_in, Z, Y, X)`` or ``(Z, Y, X)`` (one channel), already normalised.
    patch_size : tuple of 3 int
        Window ``(z, y, x)``; smaller images are padded with ``pad_value`` and cropped back.
    overlap : float
        Window overlap (0.5, nnU-Net).
    mirror_axes : sequence of int, optional
        Spatial axes (0 = z, 1 = y, 2 = x) for mirroring TTA; None for none.
    sw_batch_size : int
        Windows per forward pass.
    pad_value : float
        Image value used for padding.
    device : str or torch.device, optional
        Where the network runs (default: the model's device). The result is on the CPU.
    amp : bool
        float16 autocast on CUDA.
    progress : bool
        Progress bar over windows.

    Returns
    -------
    torch.Tensor
        ``(n_classes, Z, Y, X)`` float32 probabilities (sum 1 per voxel), on the CPU.
    """
    from monai.inferers import sliding_window_inference

    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image, dtype=torch.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise InputError(f"image must be (C, Z, Y, X) or (Z, Y, X), got shape {tuple(x.shape)}")
    if device is None:
        device = next(model.parameters()).device if any(True for _ in model.parameters()) else torch.device("cpu")
    device = torch.device(device)
    model.eval()
    predictor = _SoftmaxPredictor(model, mirror_axes, amp)
    with torch.inference_mode():
        probs = sliding_window_inference(
            x[None],
            roi_size=tuple(int(p) for p in patch_size),
            sw_batch_size=int(sw_batch_size),
            predictor=predictor,
            overlap=float(overlap),
            mode="gaussian",
            sigma_scale=0.125,
            padding_mode="constant",
            cval=float(pad_value),
            sw_device=device,
            device=torch.device("cpu"),
            progress=progress,
        )
    probs = probs.as_tensor() if hasattr(probs, "as_tensor") else probs
    return probs[0].float()


def resample_probabilities(probs: np.ndarray | torch.Tensor, source: Volume, target: Volume) -> np.ndarray:
    """Move per-class probabilities ``(C, z, y, x)`` from ``source``'s grid onto ``target``'s (linear).

    Used by the cascade to upsample stage-1 softmax maps. Outside the source, background
    (channel 0) gets probability 1 and the other classes 0.
    """
    from esoct.preprocess.resample import resample_like

    p = np.asarray(probs, dtype=np.float32)
    if p.shape[1:] != source.shape:
        raise InputError(f"probabilities {p.shape[1:]} do not match the source grid {source.shape}")
    out = [
        resample_like(source.with_array(p[c]), target, interpolator="linear", default_value=1.0 if c == 0 else 0.0).array
        for c in range(p.shape[0])
    ]
    return np.stack(out).astype(np.float32)


@dataclass
class Segmenter:
    """A trained segmentation network with what inference needs to use it.

    Attributes
    ----------
    model : nn.Module
        The network (eval mode at prediction).
    preprocessing : Preprocessing
        Training spacing and normalisation.
    patch_size : tuple of 3 int
        Sliding-window size ``(z, y, x)``, voxels.
    n_classes : int
        Output classes.
    """

    model: nn.Module
    preprocessing: Preprocessing
    patch_size: tuple
    n_classes: int = 6

    def to_dict(self) -> dict:
        """What a checkpoint stores besides the weights."""
        return {
            "model_config": getattr(self.model, "config", None),
            "preprocessing": self.preprocessing.to_dict(),
            "patch_size": [int(p) for p in self.patch_size],
            "n_classes": int(self.n_classes),
        }

    def probabilities(
        self,
        volume: Volume,
        *,
        extra: np.ndarray | None = None,
        tta: bool = False,
        mirror_axes: Sequence[int] = (0, 1, 2),
        overlap: float = 0.5,
        sw_batch_size: int = 2,
        device=None,
        amp: bool = True,
        progress: bool = False,
    ) -> tuple[np.ndarray, Volume]:
        """Softmax probabilities at the training spacing.

        Parameters
        ----------
        volume : Volume
            CT in HU, any spacing.
        extra : numpy.ndarray, optional
            Extra input channels ``(K, z, y, x)`` on the *resampled* grid (the cascade's stage 1).
        tta, mirror_axes : mirroring test-time augmentation and its axes (0 = z, 1 = y, 2 = x).
        overlap, sw_batch_size, device, amp, progress : see :func:`sliding_window_probabilities`.

        Returns
        -------
        probs : numpy.ndarray
            ``(n_classes, z, y, x)`` float32 on the resampled grid.
        grid : Volume
            The preprocessed CT (resampled, normalised): its geometry is that of ``probs``.
        """
        grid = self.preprocessing.image(volume)
        x = grid.array[None]
        if extra is not None:
            extra = np.asarray(extra, dtype=np.float32)
            if extra.shape[1:] != grid.shape:
                raise InputError(f"extra channels {extra.shape[1:]} do not match the resampled image {grid.shape}")
            x = np.concatenate([x, extra], axis=0)
        in_ch = (getattr(self.model, "config", None) or {}).get("in_channels")
        if in_ch is not None and in_ch != x.shape[0]:
            raise InputError(f"the network takes {in_ch} input channels, got {x.shape[0]} (image + extra channels)")
        probs = sliding_window_probabilities(
            self.model, x, self.patch_size, overlap=overlap, mirror_axes=mirror_axes if tta else None,
            sw_batch_size=sw_batch_size, pad_value=self.preprocessing.background, device=device, amp=amp, progress=progress,
        )
        return probs.numpy(), grid

    def predict(
        self,
        volume: Volume,
        *,
        extra: np.ndarray | None = None,
        tta: bool = False,
        postprocess: bool = True,
        min_tumour_ml: float = 0.5,
        **kwargs,
    ) -> Volume:
        """Label map of ``volume`` in its own geometry; see :func:`predict_volume`."""
        labels, _ = predict_volume(self, volume, extra=extra, tta=tta, postprocess=postprocess, min_tumour_ml=min_tumour_ml, **kwargs)
        return labels


def labels_to_input_grid(labels: np.ndarray, grid: Volume, volume: Volume) -> Volume:
    """Argmax labels on the resampled ``grid`` -> uint8 Volume with exactly ``volume``'s geometry (nearest)."""
    from esoct.preprocess.resample import resample_like

    lab = grid.with_array(np.asarray(labels, dtype=np.uint8))
    if not lab.same_geometry(volume, atol=1e-6):
        lab = resample_like(lab, volume, is_label=True)
    return volume.with_array(lab.array.astype(np.uint8))


def predict_volume(
    segmenter: Segmenter,
    volume: Volume,
    *,
    extra: np.ndarray | None = None,
    tta: bool = False,
    mirror_axes: Sequence[int] = (0, 1, 2),
    postprocess: bool = True,
    min_tumour_ml: float = 0.5,
    overlap: float = 0.5,
    sw_batch_size: int = 2,
    device=None,
    amp: bool = True,
    progress: bool = False,
) -> tuple[Volume, PostprocessReport | None]:
    """Segment a CT volume and return the label map on the input's grid.

    Parameters
    ----------
    segmenter : Segmenter
        Network, preprocessing and patch size (:func:`load_segmenter`).
    volume : Volume
        CT in HU, ``(z, y, x)``, any spacing, origin and direction.
    extra : numpy.ndarray, optional
        Extra input channels on the resampled grid (cascade).
    tta : bool
        Mirroring test-time augmentation over ``mirror_axes``.
    postprocess : bool
        Apply the connected-component rules (largest aorta, esophagus, pericardium component;
        tumour components under ``min_tumour_ml`` ml removed, the largest one kept).
    min_tumour_ml : float
        Tumour component threshold, ml.
    overlap, sw_batch_size, device, amp, progress
        Sliding-window settings (:func:`sliding_window_probabilities`).

    Returns
    -------
    labels : Volume
        uint8 label map, same shape, spacing, origin and direction as ``volume``.
    report : PostprocessReport or None
        Components removed by post-processing (None without it).
    """
    if not isinstance(volume, Volume):
        raise InputError(f"predict_volume needs a Volume (array with its geometry), got {type(volume).__name__}")
    probs, grid = segmenter.probabilities(
        volume, extra=extra, tta=tta, mirror_axes=mirror_axes, overlap=overlap, sw_batch_size=sw_batch_size,
        device=device, amp=amp, progress=progress,
    )
    labels = labels_to_input_grid(np.argmax(probs, axis=0), grid, volume)
    report = None
    if postprocess:
        labels, report = postprocess_labels(labels, min_tumour_ml=min_tumour_ml)
    return labels, report


def load_segmenter(path: str | Path, device: str | torch.device | None = None) -> Segmenter:
    """Rebuild a :class:`Segmenter` from a training checkpoint (:func:`esoct.segment.training.train_segmentation`).

    Raises
    ------
    InputError
        Missing or corrupt file, or a checkpoint without the segmenter description.
    """
    from esoct.models.unet3d import UNet3D
    from esoct.train.checkpoint import load_checkpoint, safe_load
    from esoct.train.device import pick_device

    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        meta = safe_load(path)["extra"]["segmenter"]
        model = UNet3D.from_config(meta["model_config"])
    except Exception as exc:  # noqa: BLE001 - any failure means the file is not one of our checkpoints
        raise InputError(f"not a segmentation checkpoint ({type(exc).__name__}: {str(exc)[:200]})", path) from exc
    load_checkpoint(path, model, restore_rng=False)
    model.to(pick_device(device)).eval()
    return Segmenter(model, Preprocessing.from_dict(meta["preprocessing"]), tuple(meta["patch_size"]), int(meta["n_classes"]))
