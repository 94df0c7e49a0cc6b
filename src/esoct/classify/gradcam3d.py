"""3D Grad-CAM of the T-stage classifier on the last classification-encoder stage, and PNG overlays.

nn-TransEC section 4.6: the activations of the final convolutional stage are weighted by the
spatial mean of the class score's gradient, summed over channels, passed through ReLU,
upsampled (trilinear) to the crop and scaled to [0, 1] (Selvaraju et al. 2017). MONAI's
:class:`monai.visualize.GradCAM` computes it in 3D with the gated model (the gates act after the
hooked stage, so its gradient carries them); :func:`grad_cam_hooks` is the same computation in a
few lines of hooks, used when MONAI is unavailable and by the tests as a cross-check.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from esoct.errors import InputError
from esoct.models.multitask import T_STAGES


@dataclass
class GradCam:
    """A Grad-CAM map and the prediction it explains.

    Attributes
    ----------
    cam : numpy.ndarray
        ``(Z, Y, X)`` float32 in [0, 1], on the crop's grid.
    class_index : int
        Explained class (argmax unless given).
    proba : numpy.ndarray
        Softmax over the stages, shape ``(4,)``.
    layer : str
        Hooked module.
    method : str
        ``"monai"`` or ``"hooks"``.
    """

    cam: np.ndarray
    class_index: int
    proba: np.ndarray
    layer: str
    method: str


def _as_input(image, device) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(image, dtype=np.float32) if not torch.is_tensor(image) else image).float()
    if x.ndim == 3:
        x = x[None, None]
    if x.ndim != 5 or x.shape[:2] != (1, 1):
        raise InputError(f"Grad-CAM needs one crop of shape (Z, Y, X) or (1, 1, Z, Y, X), got {tuple(x.shape)}")
    return x.to(device)


def _minmax(t: torch.Tensor) -> torch.Tensor:
    lo = t.amin(dim=tuple(range(1, t.ndim)), keepdim=True)
    hi = t.amax(dim=tuple(range(1, t.ndim)), keepdim=True)
    return (t - lo) / torch.clamp(hi - lo, min=1e-12)


def grad_cam_3d(model: nn.Module, image, class_index: int | None = None, layer: str | None = None,
                method: str = "monai") -> GradCam:
    """Grad-CAM of one crop on the last stage of the classification encoder.

    Parameters
    ----------
    model : torch.nn.Module
        Trained classifier (:class:`esoct.models.multitask.MultitaskClassifier`); a copy is
        hooked, the model itself is left unchanged.
    image : array-like or torch.Tensor
        Normalised crop ``(Z, Y, X)`` (or ``(1, 1, Z, Y, X)``).
    class_index : int, optional
        Stage to explain (0 = T1); default the predicted one.
    layer : str, optional
        Module name to hook; default ``model.target_layer`` (last classification stage).
    method : {"monai", "hooks"}
        MONAI's GradCAM (falls back to the hooks when MONAI is not installed) or
        :func:`grad_cam_hooks`.

    Returns
    -------
    GradCam

    References
    ----------
    .. [1] Selvaraju, R.R., Cogswell, M., Das, A., Vedantam, R., Parikh, D., Batra, D. "Grad-CAM:
           visual explanations from deep networks via gradient-based localization", ICCV 2017,
           618-626.
    """
    device = next(model.parameters()).device
    x = _as_input(image, device)
    layer = layer or model.target_layer
    net = copy.deepcopy(model).eval()
    with torch.no_grad():
        proba = torch.softmax(net(x).float(), dim=1)[0].cpu().numpy()
    idx = int(proba.argmax()) if class_index is None else int(class_index)
    if not 0 <= idx < len(proba):
        raise InputError(f"class_index {class_index} is outside 0..{len(proba) - 1}")
    if method == "monai":
        try:
            from monai.visualize import GradCAM
        except ImportError:  # MONAI is optional: the same computation with our hooks
            method = "hooks"
    if method == "monai":
        cam = GradCAM(nn_module=net, target_layers=layer, postprocessing=_minmax)(x, class_idx=idx)
    elif method == "hooks":
        cam = grad_cam_hooks(net, x, idx, layer)
    else:
        raise InputError(f"method must be 'monai' or 'hooks', got {method!r}")
    return GradCam(cam[0, 0].detach().float().cpu().numpy(), idx, proba, layer, method)


def grad_cam_hooks(model: nn.Module, x: torch.Tensor, class_index: int, layer: str) -> torch.Tensor:
    """Grad-CAM with two hooks: ``relu(sum_c mean(dS/dA_c) A_c)``, trilinear to the input, min-max to [0, 1].

    Returns
    -------
    torch.Tensor
        ``(1, 1, Z, Y, X)``.
    """
    module = dict(model.named_modules()).get(layer)
    if module is None:
        raise InputError(f"the model has no module named {layer!r}")
    store = {}
    fwd = module.register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
    try:
        model.eval()
        model.zero_grad()
        score = model(x)[:, class_index].sum()
        act = store["a"]
        grad = torch.autograd.grad(score, act)[0]
    finally:
        fwd.remove()
    weights = grad.mean(dim=tuple(range(2, grad.ndim)), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[2:], mode="trilinear", align_corners=False)
    return _minmax(cam.detach())


def save_cam_overlays(
    image: np.ndarray,
    cam: np.ndarray,
    out_dir: str | Path,
    name: str = "gradcam",
    *,
    center_zyx=None,
    labels: np.ndarray | None = None,
    spacing_zyx=(1.0, 1.0, 1.0),
    title: str | None = None,
    window=None,
) -> dict[str, Path]:
    """Axial overlays of a Grad-CAM map on the crop: through the map's maximum and through the tumour centre.

    Parameters
    ----------
    image : numpy.ndarray
        Crop ``(Z, Y, X)`` (HU or normalised values).
    cam : numpy.ndarray
        Map ``(Z, Y, X)`` in [0, 1] (:func:`grad_cam_3d`).
    out_dir : str or Path
        Folder of the PNGs ``<name>_max.png`` and ``<name>_center.png``.
    name : str
        File stem.
    center_zyx : tuple of int, optional
        Tumour centre in crop voxels; default the crop centre ``shape // 2`` (where the KRT box
        puts the centre of mass of the tumour).
    labels : numpy.ndarray, optional
        Label crop ``(Z, Y, X)``; the tumour (label 1) is outlined.
    spacing_zyx : tuple of float
        Voxel size (mm), for the aspect ratio and the axes in mm.
    title : str, optional
        Title prefix (e.g. the patient and the predicted stage).
    window : tuple of float, optional
        Grey range of the image; default its 1st and 99th percentiles.

    Returns
    -------
    dict
        ``{"max": Path, "center": Path}``.
    """
    from esoct.report.style import esoct_style, new_figure, save_figure

    image, cam = np.asarray(image, dtype=float), np.asarray(cam, dtype=float)
    if image.ndim != 3 or image.shape != cam.shape:
        raise InputError(f"image {image.shape} and Grad-CAM map {cam.shape} must be (Z, Y, X) of the same shape")
    z_max = int(np.unravel_index(int(np.argmax(cam)), cam.shape)[0])
    center = tuple(int(v) for v in (np.asarray(cam.shape) // 2 if center_zyx is None else center_zyx))
    lo, hi = window if window is not None else np.percentile(image, [1, 99])
    dy, dx = float(spacing_zyx[1]), float(spacing_zyx[2])
    extent = (0, cam.shape[2] * dx, cam.shape[1] * dy, 0)
    paths = {}
    slices = (("max", z_max, "slice through the Grad-CAM maximum"),
              ("center", center[0], "slice through the tumour centre"))
    for key, z, what in slices:
        with esoct_style():
            fig = new_figure((8.6, 4.4), layout="constrained")
            ax_ct, ax_cam = fig.subplots(1, 2, sharex=True, sharey=True)
            for ax in (ax_ct, ax_cam):
                ax.imshow(image[z], cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
                if labels is not None and np.any(np.asarray(labels)[z] == 1):
                    yy = (np.arange(cam.shape[1]) + 0.5) * dy
                    xx = (np.arange(cam.shape[2]) + 0.5) * dx
                    ax.contour(xx, yy, (np.asarray(labels)[z] == 1).astype(float), levels=[0.5], colors="#00FF66",
                               linewidths=1.4)
                ax.plot((center[2] + 0.5) * dx, (center[1] + 0.5) * dy, marker="+", color="white", ms=11, mew=1.4)
                ax.set_xlabel("x (mm)")
                ax.grid(False)
            shown = np.ma.masked_less(cam[z], 0.1)  # the faintest tenth left out so the CT stays readable
            heat = ax_cam.imshow(shown, cmap="jet", alpha=0.5, vmin=0, vmax=1, extent=extent, interpolation="bilinear")
            ax_ct.set_ylabel("y (mm)")
            ax_ct.set_title("CT (green: tumour, +: box centre)", fontsize=9)
            ax_cam.set_title(f"Grad-CAM (max in this slice {cam[z].max():.2f})", fontsize=9)
            fig.suptitle(f"{title + ': ' if title else ''}{what} (z = {z} of {cam.shape[0]})", fontsize=10)
            fig.colorbar(heat, ax=ax_cam, fraction=0.046, pad=0.04, label="Grad-CAM (0-1)")
        paths[key] = save_figure(fig, Path(out_dir) / f"{name}_{key}.png")[0]
    return paths


def stage_name(index: int) -> str:
    """``"T1"``.. for a class index."""
    return T_STAGES[index]
