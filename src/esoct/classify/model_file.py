"""A trained T-stage classifier as one self-describing file: weights, topology and KRT input settings.

Training checkpoints (:mod:`esoct.train.checkpoint`) hold optimiser state and need the code that
built the model; this file holds what inference needs and nothing else, so a bundle or another
machine rebuilds the network from the file alone::

    save_classifier("model.pt", model, encoder={...}, krt={...})
    model, meta = load_classifier("model.pt")
"""

from __future__ import annotations

from pathlib import Path

import torch

from esoct.errors import InputError

FORMAT = "esoct-tstage4-classifier/1"


def encoder_spec(encoder) -> dict:
    """Topology of a :class:`esoct.models.unet3d.UNetEncoder` (channels, strides, kernel sizes, residual)."""
    from esoct.models.unet3d import ResidualBlock

    first = encoder.stages[0]
    residual = any(isinstance(m, ResidualBlock) for m in first.modules())
    return {"channels": list(encoder.channels), "strides": [list(s) for s in encoder.strides],
            "kernel_sizes": [list(k) for k in encoder.kernel_sizes], "residual": bool(residual)}


def save_classifier(path: str | Path, model, *, krt: dict, seg_encoder_residual: bool | None = None,
                    extra: dict | None = None) -> Path:
    """Write a :class:`~esoct.models.multitask.MultitaskClassifier` with what rebuilding it needs.

    Parameters
    ----------
    path : str or Path
        Destination (``.pt``); written atomically.
    model : MultitaskClassifier
        Trained model whose encoders are :class:`~esoct.models.unet3d.UNetEncoder`.
    krt : dict
        Input settings: ``size_zyx`` (voxels), ``spacing_zyx`` (mm), ``normalization`` (clip and
        z-score in HU, :func:`esoct.classify.krt.normalize_ct`).
    seg_encoder_residual : bool, optional
        Block type of the frozen segmentation encoder (only with gates; default: as the classifier's).
    extra : dict, optional
        Anything else to keep (class names, training settings).

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = encoder_spec(model.cls_encoder)
    seg_spec = None
    if model.use_gates:
        seg_spec = encoder_spec(model.seg_encoder)
        if seg_encoder_residual is not None:
            seg_spec["residual"] = bool(seg_encoder_residual)
    doc = {"format": FORMAT, "encoder": spec, "seg_encoder": seg_spec, "gates": bool(model.use_gates),
           "n_classes": int(model.head.fc2.out_features), "hidden": int(model.head.fc1.out_features), "krt": dict(krt), "extra": dict(extra or {}),
           "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(doc, tmp)
    tmp.replace(path)
    return path


def load_classifier(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a classifier written by :func:`save_classifier`.

    Parameters
    ----------
    path : str or Path
        The ``.pt`` file.
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    model : MultitaskClassifier
        In eval mode.
    meta : dict
        ``krt`` input settings, ``extra``, ``encoder`` topology, ``n_classes``.

    Raises
    ------
    InputError
        Not such a file, or weights that do not fit the stored topology.
    """
    from esoct.models.multitask import MultitaskClassifier, stage_channels
    from esoct.models.unet3d import UNetEncoder
    from esoct.train.checkpoint import safe_load

    path = Path(path)
    if not path.is_file():
        raise InputError("classifier file not found", path)
    try:
        doc = safe_load(path)  # tensors, plain values and arrays: no code runs
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise InputError(f"not a readable classifier file ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"not an esoct T-stage classifier file (expected format {FORMAT})", path)

    def build(spec):
        return UNetEncoder(1, spec["channels"], spec["strides"], spec["kernel_sizes"], residual=spec["residual"])

    cls_encoder = build(doc["encoder"])
    seg_encoder = build(doc["seg_encoder"]) if doc["gates"] else None
    n_classes = int(doc["n_classes"] or 4)
    model = MultitaskClassifier(seg_encoder, cls_encoder, stage_channels(cls_encoder), gates=doc["gates"],
                                n_classes=n_classes, hidden=int(doc["hidden"]))
    try:
        model.load_state_dict(doc["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"weights do not fit the stored topology: {exc}", path) from None
    model.to(device).eval()
    meta = {k: doc[k] for k in ("krt", "extra", "encoder", "seg_encoder", "gates", "hidden")}
    meta["n_classes"] = n_classes
    return model, meta
