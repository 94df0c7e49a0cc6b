"""Segmentation metrics in mm: Dice, IoU, HD95 and ASSD per class, and volume agreement (Pearson, Bland-Altman).

Definitions (the same as MONAI 1.x, checked against it in the tests)
--------------------------------------------------------------------
* Masks are boolean arrays indexed ``(z, y, x)``; ``spacing`` is ``(z, y, x)`` in mm.
* **Surface** of a mask: its voxels that have at least one 6-connected (face) neighbour
  outside the mask; the space outside the array counts as background, so a mask touching
  the array border has a surface there. This is ``mask ^ binary_erosion(mask)`` with
  scipy's default cross-shaped structuring element, exactly MONAI's ``get_mask_edges``
  (``spacing=None`` / no sub-voxel edges).
* **Surface distances** from A to B: for every surface voxel of A, the Euclidean distance in
  mm between its centre and the nearest surface-voxel centre of B (not the nearest voxel of
  B: a voxel of A deep inside B has a distance > 0). Computed with
  ``scipy.ndimage.distance_transform_edt(~surface_B, sampling=spacing)`` on the bounding box
  of both masks plus one voxel (MONAI uses a KD-tree on the same points; the values agree
  to float precision).
* **HD95** = ``max(P95(d(pred -> ref)), P95(d(ref -> pred)))``: the 95th percentile of each
  directed set (linear interpolation, ``numpy.percentile``'s default and ``torch.quantile``'s),
  then the larger of the two. This is MONAI's ``compute_hausdorff_distance(percentile=95)``.
  MedPy's ``hd95`` instead takes the 95th percentile of the pooled set; the two can differ.
  ``percentile=100`` gives the classical Hausdorff distance of nn-TransEC's Table 5.
* **ASSD** = ``(sum d(pred -> ref) + sum d(ref -> pred)) / (|S_pred| + |S_ref|)``: the mean of
  both directed sets pooled, nn-TransEC's Table 5 and MONAI's
  ``compute_average_surface_distance(symmetric=True)``.
* **Dice** = ``2 TP / (2 TP + FP + FN)``; **IoU** = ``TP / (TP + FP + FN)``.

Empty masks
-----------
* Both empty: every metric is NaN (nothing to score; MONAI's Dice with ``ignore_empty=True``
  and its distances do the same). The per-class table says ``"both empty"`` in ``note``.
* Exactly one empty: Dice = IoU = 0 (the formula; MONAI's ``ignore_empty=False``), and HD95, HD
  and ASSD = ``inf``, as MONAI returns for HD and ASSD (MONAI's HD95 gives NaN there, because
  ``torch.quantile`` of ``inf`` values is NaN; esoct keeps ``inf``). ``note`` says
  ``"reference empty"`` or ``"prediction empty"``.
  Summaries over patients should report how many such cases there were rather than average
  an ``inf`` away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from esoct.errors import InputError
from esoct.io.volume import Volume

#: nn-TransEC classes of a label map (0 is background).
NN_TRANSEC_LABELS: dict[int, str] = {1: "tumour", 2: "aorta", 3: "esophagus", 4: "lymph_node", 5: "pericardium"}

_CROSS = ndimage.generate_binary_structure(3, 1)


# ---------------------------------------------------------------- building blocks


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a binary mask: voxels with a face neighbour outside the mask.

    Parameters
    ----------
    mask : numpy.ndarray of bool, shape (z, y, x)
        The mask; outside the array counts as background.

    Returns
    -------
    numpy.ndarray of bool
        Same shape; True on the surface (MONAI's ``get_mask_edges`` edges).
    """
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


def _check_pair(reference, prediction, spacing) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    ref = np.asarray(reference).astype(bool, copy=False)
    pred = np.asarray(prediction).astype(bool, copy=False)
    if ref.shape != pred.shape:
        raise InputError(f"reference and prediction masks differ in shape: {ref.shape} vs {pred.shape}")
    spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, dtype=float), (ref.ndim,)))
    if min(spacing) <= 0 or not all(math.isfinite(s) for s in spacing):
        raise InputError(f"spacing must be positive numbers in mm, one per axis, got {spacing}")
    return ref, pred, spacing


def _union_box(ref: np.ndarray, pred: np.ndarray, margin: int = 1) -> tuple[slice, ...] | None:
    """Bounding box of ``ref | pred`` plus ``margin`` voxels (clipped to the array), or None when both are empty."""
    boxes = [b for b in (ndimage.find_objects(ref.view(np.uint8))[:1] + ndimage.find_objects(pred.view(np.uint8))[:1]) if b]
    if not boxes:
        return None
    return _merge_boxes(boxes, ref.shape, margin)


def _merge_boxes(boxes, shape, margin: int) -> tuple[slice, ...]:
    return tuple(
        slice(max(min(b[i].start for b in boxes) - margin, 0), min(max(b[i].stop for b in boxes) + margin, shape[i]))
        for i in range(len(shape))
    )


def _directed(from_surface: np.ndarray, to_surface: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distances (mm) from every voxel of ``from_surface`` to the nearest voxel of ``to_surface``."""
    n_from = int(from_surface.sum())
    if n_from == 0:
        return np.empty(0)
    if not to_surface.any():
        return np.full(n_from, np.inf)
    return ndimage.distance_transform_edt(~to_surface, sampling=spacing)[from_surface]


def _distances_in_box(ref: np.ndarray, pred: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Both directed surface-distance sets of two masks already cropped to their union box."""
    s_ref, s_pred = surface_voxels(ref), surface_voxels(pred)
    return _directed(s_pred, s_ref, spacing), _directed(s_ref, s_pred, spacing)


def surface_distances(reference, prediction, spacing=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm, both ways.

    Parameters
    ----------
    reference, prediction : array-like of bool, shape (z, y, x)
        Binary masks on the same grid.
    spacing : float or sequence of float
        Voxel size in mm, ``(z, y, x)`` order (one number: isotropic).

    Returns
    -------
    pred_to_ref : numpy.ndarray
        For each surface voxel of ``prediction`` (C order), the distance to the nearest
        surface voxel of ``reference``; ``inf`` for all when ``reference`` is empty.
    ref_to_pred : numpy.ndarray
        The same from ``reference`` to ``prediction``.

    Notes
    -----
    Both masks are cropped to the bounding box of their union plus one voxel before the
    distance transforms; the result is exact (every surface voxel lies in the box).
    """
    ref, pred, spacing = _check_pair(reference, prediction, spacing)
    box = _union_box(ref, pred)
    if box is None:
        return np.empty(0), np.empty(0)
    return _distances_in_box(ref[box], pred[box], spacing)


def _hd(d1: np.ndarray, d2: np.ndarray, percentile: float) -> float:
    parts = [d for d in (d1, d2) if d.size]
    if not parts:
        return math.nan
    if any(np.isinf(d).any() for d in parts):
        return math.inf
    return float(max(np.percentile(d, percentile) for d in parts))


def _assd(d1: np.ndarray, d2: np.ndarray) -> float:
    n = d1.size + d2.size
    if n == 0:
        return math.nan
    return float((d1.sum() + d2.sum()) / n)


def _check_percentile(percentile: float) -> float:
    percentile = float(percentile)
    if not 0 <= percentile <= 100:
        raise InputError(f"percentile must be in [0, 100], got {percentile}")
    return percentile


# ---------------------------------------------------------------- single metrics


def dice(reference, prediction) -> float:
    """Dice coefficient ``2 TP / (2 TP + FP + FN)`` of two binary masks.

    Parameters
    ----------
    reference, prediction : array-like of bool
        Masks of the same shape.

    Returns
    -------
    float
        In [0, 1]; NaN when both masks are empty, 0 when exactly one is.

    References
    ----------
    Dice, L. R. (1945). Measures of the amount of ecologic association between species. Ecology, 26(3), 297-302.
    """
    ref, pred, _ = _check_pair(reference, prediction, 1.0)
    tp, n_ref, n_pred = _counts(ref, pred)
    return _dice(tp, n_ref, n_pred)


def iou(reference, prediction) -> float:
    """Intersection over union (Jaccard) ``TP / (TP + FP + FN)`` of two binary masks.

    Parameters
    ----------
    reference, prediction : array-like of bool
        Masks of the same shape.

    Returns
    -------
    float
        In [0, 1]; NaN when both masks are empty, 0 when exactly one is.
    """
    ref, pred, _ = _check_pair(reference, prediction, 1.0)
    tp, n_ref, n_pred = _counts(ref, pred)
    return _iou(tp, n_ref, n_pred)


def hausdorff_distance(reference, prediction, spacing=(1.0, 1.0, 1.0), percentile: float = 95.0) -> float:
    """Symmetric percentile Hausdorff distance (HD95 by default) in mm.

    Parameters
    ----------
    reference, prediction : array-like of bool, shape (z, y, x)
        Binary masks on the same grid.
    spacing : float or sequence of float
        Voxel size in mm, ``(z, y, x)``.
    percentile : float
        Percentile of each directed surface-distance set (100: the classical maximum).

    Returns
    -------
    float
        ``max(P(d(pred -> ref)), P(d(ref -> pred)))`` in mm (MONAI's definition); NaN when
        both masks are empty, ``inf`` when exactly one is.

    References
    ----------
    Huttenlocher, D. P., Klanderman, G. A., & Rucklidge, W. J. (1993). Comparing images using the Hausdorff
    distance. IEEE TPAMI, 15(9), 850-863.
    """
    percentile = _check_percentile(percentile)
    d1, d2 = surface_distances(reference, prediction, spacing)
    return _hd(d1, d2, percentile)


def average_symmetric_surface_distance(reference, prediction, spacing=(1.0, 1.0, 1.0)) -> float:
    """Average symmetric surface distance (ASSD) in mm.

    Parameters
    ----------
    reference, prediction : array-like of bool, shape (z, y, x)
        Binary masks on the same grid.
    spacing : float or sequence of float
        Voxel size in mm, ``(z, y, x)``.

    Returns
    -------
    float
        Mean of both directed surface-distance sets pooled (MONAI's
        ``compute_average_surface_distance(symmetric=True)``); NaN when both masks are empty,
        ``inf`` when exactly one is.
    """
    d1, d2 = surface_distances(reference, prediction, spacing)
    return _assd(d1, d2)


# ---------------------------------------------------------------- all metrics of one class


@dataclass(frozen=True)
class SegmentationScores:
    """Overlap, distance and volume metrics of one class.

    Attributes
    ----------
    dice, iou : float
        Overlap, in [0, 1].
    hd95_mm : float
        Percentile Hausdorff distance at the requested percentile (95 by default), mm.
    hd_mm : float
        Maximum (classical) Hausdorff distance, mm.
    assd_mm : float
        Average symmetric surface distance, mm.
    volume_ref_ml, volume_pred_ml : float
        Volumes of the reference and predicted masks, ml (voxel count x voxel volume / 1000).
    note : str
        ``""``, or why the values are NaN / inf: ``"both empty"``, ``"reference empty"``,
        ``"prediction empty"``.
    """

    dice: float
    iou: float
    hd95_mm: float
    hd_mm: float
    assd_mm: float
    volume_ref_ml: float
    volume_pred_ml: float
    note: str = ""

    def to_dict(self) -> dict:
        """The scores as a plain dict."""
        return asdict(self)


_BOTH_EMPTY = SegmentationScores(math.nan, math.nan, math.nan, math.nan, math.nan, 0.0, 0.0, "both empty")


def segmentation_scores(reference, prediction, spacing=(1.0, 1.0, 1.0), percentile: float = 95.0) -> SegmentationScores:
    """Dice, IoU, HD95, HD, ASSD and both volumes of one pair of binary masks.

    Parameters
    ----------
    reference, prediction : array-like of bool, shape (z, y, x)
        Binary masks on the same grid.
    spacing : float or sequence of float
        Voxel size in mm, ``(z, y, x)``.
    percentile : float
        Percentile of ``hd95_mm``.

    Returns
    -------
    SegmentationScores
        Surface distances are computed once and shared by HD95, HD and ASSD.
    """
    percentile = _check_percentile(percentile)
    ref, pred, spacing = _check_pair(reference, prediction, spacing)
    box = _union_box(ref, pred)
    if box is None:
        return _BOTH_EMPTY
    return _scores_in_box(ref[box], pred[box], spacing, percentile)


def _scores_in_box(ref: np.ndarray, pred: np.ndarray, spacing, percentile) -> SegmentationScores:
    """Scores of two masks cropped to (at least) the bounding box of their union."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    tp, n_ref, n_pred = _counts(ref, pred)
    d1, d2 = _distances_in_box(ref, pred, spacing)
    note = "reference empty" if n_ref == 0 else "prediction empty" if n_pred == 0 else ""
    return SegmentationScores(
        dice=_dice(tp, n_ref, n_pred),
        iou=_iou(tp, n_ref, n_pred),
        hd95_mm=_hd(d1, d2, percentile),
        hd_mm=_hd(d1, d2, 100.0),
        assd_mm=_assd(d1, d2),
        volume_ref_ml=n_ref * voxel_ml,
        volume_pred_ml=n_pred * voxel_ml,
        note=note,
    )


def _counts(ref: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    return int(np.count_nonzero(ref & pred)), int(np.count_nonzero(ref)), int(np.count_nonzero(pred))


def _dice(tp: int, n_ref: int, n_pred: int) -> float:
    return math.nan if n_ref + n_pred == 0 else 2.0 * tp / (n_ref + n_pred)


def _iou(tp: int, n_ref: int, n_pred: int) -> float:
    union = n_ref + n_pred - tp
    return math.nan if union == 0 else tp / union


# ---------------------------------------------------------------- label maps


def _as_volume(x, role: str, patient: str | None) -> tuple[Volume, str]:
    """A Volume and how to name it in errors (its path, or the file name it was read from)."""
    if isinstance(x, Volume):
        return x, str(x.meta.get("source", f"{role} volume"))
    if isinstance(x, (str, Path)):
        from esoct.io.imageio import read_image

        return read_image(x, patient=patient), str(x)
    raise InputError(f"{role} must be a Volume or an image path, got {type(x).__name__}", patient=patient)


def _check_labels(array: np.ndarray, name: str, patient: str | None) -> np.ndarray:
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InputError("label map values are not integers", name, patient)
        array = array.astype(np.int64)
    elif not np.issubdtype(array.dtype, np.integer) and array.dtype != bool:
        raise InputError(f"label map has non-numeric type {array.dtype}", name, patient)
    if array.size and array.min() < 0:
        raise InputError("label map has negative values", name, patient)
    return array


def segmentation_table(
    reference,
    prediction,
    labels: Mapping[int, str] | Sequence[int] | None = NN_TRANSEC_LABELS,
    *,
    percentile: float = 95.0,
    spacing: Sequence[float] | None = None,
    patient: str | None = None,
    atol: float = 1e-3,
) -> pd.DataFrame:
    """Per-class Dice, IoU, HD95, HD, ASSD and volumes of a reference and a predicted label map.

    Parameters
    ----------
    reference, prediction : Volume or str or Path
        Label maps (integers, 0 = background) on the same grid; paths are read with
        :func:`esoct.io.imageio.read_image`.
    labels : mapping int -> name, sequence of int, or None
        Classes to score (default: the nn-TransEC classes 1-5). None: every label > 0
        present in either map, named ``label_<k>``.
    percentile : float
        Percentile of the ``hd95_mm`` column.
    spacing : sequence of float, optional
        Override the volumes' spacing, mm, ``(z, y, x)`` (default: the reference's).
    patient : str, optional
        Pseudonymous id, named in errors and written to a ``patient_id`` column.
    atol : float
        Geometry tolerance (mm for spacing and origin, unitless for direction).

    Returns
    -------
    pandas.DataFrame
        One row per class: ``label``, ``name``, ``dice``, ``iou``, ``hd95_mm``, ``hd_mm``,
        ``assd_mm``, ``volume_ref_ml``, ``volume_pred_ml``, ``note`` (see the module docstring
        for empty masks), preceded by ``patient_id`` when ``patient`` is given.

    Raises
    ------
    InputError
        The maps are not on the same grid (size, spacing, origin or direction differ; the
        message names both files and the differences), or hold non-integer or negative values.

    Notes
    -----
    Each class is cropped to the bounding box of its reference and predicted voxels plus one
    voxel (found in one pass over each map with ``scipy.ndimage.find_objects``) before any
    counting or distance transform, so a 512 x 512 x N map costs little more than its classes'
    boxes.
    """
    percentile = _check_percentile(percentile)
    ref_vol, ref_name = _as_volume(reference, "reference", patient)
    pred_vol, pred_name = _as_volume(prediction, "prediction", patient)
    differences = ref_vol.geometry_differences(pred_vol, atol=atol)
    if differences:
        raise InputError(
            f"prediction {pred_name} is not on the grid of reference {ref_name} (prediction vs reference): "
            + "; ".join(differences),
            pred_name,
            patient,
        )
    ref = _check_labels(ref_vol.array, ref_name, patient)
    pred = _check_labels(pred_vol.array, pred_name, patient)
    spacing = tuple(float(s) for s in (ref_vol.spacing if spacing is None else spacing))
    ref_boxes = ndimage.find_objects(_for_find_objects(ref))
    pred_boxes = ndimage.find_objects(_for_find_objects(pred))
    names = _label_names(labels, ref_boxes, pred_boxes)
    rows = []
    for label, name in names.items():
        boxes = [b[label - 1] for b in (ref_boxes, pred_boxes) if label <= len(b) and b[label - 1] is not None]
        if boxes:
            box = _merge_boxes(boxes, ref.shape, 1)
            scores = _scores_in_box(ref[box] == label, pred[box] == label, spacing, percentile)
        else:
            scores = _BOTH_EMPTY
        rows.append({"label": int(label), "name": name, **scores.to_dict()})
    table = pd.DataFrame(rows, columns=["label", "name", *SegmentationScores.__dataclass_fields__])
    if patient is not None:
        table.insert(0, "patient_id", str(patient))
    return table


def _for_find_objects(array: np.ndarray) -> np.ndarray:
    """An integer view/copy that ``find_objects`` accepts (it refuses bool and float)."""
    if array.dtype == bool:
        return array.view(np.uint8)
    return array


def _label_names(labels, ref_boxes, pred_boxes) -> dict[int, str]:
    if labels is None:
        present = sorted(
            {i + 1 for i, b in enumerate(ref_boxes) if b is not None} | {i + 1 for i, b in enumerate(pred_boxes) if b is not None}
        )
        return {k: f"label_{k}" for k in present}
    if isinstance(labels, Mapping):
        out = {int(k): str(v) for k, v in labels.items()}
    else:
        out = {int(k): f"label_{int(k)}" for k in labels}
    bad = [k for k in out if k < 1]
    if bad:
        raise InputError(f"labels to score must be >= 1 (0 is background), got {bad}")
    return out


def label_volumes_ml(volume: Volume, labels: Mapping[int, str] | Sequence[int] = NN_TRANSEC_LABELS) -> dict[int, float]:
    """Volume of each class of a label map, ml.

    Parameters
    ----------
    volume : Volume
        Label map.
    labels : mapping or sequence of int
        Classes to measure.

    Returns
    -------
    dict int -> float
        Voxel count x voxel volume (mm^3) / 1000.
    """
    keys = [int(k) for k in labels]
    array = np.asarray(volume.array)
    counts = np.bincount(array.ravel().astype(np.intp, copy=False), minlength=max(keys) + 1) if array.size else np.zeros(max(keys) + 1)
    return {k: float(counts[k]) * volume.voxel_volume_mm3 / 1000.0 for k in keys}


# ---------------------------------------------------------------- agreement across patients


@dataclass(frozen=True)
class VolumeAgreement:
    """Agreement of predicted and reference volumes across patients.

    Attributes
    ----------
    n : int
        Number of patients.
    pearson_r, p_value : float
        Pearson correlation of predicted vs reference volume and its two-sided p-value
        (``scipy.stats.pearsonr``); NaN when either set of volumes is constant.
    slope, intercept : float
        Least-squares line ``predicted = slope * reference + intercept`` (intercept in ml).
    mean_difference_ml : float
        Bland-Altman bias: mean of ``predicted - reference``, ml.
    sd_difference_ml : float
        Sample standard deviation (``ddof=1``) of the differences, ml.
    loa_low_ml, loa_high_ml : float
        95 % limits of agreement ``mean_difference_ml -/+ 1.96 sd_difference_ml``, ml.
    """

    n: int
    pearson_r: float
    p_value: float
    slope: float
    intercept: float
    mean_difference_ml: float
    sd_difference_ml: float
    loa_low_ml: float
    loa_high_ml: float

    def to_dict(self) -> dict:
        """The statistics as a plain dict."""
        return asdict(self)


def _volumes(x, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=float).ravel()
    if n is not None and arr.size != n:
        raise InputError(f"{name} has {arr.size} values, expected {n} (one per patient)")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} has {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    if (arr < 0).any():
        raise InputError(f"{name} has negative volumes")
    return arr


def volume_agreement(reference_ml, predicted_ml) -> VolumeAgreement:
    """Pearson correlation and Bland-Altman statistics of predicted vs reference volumes.

    Parameters
    ----------
    reference_ml : array-like of float
        Reference (manual) volume of each patient, ml.
    predicted_ml : array-like of float
        Predicted volume of the same patients, same order, ml.

    Returns
    -------
    VolumeAgreement
        Differences are ``predicted - reference``, so a positive bias means over-segmentation.

    Raises
    ------
    InputError
        Fewer than 3 patients, different lengths, or NaN / negative volumes.

    References
    ----------
    Bland, J. M., & Altman, D. G. (1986). Statistical methods for assessing agreement between two methods of
    clinical measurement. The Lancet, 327(8476), 307-310.
    """
    from scipy import stats

    ref = _volumes(reference_ml, "reference_ml")
    pred = _volumes(predicted_ml, "predicted_ml", ref.size)
    if ref.size < 3:
        raise InputError(f"volume agreement needs at least 3 patients, got {ref.size}")
    diff = pred - ref
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    if np.ptp(ref) == 0 or np.ptp(pred) == 0:
        r = p = slope = intercept = math.nan
    else:
        res = stats.pearsonr(ref, pred)
        r, p = float(res.statistic), float(res.pvalue)
        slope, intercept = (float(v) for v in np.polyfit(ref, pred, 1))
    return VolumeAgreement(
        n=int(ref.size), pearson_r=r, p_value=p, slope=slope, intercept=intercept,
        mean_difference_ml=mean, sd_difference_ml=sd, loa_low_ml=mean - 1.96 * sd, loa_high_ml=mean + 1.96 * sd,
    )


def cohort_volume_agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Volume agreement of every class from per-patient segmentation tables.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`segmentation_table` for several patients concatenated: at least
        ``label``, ``name``, ``volume_ref_ml`` and ``volume_pred_ml``.

    Returns
    -------
    pandas.DataFrame
        One row per class (``label``, ``name``, then the :class:`VolumeAgreement` fields),
        computed over the patients whose reference or prediction is not empty.
    """
    needed = {"label", "name", "volume_ref_ml", "volume_pred_ml"}
    missing = needed - set(table.columns)
    if missing:
        raise InputError(f"table lacks columns {sorted(missing)} (concatenate segmentation_table outputs)")
    rows = []
    for (label, name), group in table.groupby(["label", "name"], sort=True):
        group = group[(group["volume_ref_ml"] > 0) | (group["volume_pred_ml"] > 0)]
        stats = volume_agreement(group["volume_ref_ml"], group["volume_pred_ml"]).to_dict()
        rows.append({"label": int(label), "name": name, **stats})
    return pd.DataFrame(rows)
