"""nn-TransEC multitask classifier: a classification encoder gated by a frozen segmentation encoder.

The network reads as a composition of named blocks (nn-TransEC section 3.2, Fig. 3 and D):

* ``seg_encoder`` -- a trained segmentation encoder, frozen (no gradient, always in eval mode);
  its per-depth features are the gating signals.
* ``cls_encoder`` -- an encoder of the same class and topology (a fresh instance, or a copy of
  the segmentation encoder's weights: cross-task transfer, :func:`transfer_encoder_weights`).
* ``gates`` -- one :class:`CrossTaskGate` per depth: ``alpha = sigmoid(conv1x1x1(F_seg^d))`` in
  [0, 1], and ``F_cls^d <- alpha * F_cls^d`` voxel by voxel before the next depth.
* ``head`` -- global average pooling, then :class:`ClassificationHead` (FC - LeakyReLU - FC) over
  the T stages T1..T4.

An encoder is any module with a ``stages`` attribute (an iterable of modules applied in order,
each one depth) whose ``forward(x)`` returns the list of per-stage features, shallow to deep;
:class:`esoct.models.unet3d` encoders have that shape. Ablation switches (the paper's Table 12):
``residual`` (chosen when the encoder is built), ``gates`` on/off, ``transfer`` on/off.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from esoct.errors import InputError

#: Classes of the classification head, in output order.
T_STAGES: tuple[str, ...] = ("T1", "T2", "T3", "T4")


# ---------------------------------------------------------------- blocks


class CrossTaskGate(nn.Module):
    """Cross-task attention gate of one depth (nn-TransEC section 3.2.2, Fig. 4).

    ``alpha = sigmoid(W * F_seg + b)`` with ``W`` a 1x1x1 convolution from the segmentation
    channels to ``coefficient_channels`` (1: one coefficient per voxel, shared by all channels),
    and the output ``alpha * F_cls`` (voxel-wise product, broadcast over channels).

    Parameters
    ----------
    seg_channels : int
        Channels of the segmentation encoder's features at this depth.
    coefficient_channels : int
        1 (default, a voxel-wise map) or the classification channels (one map per channel).

    References
    ----------
    .. [1] Li, C., Wang, R., He, P., Chen, W., Wu, W., Wu, Y. "Segmentation prompts classification:
           a nnUNet-based 3D transfer learning framework with ROI tokenization and cross-task
           attention for esophageal cancer T-stage diagnosis", Expert Systems with Applications
           (nn-TransEC), section 3.2.2.
    .. [2] Oktay, O. et al. "Attention U-Net: learning where to look for the pancreas", MIDL 2018
           (the single-task attention gate it departs from).
    """

    def __init__(self, seg_channels: int, coefficient_channels: int = 1):
        super().__init__()
        self.conv = nn.Conv3d(int(seg_channels), int(coefficient_channels), kernel_size=1)

    def coefficients(self, seg_features: torch.Tensor) -> torch.Tensor:
        """Attention coefficients in [0, 1], shape ``(N, coefficient_channels, Z, Y, X)``."""
        return torch.sigmoid(self.conv(seg_features))

    def forward(self, cls_features: torch.Tensor, seg_features: torch.Tensor) -> torch.Tensor:
        """Gated classification features, shape of ``cls_features`` ``(N, C, Z, Y, X)``."""
        if cls_features.shape[2:] != seg_features.shape[2:]:
            raise InputError(
                f"cross-task gate: classification features {tuple(cls_features.shape[2:])} and segmentation "
                f"features {tuple(seg_features.shape[2:])} differ in size (z, y, x); the encoders must share a topology"
            )
        return cls_features * self.coefficients(seg_features)


class ClassificationHead(nn.Module):
    """Global average pooling, then FC - LeakyReLU - FC (nn-TransEC section 3.5).

    Parameters
    ----------
    in_features : int
        Channels of the deepest encoder stage.
    hidden : int
        Width of the first fully connected layer.
    n_classes : int
        Outputs (4 T stages).
    negative_slope : float
        LeakyReLU slope (0.01, as the paper's network).
    """

    def __init__(self, in_features: int, hidden: int = 128, n_classes: int = 4, negative_slope: float = 0.01):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Linear(int(in_features), int(hidden))
        self.act = nn.LeakyReLU(negative_slope)
        self.fc2 = nn.Linear(int(hidden), int(n_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes)`` from features ``(N, C, Z, Y, X)``."""
        return self.fc2(self.act(self.fc1(torch.flatten(self.pool(features), 1))))


# ---------------------------------------------------------------- transfer


@dataclass
class TransferReport:
    """What :func:`transfer_encoder_weights` copied.

    Attributes
    ----------
    copied : list of str
        State-dict keys (parameters and buffers) copied from the segmentation encoder.
    shape_mismatch : list of str
        Keys present in both with different shapes (left as they were).
    only_in_source, only_in_target : list of str
        Keys of one encoder only (e.g. residual projections when block types differ).
    """

    copied: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    only_in_source: list[str] = field(default_factory=list)
    only_in_target: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every tensor of the target encoder was copied."""
        return not (self.shape_mismatch or self.only_in_target)

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"copied {len(self.copied)} tensors; {len(self.shape_mismatch)} shape mismatches, "
            f"{len(self.only_in_source)} only in the segmentation encoder, {len(self.only_in_target)} only in the "
            "classification encoder"
        )


def transfer_encoder_weights(source: nn.Module, target: nn.Module, strict: bool = False) -> TransferReport:
    """Copy a trained segmentation encoder's weights into a classification encoder (cross-task transfer).

    Every parameter and buffer whose state-dict name and shape agree is copied exactly
    (nn-TransEC section 3.2.3); the rest is reported and left as initialised.

    Parameters
    ----------
    source : torch.nn.Module
        The trained segmentation encoder.
    target : torch.nn.Module
        The classification encoder (same class and topology for a complete transfer).
    strict : bool
        Raise unless every tensor of ``target`` was copied.

    Returns
    -------
    TransferReport
    """
    src, dst = source.state_dict(), target.state_dict()
    report = TransferReport()
    with torch.no_grad():
        for name, value in dst.items():
            if name not in src:
                report.only_in_target.append(name)
            elif src[name].shape != value.shape:
                report.shape_mismatch.append(name)
            else:
                value.copy_(src[name].to(value.device, value.dtype))
                report.copied.append(name)
    report.only_in_source = [k for k in src if k not in dst]
    if strict and not report.complete:
        raise InputError(f"cross-task transfer is incomplete: {report.summary()} "
                         f"(first problems: {(report.shape_mismatch + report.only_in_target)[:3]})")
    return report


def reset_parameters(module: nn.Module, seed: int | None = None) -> nn.Module:
    """Re-initialise every submodule that has ``reset_parameters`` (a fresh, untrained copy).

    Parameters
    ----------
    module : torch.nn.Module
        Changed in place.
    seed : int, optional
        Seed of the initialisation (the global torch generator is left as it was).

    Returns
    -------
    torch.nn.Module
        ``module``.
    """
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for m in module.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return module


# ---------------------------------------------------------------- network


def encoder_stages(encoder: nn.Module) -> list[nn.Module]:
    """The stages (depths) of an encoder, shallow to deep.

    Raises
    ------
    InputError
        The encoder has no ``stages``.
    """
    stages = getattr(encoder, "stages", None)
    if stages is None:
        raise InputError(
            f"{type(encoder).__name__} has no 'stages' attribute: the multitask classifier needs an encoder whose "
            "stages (one per depth) it can run one at a time"
        )
    return list(stages)


def stage_channels(encoder: nn.Module, in_channels: int = 1, probe_size: Sequence[int] = (32, 32, 32)) -> list[int]:
    """Channels of each stage's output, found by running a small zero input through the encoder."""
    param = next(encoder.parameters())
    with torch.no_grad():
        was = encoder.training
        encoder.eval()
        feats = encoder(torch.zeros(1, in_channels, *probe_size, device=param.device, dtype=param.dtype))
        encoder.train(was)
    return [int(f.shape[1]) for f in feats]


class MultitaskClassifier(nn.Module):
    """T-stage classifier of nn-TransEC: gated classification encoder and FC head.

    Parameters
    ----------
    seg_encoder : torch.nn.Module
        Trained segmentation encoder; frozen here (``requires_grad=False``, kept in eval mode).
        Needed when ``gates`` is on; may be ``None`` otherwise.
    cls_encoder : torch.nn.Module
        Classification encoder with ``stages`` (see the module docstring).
    channels : sequence of int
        Output channels of each stage (shallow to deep), as :func:`stage_channels` finds them.
    gates : bool
        Cross-task attention gates at every depth.
    n_classes : int
        Number of T stages.
    hidden : int
        Width of the head's first FC layer.
    coefficient_channels : int
        See :class:`CrossTaskGate`.

    Notes
    -----
    Input ``x`` has shape ``(N, 1, Z, Y, X)``: a normalised CT crop whose size every encoder
    stride divides. ``forward`` returns logits ``(N, n_classes)``; the softmax gives the stage
    probabilities. The segmentation features can be given precomputed (``seg_features``) since the
    segmentation encoder is frozen.
    """

    def __init__(
        self,
        seg_encoder: nn.Module | None,
        cls_encoder: nn.Module,
        channels: Sequence[int],
        *,
        gates: bool = True,
        n_classes: int = 4,
        hidden: int = 128,
        coefficient_channels: int = 1,
    ):
        super().__init__()
        if gates and seg_encoder is None:
            raise InputError("attention gates need a segmentation encoder")
        stages = encoder_stages(cls_encoder)
        channels = [int(c) for c in channels]
        if len(channels) != len(stages):
            raise InputError(f"{len(channels)} channel counts given for an encoder of {len(stages)} stages")
        self.seg_encoder = seg_encoder
        if seg_encoder is not None:
            for p in seg_encoder.parameters():
                p.requires_grad_(False)
            seg_encoder.eval()
        self.cls_encoder = cls_encoder
        self.use_gates = bool(gates)
        self.gates = nn.ModuleList([CrossTaskGate(c, coefficient_channels) for c in channels]) if gates else None
        self.head = ClassificationHead(channels[-1], hidden, n_classes)
        self.channels = channels

    def train(self, mode: bool = True):
        """Set training mode; the frozen segmentation encoder always stays in eval mode."""
        super().train(mode)
        if self.seg_encoder is not None:
            self.seg_encoder.eval()
        return self

    def segmentation_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The frozen segmentation encoder's features of every depth (no gradient)."""
        with torch.no_grad():
            return list(self.seg_encoder(x))

    def encode(self, x: torch.Tensor, seg_features: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Deepest (gated) classification features ``(N, C, z, y, x)``."""
        if self.use_gates and seg_features is None:
            seg_features = self.segmentation_features(x)
        h = x
        for d, stage in enumerate(encoder_stages(self.cls_encoder)):
            h = stage(h)
            if self.use_gates:
                h = self.gates[d](h, seg_features[d].to(h.dtype))
        return h

    def forward(self, x: torch.Tensor, seg_features: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits ``(N, n_classes)`` of a batch of crops ``(N, 1, Z, Y, X)``."""
        return self.head(self.encode(x, seg_features))

    @property
    def target_layer(self) -> str:
        """Name of the classification encoder's last stage (the Grad-CAM layer)."""
        last = encoder_stages(self.cls_encoder)[-1]
        return next(n for n, m in self.named_modules() if m is last and n.startswith("cls_encoder."))


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


def build_multitask_classifier(
    seg_encoder: nn.Module | None,
    encoder_factory: Callable[..., nn.Module] | None = None,
    *,
    residual: bool = True,
    gates: bool = True,
    transfer: bool = True,
    n_classes: int = 4,
    hidden: int = 128,
    in_channels: int = 1,
    seed: int = 0,
) -> tuple[MultitaskClassifier, TransferReport | None]:
    """Build the classifier of one ablation setting (plain/residual, gates on/off, transfer on/off).

    Parameters
    ----------
    seg_encoder : torch.nn.Module or None
        Trained segmentation encoder (gating signals, transfer source); a deep copy is frozen
        inside the model, the argument is not changed. Needed for ``gates`` or ``transfer``.
    encoder_factory : callable, optional
        ``encoder_factory(residual=bool) -> encoder``: builds a fresh encoder of the segmentation
        encoder's class and topology with plain or residual blocks. Without it the classification
        encoder is a re-initialised copy of ``seg_encoder`` (so ``residual`` must match it).
    residual, gates, transfer : bool
        Ablation switches.
    n_classes, hidden : int
        Head size.
    in_channels : int
        Input channels (1 for CT).
    seed : int
        Seed of the fresh weights (head, gates, untransferred encoder).

    Returns
    -------
    model : MultitaskClassifier
    transfer_report : TransferReport or None
        What was copied (``None`` without transfer).
    """
    if (gates or transfer) and seg_encoder is None:
        raise InputError("attention gates and transfer need a trained segmentation encoder")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if encoder_factory is not None:
            cls_encoder = encoder_factory(residual=residual)
        else:
            if seg_encoder is None:
                raise InputError("give an encoder_factory or a segmentation encoder to copy")
            cls_encoder = reset_parameters(copy.deepcopy(seg_encoder), seed)
        for p in cls_encoder.parameters():
            p.requires_grad_(True)
        report = transfer_encoder_weights(seg_encoder, cls_encoder) if transfer else None
        frozen = copy.deepcopy(seg_encoder) if gates else None
        channels = stage_channels(cls_encoder, in_channels)
        model = MultitaskClassifier(frozen, cls_encoder, channels, gates=gates, n_classes=n_classes, hidden=hidden)
    return model, report
