"""ResoLSTM-Depth (ResNet-18 per slice -> 2-layer LSTM -> FC) and its ResNet-18 per-slice baseline.

Both models take a batch of ROI slice sequences ``x`` of shape ``(N, S, C, H, W)`` (patients,
slices head to foot, channels, rows, columns) padded with zeros after the last slice of the
shorter sequences, and ``lengths`` ``(N,)``, the number of valid slices of each patient. Padding
never reaches a network layer: the ResNet only sees the valid slices (so BatchNorm statistics in
training are those of real slices), and the LSTM reads a packed sequence
(:func:`torch.nn.utils.rnn.pack_padded_sequence`), so a padded batch gives the same output as each
sequence alone.

References
----------
.. [1] Zhang et al. "ResoLSTM-Depth: predicting the invasion depth of esophageal squamous cell
       carcinoma from arterial phase enhanced CT", 2024 (``seeds/resolstm-depth-t-staging.txt``).
.. [2] He, K. et al. "Deep residual learning for image recognition", CVPR 2016.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from esoct.errors import InputError
from esoct.models.backbones import resnet18_2d

MODEL_KINDS = ("resolstm", "resnet")


def _lengths(x: torch.Tensor, lengths) -> torch.Tensor:
    """Valid slice counts ``(N,)`` int64 on the CPU, checked against ``x`` ``(N, S, C, H, W)``."""
    if x.ndim != 5:
        raise InputError(f"expected a batch of slice sequences (N, S, C, H, W), got shape {tuple(x.shape)}")
    n, s = x.shape[:2]
    if lengths is None:
        return torch.full((n,), s, dtype=torch.int64)
    lengths = torch.as_tensor(lengths, dtype=torch.int64).cpu().reshape(-1)
    if lengths.numel() != n:
        raise InputError(f"{lengths.numel()} lengths for a batch of {n} sequences")
    if (lengths < 1).any() or (lengths > s).any():
        raise InputError(f"sequence lengths must be within 1..{s} (the padded length), got {lengths.tolist()}")
    return lengths


def _valid_mask(lengths: torch.Tensor, s: int, device) -> torch.Tensor:
    """``(N, S)`` bool: True on the valid (non-padding) slices."""
    return (torch.arange(s)[None, :] < lengths[:, None]).to(device)


class SliceEncoder(nn.Module):
    """ResNet-18 applied to every valid slice: ``(N, S, C, H, W)`` -> pooled features ``(N, S, F)``.

    Padding slices are skipped (their features are 0). ``self.layer4`` of :attr:`resnet` is the
    Grad-CAM target (``"encoder.resnet.layer4"`` in the enclosing model).

    Parameters
    ----------
    in_channels : int
        Channels per slice (1 for CT).
    width : float
        ResNet channel multiplier (1.0: standard ResNet-18, F = 512; 0.125 for tiny test nets).
    weights : str or Path, optional
        Local ResNet-18 weights file (:func:`esoct.models.backbones.load_backbone_weights`).
    """

    def __init__(self, in_channels: int = 1, width: float = 1.0, weights: str | Path | None = None):
        super().__init__()
        self.resnet = resnet18_2d(in_channels=in_channels, width=width, weights=weights)
        self.out_features = self.resnet.out_features

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, S, F)`` of the valid slices, zeros on padding."""
        n, s = x.shape[:2]
        valid = _valid_mask(lengths, s, x.device)
        feats = self.resnet(x[valid])  # (sum(lengths), F), slices in patient then slice order
        out = feats.new_zeros((n, s, feats.shape[-1]))
        out[valid] = feats
        return out


class ResoLSTMDepth(nn.Module):
    """ResoLSTM-Depth: a 2D ResNet-18 per slice, its pooled features in slice order through a
    2-layer LSTM, the last valid hidden state of the top layer to a fully connected layer.

    Input ``x`` ``(N, S, C, H, W)``: N patients, S slices ordered head to foot (superior first,
    as :func:`esoct.preprocess.roi.sequence.slice_sequence` returns them), C channels, H x W pixels
    (224 x 224 in the paper), zero-padded after the last valid slice; ``lengths`` ``(N,)``.
    Output: class logits ``(N, K)``.

    Parameters
    ----------
    num_classes : int
        2 (T1-2 vs T3-4, the paper) or 4 (T1..T4).
    in_channels : int
        Channels per slice.
    width : float
        ResNet-18 channel multiplier (1.0 in the paper; 0.125-0.25 for tests and the ``fast`` preset).
    hidden_size : int
        LSTM hidden units (128 in the paper).
    num_layers : int
        LSTM layers (2 in the paper).
    dropout : float
        Dropout between LSTM layers and before the classifier.
    weights : str or Path, optional
        Local ResNet-18 weights file; without it the ResNet starts from scratch.
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 1,
        width: float = 1.0,
        hidden_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.0,
        weights: str | Path | None = None,
    ):
        super().__init__()
        if num_classes < 2:
            raise InputError(f"num_classes must be >= 2, got {num_classes}")
        self.config = dict(kind="resolstm", num_classes=num_classes, in_channels=in_channels, width=width,
                           hidden_size=hidden_size, num_layers=num_layers, dropout=dropout)
        self.encoder = SliceEncoder(in_channels, width, weights)
        self.lstm = nn.LSTM(self.encoder.out_features, hidden_size, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size, num_classes)

    def features(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        """Last valid hidden state of the top LSTM layer, ``(N, hidden_size)`` (the t-SNE features)."""
        lengths = _lengths(x, lengths)
        feats = self.encoder(x, lengths)  # (N, S, F)
        packed = pack_padded_sequence(feats, lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # h_n (num_layers, N, hidden), in the input order
        return h_n[-1]

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        """Class logits ``(N, K)``."""
        return self.fc(self.drop(self.features(x, lengths)))

    def loss(self, x: torch.Tensor, lengths, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the patient logits against ``y`` ``(N,)`` class indices."""
        return F.cross_entropy(self(x, lengths), y)


class ResNetSliceClassifier(nn.Module):
    """The paper's baseline: ResNet-18 alone, one prediction per slice, aggregated per patient.

    Training: every slice carries its patient's label; the loss is the cross-entropy averaged
    over all valid slices of the batch. Patient prediction: the **mean of the slice softmax
    probabilities** over the patient's valid slices; :meth:`forward` returns its logarithm, so
    ``softmax(forward(x))`` is that mean and ``argmax`` the predicted class.

    Input ``x`` ``(N, S, C, H, W)`` zero-padded, ``lengths`` ``(N,)``; output ``(N, K)``.

    Parameters
    ----------
    num_classes, in_channels, width, dropout, weights
        As :class:`ResoLSTMDepth`.
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 1,
        width: float = 1.0,
        dropout: float = 0.0,
        weights: str | Path | None = None,
    ):
        super().__init__()
        if num_classes < 2:
            raise InputError(f"num_classes must be >= 2, got {num_classes}")
        self.config = dict(kind="resnet", num_classes=num_classes, in_channels=in_channels, width=width,
                           dropout=dropout)
        self.encoder = SliceEncoder(in_channels, width, weights)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.encoder.out_features, num_classes)

    def slice_logits(self, x: torch.Tensor, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-slice logits ``(N, S, K)`` (0 on padding) and the valid mask ``(N, S)``."""
        lengths = _lengths(x, lengths)
        feats = self.encoder(x, lengths)
        return self.fc(self.drop(feats)), _valid_mask(lengths, x.shape[1], x.device)

    def features(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        """Mean pooled ResNet features over the valid slices, ``(N, F)``."""
        lengths = _lengths(x, lengths)
        feats = self.encoder(x, lengths)
        return feats.sum(dim=1) / lengths.to(feats.device, feats.dtype)[:, None]

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        """Patient log-probabilities ``(N, K)``: log of the mean slice softmax probabilities."""
        logits, valid = self.slice_logits(x, lengths)
        prob = torch.softmax(logits.float(), dim=-1) * valid[..., None]
        mean = prob.sum(dim=1) / valid.sum(dim=1, keepdim=True)
        return torch.log(mean.clamp_min(1e-12))

    def loss(self, x: torch.Tensor, lengths, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of every valid slice against its patient's class ``y`` ``(N,)``."""
        logits, valid = self.slice_logits(x, lengths)
        target = y[:, None].expand(valid.shape)
        return F.cross_entropy(logits[valid], target[valid])


def build_model(kind: str, **kwargs) -> nn.Module:
    """A T-stage model by name: ``"resolstm"`` (:class:`ResoLSTMDepth`) or ``"resnet"``
    (:class:`ResNetSliceClassifier`); ``kwargs`` go to its constructor (LSTM settings are
    ignored for ``"resnet"``)."""
    if kind == "resolstm":
        return ResoLSTMDepth(**kwargs)
    if kind == "resnet":
        kwargs = {k: v for k, v in kwargs.items() if k not in ("hidden_size", "num_layers")}
        return ResNetSliceClassifier(**kwargs)
    raise InputError(f"unknown model {kind!r}; choose from {MODEL_KINDS}")
