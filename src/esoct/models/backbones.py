"""2D ResNet-18 backbone (MONAI) with a configurable number of input channels and local weights.

No weights can be downloaded here, so a backbone starts from scratch unless the user gives a
local file; :func:`load_backbone_weights` loads one with clear messages for what does not fit.
"""

from __future__ import annotations

from pathlib import Path

import torch
from monai.networks.nets import resnet18
from torch import nn

from esoct.errors import InputError


def resnet18_2d(in_channels: int = 1, width: float = 1.0, weights: str | Path | None = None) -> nn.Module:
    """A 2D ResNet-18 feature extractor: ``(N, C, H, W)`` -> global-average-pooled features ``(N, F)``.

    MONAI's ResNet with ``feed_forward=False`` (no classification layer), a 7x7 stride-2 first
    convolution and max pooling, as torchvision's ImageNet ResNet-18.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for a CT slice, 7 for the 2.5D slab).
    width : float
        Channel multiplier of MONAI's ``widen_factor``; 1.0 is the standard ResNet-18
        (F = 512 features); tests use 0.125 (F = 64) to run in seconds on a CPU.
    weights : str or Path, optional
        Local weights file loaded with :func:`load_backbone_weights`.

    Returns
    -------
    torch.nn.Module
        With attribute ``out_features`` (F).
    """
    if in_channels < 1:
        raise InputError(f"in_channels must be >= 1, got {in_channels}")
    model = resnet18(
        spatial_dims=2,
        n_input_channels=in_channels,
        conv1_t_size=7,
        conv1_t_stride=2,
        widen_factor=width,
        feed_forward=False,
        num_classes=1,
    )
    model.out_features = int(512 * width)
    if weights is not None:
        load_backbone_weights(model, weights)
    return model


def load_backbone_weights(model: nn.Module, path: str | Path, strict: bool = True) -> dict:
    """Load a local weights file into a backbone, adapting the first convolution's input channels.

    Accepts a plain ``state_dict`` or a checkpoint with a ``state_dict`` / ``model`` entry, strips
    ``module.`` (DataParallel) and ``backbone.`` prefixes, ignores classifier weights (``fc.*``),
    and when the first convolution was trained on a different number of channels (e.g. RGB
    ImageNet weights for a 7-channel slab) replaces it by the channel mean repeated, scaled by
    ``c_old / c_new`` so that activations keep their magnitude (the usual practice for
    multi-channel medical inputs).

    Parameters
    ----------
    model : torch.nn.Module
        Backbone from :func:`resnet18_2d`.
    path : str or Path
        Weights file (``torch.save`` format; loaded with ``weights_only=True``).
    strict : bool
        Refuse files that lack parameters of the model or carry unknown ones.

    Returns
    -------
    dict
        ``{"adapted": [names], "ignored": [names]}``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("weights file not found", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise InputError(f"cannot read weights ({type(exc).__name__}: {exc})", path) from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InputError("weights file does not hold a state_dict", path)
    state = {_strip(k): v for k, v in state.items()}
    ignored = [k for k in state if k.startswith("fc.")]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = model.state_dict()
    adapted = []
    conv = state.get("conv1.weight")
    if conv is not None and conv.shape != own["conv1.weight"].shape and conv.shape[0] == own["conv1.weight"].shape[0]:
        c_old, c_new = conv.shape[1], own["conv1.weight"].shape[1]
        state["conv1.weight"] = conv.mean(dim=1, keepdim=True).repeat(1, c_new, 1, 1) * (c_old / c_new)
        adapted.append("conv1.weight")
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if wrong:
        k = wrong[0]
        raise InputError(
            f"{len(wrong)} tensors do not fit the model, e.g. {k}: file {tuple(state[k].shape)} vs model "
            f"{tuple(own[k].shape)} (a ResNet-18 of another width?)",
            path,
        )
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        raise InputError(
            f"weights do not match a ResNet-18: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})",
            path,
        )
    model.load_state_dict(state, strict=False)
    return {"adapted": adapted, "ignored": ignored}


def _strip(key: str) -> str:
    for prefix in ("module.", "backbone.", "encoder."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key
