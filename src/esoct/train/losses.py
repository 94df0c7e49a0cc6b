"""Segmentation losses: multi-class focal loss, soft Dice, and nnU-Net-style deep supervision.

Why our own focal loss and not ``monai.losses.FocalLoss``
--------------------------------------------------------
nn-TransEC's Eq. (1) is the multi-class (softmax) focal loss of Lin et al. with one weight
``alpha = 0.25`` for every class: per voxel ``-alpha (1 - p_t)^gamma log p_t`` where ``t`` is
the true class. MONAI's ``FocalLoss(use_softmax=True, alpha=0.25)`` reads a scalar alpha the
binary way -- ``1 - alpha = 0.75`` for the background channel and ``0.25`` for the others -- and its
``"mean"`` reduction divides by ``N * C * voxels`` (every channel, including the zero terms of the
wrong classes), so its value is ``1 / C`` of the per-voxel mean. With ``alpha`` as a per-class
sequence and ``reduction="none"`` MONAI computes the same per-voxel terms as ours; the test suite
checks that equality. Ours takes integer label maps directly, accepts a per-class alpha sequence
as well, and at ``gamma = 0`` is exactly ``alpha`` times the cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from esoct.errors import InputError


def _as_index_target(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``(N, Z, Y, X)`` or ``(N, 1, Z, Y, X)`` class indices -> ``(N, Z, Y, X)`` int64, checked."""
    if target.ndim == logits.ndim and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise InputError(f"target shape {tuple(target.shape)} does not fit logits {tuple(logits.shape)} (N, C, Z, Y, X)")
    return target.long()


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float | Sequence[float] = 0.25,
    gamma: float = 2.0,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Multi-class focal loss averaged over voxels (Lin et al. 2017; nn-TransEC Eq. 1).

    ``FL = mean over voxels of  -alpha_t * (1 - p_t)**gamma * log(p_t)``, where ``p = softmax(logits)``
    and ``t`` is the voxel's true class.

    Parameters
    ----------
    logits : torch.Tensor
        Unnormalised scores ``(N, C, Z, Y, X)`` (any number of spatial axes).
    target : torch.Tensor
        Class indices ``(N, Z, Y, X)`` or ``(N, 1, Z, Y, X)``, values in ``0..C-1``.
    alpha : float or sequence of float
        One weight for every class (0.25 in the paper) or one per class (length C).
    gamma : float
        Focusing exponent (2 in the paper); 0 gives ``alpha`` times the cross-entropy.
    ignore_index : int, optional
        Label of voxels left out of the loss and of the mean.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    References
    ----------
    Lin T.-Y., Goyal P., Girshick R., He K., Dollar P. Focal loss for dense object detection. ICCV 2017.
    """
    target = _as_index_target(target, logits)
    valid = None
    if ignore_index is not None:
        valid = target != ignore_index
        target = torch.where(valid, target, torch.zeros_like(target))
    log_p = F.log_softmax(logits.float(), dim=1)
    log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
    pt = log_pt.exp()
    if isinstance(alpha, (int, float)):
        alpha_t = torch.full_like(pt, float(alpha))
    else:
        a = torch.as_tensor(alpha, dtype=pt.dtype, device=pt.device)
        if a.numel() != logits.shape[1]:
            raise InputError(f"alpha has {a.numel()} values for {logits.shape[1]} classes")
        alpha_t = a[target]
    loss = -alpha_t * (1.0 - pt).clamp(min=0).pow(gamma) * log_pt
    if valid is None:
        return loss.mean()
    return (loss * valid).sum() / valid.sum().clamp(min=1)


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss` (same parameters)."""

    def __init__(self, alpha: float | Sequence[float] = 0.25, gamma: float = 2.0, ignore_index: int | None = None):
        super().__init__()
        self.alpha = alpha if isinstance(alpha, (int, float)) else [float(a) for a in alpha]
        self.gamma = float(gamma)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, target, self.alpha, self.gamma, self.ignore_index)


class SegmentationLoss(nn.Module):
    """Focal loss, plus optionally a soft Dice loss: ``focal_weight * FL + dice_weight * Dice``.

    The Dice part is MONAI's ``DiceLoss`` with softmax, one-hot targets, background left out and
    batch Dice (nnU-Net's choice for small batches), smoothing 1e-5.

    Parameters
    ----------
    alpha, gamma : focal-loss parameters (0.25, 2 in the paper).
    dice_weight : float
        Weight of the Dice loss; 0 (default, the paper) leaves it out.
    focal_weight : float
        Weight of the focal loss.
    """

    def __init__(self, alpha: float | Sequence[float] = 0.25, gamma: float = 2.0, dice_weight: float = 0.0, focal_weight: float = 1.0):
        super().__init__()
        self.focal = FocalLoss(alpha, gamma)
        self.focal_weight = float(focal_weight)
        self.dice_weight = float(dice_weight)
        self.dice = None
        if self.dice_weight > 0:
            from monai.losses import DiceLoss

            self.dice = DiceLoss(include_background=False, to_onehot_y=True, softmax=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.focal_weight * self.focal(logits, target)
        if self.dice is not None:
            t = target if target.ndim == logits.ndim else target.unsqueeze(1)
            loss = loss + self.dice_weight * self.dice(logits.float(), t)
        return loss


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """nnU-Net's weights: halving per resolution (1, 1/2, 1/4, ...), normalised to sum 1.

    nnU-Net v2 additionally gives the coarsest output weight 0; nn-TransEC supervises all four
    depths, so every output keeps its weight here.
    """
    w = [0.5**i for i in range(int(n_outputs))]
    return [v / sum(w) for v in w]


def downsample_target(target: torch.Tensor, size: Sequence[int], mode: str = "nearest") -> torch.Tensor:
    """Bring a label map ``(N, 1, Z, Y, X)`` or ``(N, Z, Y, X)`` to ``size`` (spatial) for a coarser output.

    Parameters
    ----------
    target : torch.Tensor
        Class indices.
    size : sequence of 3 int
        Spatial size ``(z, y, x)`` of the coarse output; each axis must divide the target's.
    mode : {"nearest", "max"}
        ``"nearest"`` takes the first voxel of each block (nnU-Net's order-0 resize);
        ``"max"`` takes the block's largest label (max pooling; favours higher labels).

    Returns
    -------
    torch.Tensor
        ``(N, 1, *size)`` int64.
    """
    t = target if target.ndim == len(size) + 2 else target.unsqueeze(1)
    full = t.shape[2:]
    if any(f % s for f, s in zip(full, size)):
        raise InputError(f"target size {tuple(full)} is not a multiple of the output size {tuple(size)}")
    factor = tuple(f // s for f, s in zip(full, size))
    if factor == (1,) * len(size):
        return t.long()
    if mode == "nearest":
        index = tuple(slice(None, None, f) for f in factor)
        return t[(slice(None), slice(None)) + index].long()
    if mode == "max":
        return F.max_pool3d(t.float(), kernel_size=factor, stride=factor).long()
    raise InputError(f"unknown target downsampling mode {mode!r} (nearest or max)")


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of a loss over deep-supervision outputs, targets downsampled to each output's size.

    Parameters
    ----------
    loss : nn.Module
        Loss of one output, ``loss(logits, target)``.
    weights : sequence of float, optional
        One weight per output (full resolution first); default :func:`deep_supervision_weights`.
        They are normalised to sum 1.
    target_mode : {"nearest", "max"}
        How targets are downsampled (:func:`downsample_target`).

    Notes
    -----
    Called with a single tensor (eval mode), it returns ``loss(logits, target)``.
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float] | None = None, target_mode: str = "nearest"):
        super().__init__()
        self.loss = loss
        self.weights = None if weights is None else [float(w) for w in weights]
        self.target_mode = target_mode

    def forward(self, outputs, target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        weights = self.weights or deep_supervision_weights(len(outputs))
        if len(weights) != len(outputs):
            raise InputError(f"{len(weights)} deep-supervision weights for {len(outputs)} outputs")
        total = sum(weights)
        result = 0.0
        for w, out in zip(weights, outputs):
            if w == 0:
                continue
            result = result + (w / total) * self.loss(out, downsample_target(target, out.shape[2:], self.target_mode))
        return result
