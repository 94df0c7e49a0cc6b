"""Classifier inputs: the KRT crop around the predicted tumour, the downsampled whole volume, CT normalisation.

nn-TransEC section 3.4: the box is centred on the tumour of the *predicted* label map (or the
reference mask) and has the planned size; where it leaves the scan the CT is padded with air.
The geometry and padding are those of :func:`esoct.preprocess.roi.krt.krt_box`, which this module
reuses.
"""

from __future__ import annotations

import warnings

import numpy as np

from esoct.errors import InputError
from esoct.io.volume import Volume
from esoct.preprocess.resample import AIR_HU
from esoct.preprocess.roi.krt import KrtBox, krt_box
from esoct.preprocess.roi.pipelines import krt_inputs

#: Label of the tumour and of the esophagus in nn-TransEC label maps.
TUMOUR_LABEL, ESOPHAGUS_LABEL = 1, 3

#: Fixed CT normalisation used when no plan is given: clip to [-200, 300] HU, then (HU - 50) / 250.
DEFAULT_NORMALIZATION = {"scheme": "CT", "clip_low": -200.0, "clip_high": 300.0, "mean": 50.0, "std": 250.0}


def krt_crop(
    image: Volume,
    labels: Volume,
    size_zyx=(128, 64, 64),
    *,
    spacing_zyx=None,
    label: int = TUMOUR_LABEL,
    fill: float = AIR_HU,
    fallback_label: int | None = 3,
    patient: str | None = None,
) -> KrtBox:
    """Crop the CT around the centre of the predicted tumour (nn-TransEC KRT).

    The centre is the tumour's centre of mass, rounded half up to a voxel index ``c``; the box
    spans ``c - size // 2`` to ``c - size // 2 + size - 1`` on each axis, so ``c`` lands at box
    voxel ``size // 2``. Image voxels outside the scan get ``fill`` (air), label voxels 0.

    Parameters
    ----------
    image : Volume
        CT in HU, array ``(z, y, x)``.
    labels : Volume
        Label map on the image grid: a segmentation prediction or the reference mask
        (1 tumour, 3 esophagus, ...).
    size_zyx : tuple of int
        Box size in voxels ``(z, y, x)``, e.g. ``Plan.krt_crop_size``.
    spacing_zyx : tuple of float, optional
        Resample the region around the tumour to this spacing (mm, ``(z, y, x)``) first, e.g.
        ``Plan.target_spacing``; ``None`` crops on the image grid.
    label : int
        Tumour label.
    fill : float
        Image value outside the scan (HU).
    fallback_label : int or None
        When the label map has no tumour, centre the box on this label instead (default 3, the
        esophagus, as issue 6 specifies) and warn naming the patient; ``None`` makes an empty
        tumour an error.
    patient : str, optional
        Named in errors and warnings.

    Returns
    -------
    KrtBox
        ``image`` (float32 HU or the image dtype) and ``labels`` crops of shape ``size_zyx`` with
        exact geometry, ``center_index`` (source index of the box centre), ``start_index``.

    Raises
    ------
    InputError
        No tumour voxel (and no usable fallback), or image and label grids differ.
    """
    size = tuple(int(v) for v in np.asarray(size_zyx).reshape(3))
    if not isinstance(image, Volume) or not isinstance(labels, Volume):
        raise TypeError("image and labels must be esoct Volume objects (geometry is needed)")
    if not np.any(labels.array == label):
        source = labels.meta.get("source")
        if fallback_label is None or not np.any(labels.array == fallback_label):
            extra = "" if fallback_label is None else f" nor label {fallback_label} (the fallback)"
            raise InputError(
                f"the label map has no tumour voxel (label {label}){extra}: the KRT box cannot be placed; check the "
                "segmentation of this patient or give the reference mask",
                source,
                patient,
            )
        who = f"patient {patient}: " if patient else ""
        warnings.warn(f"{who}no tumour (label {label}) in the label map; the KRT box is centred on label "
                      f"{fallback_label} instead", UserWarning, stacklevel=2)
        label = fallback_label
    if spacing_zyx is not None:
        return krt_inputs(image, labels, spacing_zyx=spacing_zyx, size_zyx=size, label=label, patient=patient)
    return krt_box(image, labels, size_zyx=size, center="mass", label=label, fill_image=fill, patient=patient)


def krt_from_plan(image: Volume, labels: Volume, plan, *, resample: bool = True, **kwargs) -> KrtBox:
    """:func:`krt_crop` with the plan's box size (``krt_crop_size``) and, by default, its target spacing."""
    spacing = plan.target_spacing if resample else None
    return krt_crop(image, labels, plan.krt_crop_size, spacing_zyx=spacing, **kwargs)


def whole_volume(image: Volume, size_zyx) -> np.ndarray:
    """The whole CT linearly resampled to ``size_zyx`` voxels (the "without KRT" input of Table 13).

    Parameters
    ----------
    image : Volume
        CT in HU, array ``(z, y, x)``.
    size_zyx : tuple of int
        Output shape; usually the KRT box size, so both inputs cost the same.

    Returns
    -------
    numpy.ndarray
        float32 HU, shape ``size_zyx``.
    """
    from scipy import ndimage

    size = np.asarray(size_zyx, dtype=int).reshape(3)
    arr = np.asarray(image.array, dtype=np.float32)
    zoom = size / np.asarray(arr.shape, dtype=float)
    out = ndimage.zoom(arr, zoom, order=1, mode="nearest", grid_mode=True)
    if out.shape != tuple(size):  # rounding guard: pad or cut by one voxel
        fixed = np.full(tuple(size), float(out.min()), np.float32)
        sl = tuple(slice(0, min(a, b)) for a, b in zip(out.shape, size))
        fixed[sl] = out[sl]
        out = fixed
    return out.astype(np.float32)


def normalize_ct(array, normalization: dict | None = None) -> np.ndarray:
    """nnU-Net CT normalisation: clip to ``[clip_low, clip_high]`` HU, then ``(HU - mean) / std``.

    The same normaliser as the segmentation network's (:meth:`esoct.segment.data.Preprocessing.normalise`).

    Parameters
    ----------
    array : array-like
        HU values, any shape (e.g. a crop ``(z, y, x)``).
    normalization : dict, optional
        ``Plan.normalization`` (keys ``clip_low``, ``clip_high``, ``mean``, ``std`` in HU); default
        :data:`DEFAULT_NORMALIZATION`.

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    from esoct.segment.data import Preprocessing

    n = DEFAULT_NORMALIZATION if normalization is None else normalization
    try:
        low, high, mean, std = (float(n[k]) for k in ("clip_low", "clip_high", "mean", "std"))
    except KeyError as exc:
        raise InputError(f"CT normalisation lacks {exc.args[0]!r}; expected clip_low, clip_high, mean, std") from None
    return Preprocessing((1.0, 1.0, 1.0), low, high, mean, std).normalise(array)
