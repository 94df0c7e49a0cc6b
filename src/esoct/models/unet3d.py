"""3D U-Net with residual encoder blocks, instance norm, LeakyReLU and deep supervision (nn-TransEC segmentation).

The network is a composition of named blocks:

* :class:`ConvNormAct` -- convolution, instance normalisation, LeakyReLU(0.01);
* :class:`ResidualBlock` -- two convolutions with a skip connection (ResNet "basic block"),
  :class:`PlainBlock` -- the same two convolutions without the skip (the paper's ablation);
* :class:`UNetEncoder` -- one block stack per resolution stage; ``encoder(x)`` returns the list
  of stage features, so the multitask classifier can reuse (and initialise from) it;
* :class:`UNetDecoder` -- transposed-convolution upsampling, concatenation with the encoder's
  skip features, two plain convolutions, and a 1x1x1 segmentation head per deep-supervision level;
* :class:`UNet3D` -- encoder + decoder. In training mode it returns the logits at the
  ``deep_supervision`` finest resolutions (full resolution first); in eval mode the
  full-resolution logits only.

All tensors are ``(N, C, Z, Y, X)``; strides and kernel sizes are given in ``(z, y, x)`` order,
so anisotropic settings such as ``(1, 2, 2)`` (no downsampling across thick slices) are allowed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from esoct.errors import InputError

LEAKY_SLOPE = 0.01


def _triple(value, name: str) -> tuple[int, int, int]:
    """``3`` -> ``(3, 3, 3)``; a 3-sequence is kept; anything else is an error."""
    if isinstance(value, int):
        return (value, value, value)
    out = tuple(int(v) for v in value)
    if len(out) != 3 or min(out) < 1:
        raise InputError(f"{name} must be a positive int or three positive ints (z, y, x), got {value!r}")
    return out


def _per_stage(value, n_stages: int, name: str) -> list[tuple[int, int, int]]:
    """Expand one setting to every stage, or check a per-stage list.

    ``2`` and ``(1, 2, 2)`` apply to every stage; a list with one entry per stage (an int or a
    triple each) is per stage. A flat list of ints as long as the number of stages is per stage.
    """
    if isinstance(value, int):
        return [_triple(value, name)] * n_stages
    flat = isinstance(value, Sequence) and all(isinstance(v, int) for v in value)
    if flat and len(value) == 3 and n_stages != 3:
        return [_triple(value, name)] * n_stages
    rows = [_triple(v, name) for v in value]
    if len(rows) != n_stages:
        raise InputError(f"{name} needs one entry per stage ({n_stages}), got {len(rows)}")
    return rows


class ConvNormAct(nn.Sequential):
    """Conv3d -> InstanceNorm3d (affine) -> LeakyReLU(0.01); ``act=False`` leaves out the activation.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of ``(N, C, Z, Y, X)`` input and output.
    kernel_size : int or tuple of 3 int
        ``(z, y, x)``; padding keeps the size (``k // 2``).
    stride : int or tuple of 3 int
        ``(z, y, x)`` downsampling of this convolution.
    act : bool
        Append the LeakyReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, act: bool = True):
        k = _triple(kernel_size, "kernel_size")
        layers = [
            nn.Conv3d(in_channels, out_channels, k, stride=_triple(stride, "stride"), padding=tuple(s // 2 for s in k)),
            nn.InstanceNorm3d(out_channels, eps=1e-5, affine=True),
        ]
        if act:
            layers.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
        super().__init__(*layers)


class PlainBlock(nn.Module):
    """Two ConvNormAct layers; the first one carries the stride. No skip connection.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride : int or tuple of 3 int, ``(z, y, x)``
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1):
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, out_channels, kernel_size, stride)
        self.conv2 = ConvNormAct(out_channels, out_channels, kernel_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class ResidualBlock(nn.Module):
    """Residual block: conv-IN-LeakyReLU, conv-IN, add the skip, LeakyReLU (He et al. 2016).

    The skip is the identity when shape and channels are kept, else a strided 1x1x1
    convolution + instance norm (projection shortcut).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride : int or tuple of 3 int, ``(z, y, x)``
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1):
        super().__init__()
        stride = _triple(stride, "stride")
        self.conv1 = ConvNormAct(in_channels, out_channels, kernel_size, stride)
        self.conv2 = ConvNormAct(out_channels, out_channels, kernel_size, 1, act=False)
        if in_channels == out_channels and stride == (1, 1, 1):
            self.skip = nn.Identity()
        else:
            self.skip = ConvNormAct(in_channels, out_channels, 1, stride, act=False)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.skip(x))


class UNetEncoder(nn.Module):
    """Encoder: one stack of blocks per stage; stage ``s`` starts with ``strides[s]``.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for CT; 1 + n_classes for the second stage of a cascade).
    channels : sequence of int
        Feature channels of each stage, e.g. ``(32, 64, 128, 256, 320)``.
    strides : sequence of (int or 3 ints)
        Downsampling at the start of each stage, ``(z, y, x)``; the first is usually 1.
    kernel_sizes : int or sequence
        Convolution kernel of each stage (one value for all, or one per stage).
    residual : bool
        Residual blocks (nn-TransEC) or plain blocks (ablation).
    blocks_per_stage : int or sequence of int
        Blocks in each stage.

    Returns (forward)
    -----------------
    list of torch.Tensor
        Stage features ``(N, channels[s], Z_s, Y_s, X_s)``, finest first.
    """

    def __init__(self, in_channels: int, channels, strides, kernel_sizes=3, residual: bool = True, blocks_per_stage=1):
        super().__init__()
        n = len(channels)
        self.channels = [int(c) for c in channels]
        self.strides = _per_stage(strides, n, "strides")
        self.kernel_sizes = _per_stage(kernel_sizes, n, "kernel_sizes")
        blocks = [int(blocks_per_stage)] * n if isinstance(blocks_per_stage, int) else [int(b) for b in blocks_per_stage]
        if len(blocks) != n or min(blocks) < 1:
            raise InputError(f"blocks_per_stage needs one positive count per stage ({n}), got {blocks_per_stage!r}")
        block = ResidualBlock if residual else PlainBlock
        self.stages = nn.ModuleList()
        prev = int(in_channels)
        for s in range(n):
            layers = [block(prev, self.channels[s], self.kernel_sizes[s], self.strides[s])]
            layers += [block(self.channels[s], self.channels[s], self.kernel_sizes[s], 1) for _ in range(blocks[s] - 1)]
            self.stages.append(nn.Sequential(*layers))
            prev = self.channels[s]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class UNetDecoder(nn.Module):
    """Decoder: upsample, concatenate the skip, two plain convolutions; a seg head per supervised level.

    Parameters
    ----------
    encoder : UNetEncoder
        Gives channels, strides and kernel sizes (mirrored).
    n_classes : int
        Output channels of the segmentation heads.
    deep_supervision : int
        Number of decoder levels with a head (finest first); at most ``n_stages - 1``.
    """

    def __init__(self, encoder: UNetEncoder, n_classes: int, deep_supervision: int):
        super().__init__()
        ch, st, ks = encoder.channels, encoder.strides, encoder.kernel_sizes
        n_levels = len(ch) - 1
        self.up = nn.ModuleList()
        self.blocks = nn.ModuleList()
        # decoder level l (0 = finest) fuses stage l's skip with the upsampled level l + 1
        for level in range(n_levels):
            self.up.append(nn.ConvTranspose3d(ch[level + 1], ch[level], st[level + 1], stride=st[level + 1]))
            self.blocks.append(PlainBlock(2 * ch[level], ch[level], ks[level], 1))
        self.heads = nn.ModuleList(nn.Conv3d(ch[level], n_classes, 1) for level in range(deep_supervision))

    def forward(self, features: list[torch.Tensor], n_outputs: int) -> list[torch.Tensor]:
        """Logits of the ``n_outputs`` finest levels, finest first."""
        x = features[-1]
        outputs = []
        for level in range(len(self.blocks) - 1, -1, -1):
            x = self.blocks[level](torch.cat([self.up[level](x), features[level]], dim=1))
            if level < n_outputs:
                outputs.append(self.heads[level](x))
        return outputs[::-1]


class UNet3D(nn.Module):
    """3D U-Net with residual encoder and deep supervision, as nn-TransEC's segmentation network.

    Parameters
    ----------
    in_channels : int
        Input channels.
    n_classes : int
        Output classes (6 for the nn-TransEC label map: background, tumour, aorta,
        esophagus, lymph node, pericardium).
    channels : sequence of int
        Features per stage (also the network depth), e.g. nnU-Net's ``(32, 64, 128, 256, 320)``.
    strides : sequence
        Per-stage downsampling ``(z, y, x)``; the first must be 1 (full-resolution output).
        Default: 1, then 2 for every further stage.
    kernel_sizes : int or sequence
        Per-stage kernels ``(z, y, x)``; default 3.
    residual : bool
        Residual encoder blocks (True, nn-TransEC) or plain blocks (ablation).
    blocks_per_stage : int or sequence of int
        Encoder blocks per stage.
    deep_supervision : int
        Number of supervised outputs in training mode (4 in the paper); 1 turns it off.

    Notes
    -----
    The input's spatial size must be divisible by the product of the strides per axis
    (:attr:`size_divisor`). ``forward`` returns, in training mode, a list of logits
    ``(N, n_classes, Z / f, Y / f, X / f)`` at the scales of :meth:`output_scales`, full
    resolution first; in eval mode the full-resolution logits ``(N, n_classes, Z, Y, X)``.

    Examples
    --------
    >>> net = UNet3D(1, 6, channels=(4, 8, 16, 16, 16), strides=(1, (1, 2, 2), 2, 2, 2))
    >>> [tuple(o.shape) for o in net(torch.zeros(1, 1, 16, 32, 32))]
    [(1, 6, 16, 32, 32), (1, 6, 16, 16, 16), (1, 6, 8, 8, 8), (1, 6, 4, 4, 4)]
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 6,
        channels: Sequence[int] = (32, 64, 128, 256, 320),
        strides=None,
        kernel_sizes=3,
        residual: bool = True,
        blocks_per_stage=1,
        deep_supervision: int = 4,
    ):
        super().__init__()
        n = len(channels)
        if n < 2:
            raise InputError(f"a U-Net needs at least 2 stages, got channels={tuple(channels)}")
        if strides is None:
            strides = [1] + [2] * (n - 1)
        if not 1 <= int(deep_supervision) <= n - 1:
            raise InputError(f"deep_supervision must be 1..{n - 1} for {n} stages, got {deep_supervision}")
        if int(in_channels) < 1 or int(n_classes) < 2:
            raise InputError(f"need in_channels >= 1 and n_classes >= 2, got {in_channels} and {n_classes}")
        self.encoder = UNetEncoder(in_channels, channels, strides, kernel_sizes, residual, blocks_per_stage)
        if self.encoder.strides[0] != (1, 1, 1):
            raise InputError(
                f"the first stage must not downsample (stride 1) so that the output is full resolution, "
                f"got {self.encoder.strides[0]}"
            )
        self.decoder = UNetDecoder(self.encoder, int(n_classes), int(deep_supervision))
        self.n_classes = int(n_classes)
        self.deep_supervision = int(deep_supervision)
        self.config = {
            "in_channels": int(in_channels),
            "n_classes": int(n_classes),
            "channels": [int(c) for c in channels],
            "strides": [list(s) for s in self.encoder.strides],
            "kernel_sizes": [list(k) for k in self.encoder.kernel_sizes],
            "residual": bool(residual),
            "blocks_per_stage": blocks_per_stage if isinstance(blocks_per_stage, int) else [int(b) for b in blocks_per_stage],
            "deep_supervision": int(deep_supervision),
        }

    @classmethod
    def from_config(cls, config: dict) -> "UNet3D":
        """Rebuild a network from :attr:`config` (as stored in a checkpoint)."""
        return cls(**config)

    @property
    def size_divisor(self) -> tuple[int, int, int]:
        """Product of the strides per axis ``(z, y, x)``: input sizes must be multiples of it."""
        out = [1, 1, 1]
        for s in self.encoder.strides:
            out = [a * b for a, b in zip(out, s)]
        return tuple(out)

    def output_scales(self) -> list[tuple[int, int, int]]:
        """Downsampling factor ``(z, y, x)`` of each deep-supervision output, full resolution first."""
        scales, cum = [], [1, 1, 1]
        for s in self.encoder.strides[: self.deep_supervision]:
            cum = [a * b for a, b in zip(cum, s)]
            scales.append(tuple(cum))
        return scales

    def forward(self, x: torch.Tensor):
        if x.ndim != 5:
            raise InputError(f"UNet3D expects (N, C, Z, Y, X) input, got shape {tuple(x.shape)}")
        div = self.size_divisor
        if any(n % d for n, d in zip(x.shape[2:], div)):
            raise InputError(f"input size (z, y, x) {tuple(x.shape[2:])} must be a multiple of {div} (the product of the strides)")
        outputs = self.decoder(self.encoder(x), self.deep_supervision if self.training else 1)
        return outputs if self.training else outputs[0]
