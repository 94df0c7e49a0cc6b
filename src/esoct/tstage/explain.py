"""Explanations of the T-stage models: t-SNE of the LSTM features and Grad-CAM on ResNet layer4.

Grad-CAM needs gradients of the class score with respect to layer4's activations, so a backward
pass runs through the LSTM while the model is in eval mode (BatchNorm and dropout frozen). cuDNN
refuses that on a GPU ("cudnn RNN backward can only be called in training mode"), so
:func:`grad_cam` runs the pass inside ``torch.backends.cudnn.flags(enabled=False)``: PyTorch's
native LSTM kernels do the backward instead (same numbers, slower). On a CPU the flag changes
nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from esoct.errors import InputError
from esoct.tstage.data import SequenceDataset, SequenceSet, pad_collate

#: Grad-CAM target: layer4 of the per-slice ResNet-18 (the paper's choice).
TARGET_LAYER = "encoder.resnet.layer4"


def sequence_features(model: nn.Module, sequences: SequenceSet, batch_size: int = 8) -> np.ndarray:
    """Per-patient features ``(P, D)``: the last LSTM state (ResoLSTM-Depth, D = 128) or the mean
    pooled ResNet features (ResNet-18 baseline), in ``sequences`` order."""
    from torch.utils.data import DataLoader

    device = next(model.parameters()).device
    model.eval()
    out = []
    loader = DataLoader(SequenceDataset(sequences), batch_size=batch_size, shuffle=False, collate_fn=pad_collate)
    with torch.no_grad():
        for batch in loader:
            out.append(model.features(batch["x"].to(device), batch["lengths"]).float().cpu().numpy())
    return np.concatenate(out)


def tsne_embedding(features: np.ndarray, seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """Two-dimensional t-SNE (scikit-learn) of standardised features.

    Parameters
    ----------
    features : numpy.ndarray, (P, D)
    seed : int
    perplexity : float, optional
        Default ``min(30, (P - 1) / 3)`` (t-SNE needs perplexity < P).

    Returns
    -------
    numpy.ndarray, (P, 2)
    """
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 4:
        raise InputError(f"t-SNE needs a (patients, features) array with at least 4 patients, got shape {x.shape}")
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    perplexity = min(30.0, (len(x) - 1) / 3.0) if perplexity is None else perplexity
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def plot_tsne(model: nn.Module, sequences: SequenceSet, path: str | Path | None = None, *, test_ids=None,
              seed: int = 0, title: str | None = None):
    """t-SNE of the model's patient features, coloured by true class.

    Filled markers: ``test_ids`` (patients the model never saw); hollow: its training patients.

    Returns
    -------
    esoct.report.figures.PlotResult
        ``data``: ``embedding`` (P, 2), ``labels``, ``patient_ids``.
    """
    from esoct.report.figures import PlotResult
    from esoct.report.style import PALETTE, esoct_style, new_figure, save_figure

    emb = tsne_embedding(sequence_features(model, sequences), seed=seed)
    test = np.array([p in set(test_ids or ()) for p in sequences.patient_ids])
    with esoct_style():
        fig = new_figure((5.2, 4.6), layout="constrained")
        ax = fig.add_subplot()
        for c, name in enumerate(sequences.class_names):
            sel = sequences.labels == c
            colour = PALETTE[c % len(PALETTE)]
            ax.scatter(emb[sel & test, 0], emb[sel & test, 1], s=26, color=colour, label=f"{name} (test)")
            if (sel & ~test).any():
                ax.scatter(emb[sel & ~test, 0], emb[sel & ~test, 1], s=22, facecolors="none", edgecolors=colour,
                           linewidths=0.9, label=f"{name} (training)")
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.legend(loc="best")
        if title:
            ax.set_title(title)
    paths = save_figure(fig, path) if path is not None else []
    return PlotResult(fig, ax, {"embedding": emb, "labels": sequences.labels, "patient_ids": sequences.patient_ids},
                      paths)


def grad_cam(model: nn.Module, images, class_idx: int | None = None) -> np.ndarray:
    """Grad-CAM of one patient on ResNet layer4, with MONAI's :class:`monai.visualize.GradCAM`.

    The whole sequence goes through the model (the LSTM included) in eval mode, the score of
    ``class_idx`` is back-propagated to layer4, and each slice's map is
    ``ReLU(sum_c mean(grad_c) * activation_c)`` (MONAI's ``compute_map``), upsampled bilinearly to
    the slice size and divided by the largest value over the patient's slices, so maps of
    different slices are comparable. cuDNN is disabled for the pass (module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        A trained T-stage model (not modified: hooks go on a copy).
    images : numpy.ndarray or torch.Tensor, (S, H, W) or (S, C, H, W)
        One patient's ROIs, head to foot.
    class_idx : int, optional
        Class to explain; default the predicted class.

    Returns
    -------
    numpy.ndarray, (S, H, W) float32 in [0, 1]
    """
    from monai.visualize import GradCAM

    x = torch.as_tensor(np.asarray(images, dtype=np.float32) if not torch.is_tensor(images) else images).float()
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise InputError(f"expected one sequence (S, H, W) or (S, C, H, W), got shape {tuple(x.shape)}")
    net = copy.deepcopy(model).eval()
    device = next(net.parameters()).device
    x = x[None].to(device)  # (1, S, C, H, W)
    cam = GradCAM(nn_module=net, target_layers=TARGET_LAYER)
    with torch.backends.cudnn.flags(enabled=False):
        raw = cam.compute_map(x, class_idx=class_idx)  # (S, 1, h, w)
    maps = F.interpolate(raw.detach().float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    top = float(maps.max())
    maps = maps / top if top > 0 else torch.zeros_like(maps)
    return maps.cpu().numpy().astype(np.float32)


def pick_cases(predictions: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """Correctly and wrongly classified patients to show: the ``n`` most confident of each.

    Parameters
    ----------
    predictions : pandas.DataFrame
        One model's rows of ``predictions.csv`` (``y_true``, ``y_pred``, ``p_<class>``, ``fold``).
    n : int

    Returns
    -------
    pandas.DataFrame
        The chosen rows with a ``status`` column (``"correct"`` / ``"wrong"``) and ``confidence``
        (probability of the predicted class).
    """
    p = predictions.copy()
    prob_cols = [c for c in p.columns if c.startswith("p_")]
    if not len(p):
        return p
    p["confidence"] = p[prob_cols].to_numpy()[np.arange(len(p)), p["y_pred"].to_numpy()]
    p["status"] = np.where(p["y_true"] == p["y_pred"], "correct", "wrong")
    chosen = []
    for status in ("correct", "wrong"):
        g = p[p["status"] == status].sort_values("confidence", ascending=False)
        if status == "correct":  # one of each true class first
            g = g.groupby("y_true", group_keys=False).head(max(1, n // max(1, g["y_true"].nunique()) + 1))
            g = g.sort_values(["confidence"], ascending=False)
        chosen.append(g.head(n))
    return pd.concat(chosen, ignore_index=True)


def plot_grad_cam_cases(models: dict, cases: pd.DataFrame, sequences: SequenceSet, path: str | Path | None = None,
                        *, title: str | None = None, alpha: float = 0.45):
    """CT slices (top row) and Grad-CAM overlays (bottom row) of chosen patients.

    For each patient the slice with the largest mean Grad-CAM is shown, its map scaled from its own
    minimum (blue) to its maximum (red), as the paper's attention maps. Layer4 has stride 32, so the
    map has ``H / 32`` cells per side (2 at the ``fast`` preset's 64 px, 7 at 224 px).

    Parameters
    ----------
    models : dict of int to torch.nn.Module
        Fold (1-based) -> that fold's model (each patient is explained by the model that did not
        see it in training).
    cases : pandas.DataFrame
        From :func:`pick_cases`.
    sequences : SequenceSet
    path : str or Path, optional
    title : str, optional
    alpha : float
        Overlay opacity.

    Returns
    -------
    esoct.report.figures.PlotResult
        ``data``: ``maps`` (patient -> (S, H, W) array), ``slices`` (patient -> shown slice index).
    """
    from esoct.report.figures import PlotResult
    from esoct.report.style import esoct_style, new_figure, save_figure

    index = {p: i for i, p in enumerate(sequences.patient_ids)}
    names = sequences.class_names
    n = len(cases)
    maps, shown = {}, {}
    with esoct_style(**{"axes.grid": False}):
        fig = new_figure((2.1 * max(n, 1), 4.7), layout="constrained")
        axes = fig.subplots(2, max(n, 1), squeeze=False)
        for j, (_, case) in enumerate(cases.iterrows()):
            pid = case["patient_id"]
            seq = sequences.images[index[pid]]
            cam = grad_cam(models[int(case["fold"])], seq)
            k = int(np.argmax(cam.reshape(len(cam), -1).mean(axis=1)))
            maps[pid], shown[pid] = cam, k
            mark = "correct" if case["status"] == "correct" else "WRONG"
            axes[0, j].imshow(seq[k], cmap="gray", vmin=0, vmax=1)
            axes[0, j].set_title(f"{pid} slice {k + 1}/{len(seq)}\ntrue {names[int(case['y_true'])]}", fontsize=8)
            axes[1, j].imshow(seq[k], cmap="gray", vmin=0, vmax=1)
            shown_map = cam[k] - cam[k].min()
            shown_map = shown_map / shown_map.max() if shown_map.max() > 0 else shown_map
            axes[1, j].imshow(shown_map, cmap="jet", vmin=0, vmax=1, alpha=alpha)
            axes[1, j].set_title(f"{mark}: pred {names[int(case['y_pred'])]}\np = {case['confidence']:.2f}",
                                 fontsize=8, color="black" if mark == "correct" else "#D55E00")
            for ax in axes[:, j]:
                ax.set_xticks([])
                ax.set_yticks([])
        if title:
            fig.suptitle(title)
    paths = save_figure(fig, path) if path is not None else []
    return PlotResult(fig, axes, {"maps": maps, "slices": shown}, paths)
