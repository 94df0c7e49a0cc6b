"""Lymph-node detection: per-node hits, sensitivity by size, false positives per patient, FROC, stations.

Definitions
-----------
* Label maps are integer arrays indexed ``(z, y, x)``; ``spacing`` is ``(z, y, x)`` in mm. The
  lymph-node class is ``label`` (4 in nn-TransEC: 0 background, 1 tumour, 2 aorta,
  3 esophagus, 4 lymph node, 5 pericardium). A boolean array is taken as the node mask itself.
* **Nodes** and **predicted components** are the 26-connected components
  (``scipy.ndimage.label`` with ``np.ones((3, 3, 3))``) of the reference and predicted node
  masks, numbered 1, 2, ... in scipy's label order (the order of their first voxel in C order).
* **Short axis** (:func:`short_axis_mm`): on the axial slice where the object is largest, the
  in-plane covariance of its voxel centres in mm plus ``spacing**2 / 12`` per axis (the
  variance of a uniform voxel); short axis = ``4 sqrt(smallest eigenvalue)``. For a filled
  ellipse with semi-axes ``a <= b`` the variance along ``a`` is ``a^2 / 4``, so this is ``2a``,
  the radiologist's short-axis diameter (RECIST 1.1 measures nodes by it).
* **Size bins** by short axis ``s``: ``"<5"`` (``s < 5``), ``"5-10"`` (``5 <= s <= 10``),
  ``">10"`` (``s > 10``) mm.
* **Hit rule**: a node and a predicted component *match* when their Dice exceeds ``min_dice``
  (0.1) **or** the component's centroid lies inside the node (the voxel nearest the
  centroid belongs to that node). A node is *detected* when any component matches it; a
  component is a *true positive* when it matches any node, otherwise a *false positive*.
  Several components hitting one node are all true positives (none counts as a false
  positive), and one component may hit several nodes.
* **Sensitivity** = detected nodes / nodes, pooled over patients, with a 95 % Wilson score
  interval; **FP per patient** = false-positive components / patients.
* **FROC** (:func:`froc`): the score of a component is its volume in mm^3, so an operating
  point is a minimum-volume post-processing threshold: components smaller than it are
  removed, a node stays detected while one of its matching components survives, and the
  false positives are the surviving unmatched components.

Node and component ids are per patient: ``matched_components`` / ``matched_nodes`` refer to
ids of the same ``patient_id``. Tables of several patients are built by calling
:func:`match_nodes` once per patient with ``patient=`` set and concatenating the frames.

References
----------
Eisenhauer, E. A., et al. (2009). New response evaluation criteria in solid tumours: revised
RECIST guideline (version 1.1). European Journal of Cancer, 45(2), 228-247.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from esoct.errors import InputError
from esoct.evaluate.threshold import wilson_ci

#: Size bins by short-axis diameter (mm), in reporting order.
SIZE_BINS: tuple[str, ...] = ("<5", "5-10", ">10")

#: 26-connectivity.
_FULL = np.ones((3, 3, 3), dtype=bool)

NODE_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "node",
    "volume_mm3",
    "short_axis_mm",
    "size_bin",
    "z_mm",
    "y_mm",
    "x_mm",
    "detected",
    "dice",
    "station",
    "matched_components",
)
PREDICTION_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "component",
    "volume_mm3",
    "short_axis_mm",
    "z_mm",
    "y_mm",
    "x_mm",
    "true_positive",
    "matched_nodes",
)


# ---------------------------------------------------------------- checks and building blocks


def _check_spacing(spacing, ndim: int = 3, patient: str | None = None) -> tuple[float, ...]:
    try:
        values = np.broadcast_to(np.asarray(spacing, dtype=float), (ndim,))
    except (TypeError, ValueError):
        raise InputError(f"spacing must be {ndim} positive numbers in mm, (z, y, x), got {spacing!r}", patient=patient) from None
    out = tuple(float(s) for s in values)
    if not all(math.isfinite(s) and s > 0 for s in out):
        raise InputError(f"spacing must be {ndim} positive numbers in mm, (z, y, x), got {out}", patient=patient)
    return out


def _node_mask(array, label: int, name: str, patient: str | None) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputError(f"{name} must be a 3-D (z, y, x) array, got shape {array.shape}", patient=patient)
    if array.dtype == bool:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"{name} label map has non-numeric type {array.dtype}", patient=patient)
    return array == label


def _components(mask: np.ndarray) -> tuple[np.ndarray, int, list[tuple[slice, ...]]]:
    labels, n = ndimage.label(mask, structure=_FULL)
    return labels, int(n), ndimage.find_objects(labels)


def _short_axis_local(local: np.ndarray, spacing: tuple[float, ...]) -> float:
    """Short axis of the boolean object ``local`` (z, y, x), already cropped or not."""
    areas = local.sum(axis=(1, 2))
    if areas.size == 0 or areas.max() == 0:
        return 0.0
    plane = local[int(np.argmax(areas))]
    yy, xx = np.nonzero(plane)
    pos = np.stack([yy * spacing[1], xx * spacing[2]])
    centred = pos - pos.mean(axis=1, keepdims=True)
    cov = centred @ centred.T / pos.shape[1]
    cov += np.diag([spacing[1] ** 2 / 12.0, spacing[2] ** 2 / 12.0])
    smallest = float(np.linalg.eigvalsh(cov)[0])
    return 4.0 * math.sqrt(max(smallest, 0.0))


def short_axis_mm(mask: np.ndarray, spacing) -> float:
    """Short-axis diameter of one object in the axial plane, mm.

    Parameters
    ----------
    mask : numpy.ndarray of bool, shape (z, y, x)
        The object (one node; every nonzero voxel counts).
    spacing : float or sequence of float
        Voxel size in mm, ``(z, y, x)``.

    Returns
    -------
    float
        ``4 sqrt(lambda_min)`` of the in-plane ``(y, x)`` covariance (mm^2, voxel centres plus
        ``spacing**2 / 12`` per axis) on the axial slice (z index) with the largest area; the
        first such slice on ties. Exactly ``2a`` for a filled ellipse of semi-axes ``a <= b``.
        0.0 for an empty mask.

    Raises
    ------
    InputError
        ``mask`` is not 3-D, or ``spacing`` is not positive.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"mask must be a 3-D (z, y, x) array, got shape {mask.shape}")
    spacing = _check_spacing(spacing)
    mask = mask.astype(bool, copy=False)
    box = ndimage.find_objects(mask.view(np.uint8))
    if not box:
        return 0.0
    return _short_axis_local(mask[box[0]], spacing)


def _describe(labels: np.ndarray, boxes, spacing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel counts, centroids (index units, (z, y, x)) and short axes (mm) of every component."""
    n = len(boxes)
    counts = np.zeros(n, dtype=np.int64)
    centroids = np.zeros((n, 3))
    short = np.zeros(n)
    for i, box in enumerate(boxes):
        local = labels[box] == i + 1
        idx = np.nonzero(local)
        counts[i] = idx[0].size
        centroids[i] = [idx[a].mean() + box[a].start for a in range(3)]
        short[i] = _short_axis_local(local, spacing)
    return counts, centroids, short


def size_bin(short_axis: float) -> str:
    """Size bin of a short-axis diameter in mm: ``"<5"``, ``"5-10"`` (5 and 10 included) or ``">10"``."""
    if short_axis < 5.0:
        return "<5"
    if short_axis <= 10.0:
        return "5-10"
    return ">10"


# ---------------------------------------------------------------- matching one patient


def match_nodes(
    reference,
    prediction,
    spacing,
    *,
    label: int = 4,
    min_dice: float = 0.1,
    patient: str | None = None,
    stations: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Match reference lymph nodes and predicted node components of one patient.

    Parameters
    ----------
    reference, prediction : numpy.ndarray, shape (z, y, x)
        Label maps on the same grid (integers; the node class is ``label``), or boolean node
        masks.
    spacing : float or sequence of float
        Voxel size in mm, ``(z, y, x)``.
    label : int
        The lymph-node class (4 in nn-TransEC).
    min_dice : float
        A pair matches when its Dice is strictly above this (or the component's centroid is
        inside the node; see the module docstring).
    patient : str, optional
        Pseudonymous id, written to ``patient_id`` (``""`` when None) and named in errors.
    stations : sequence of str, optional
        Station name of every reference node, in label order (e.g. from
        :func:`assign_stations`); default ``""``.

    Returns
    -------
    nodes : pandas.DataFrame
        One row per reference node: ``patient_id``, ``node`` (1-based), ``volume_mm3``,
        ``short_axis_mm``, ``size_bin``, ``z_mm``, ``y_mm``, ``x_mm`` (centroid, ``index *
        spacing`` from the centre of voxel [0, 0, 0]), ``detected`` (bool), ``dice`` (best
        Dice with any single predicted component, 0 when none overlaps), ``station``,
        ``matched_components`` (tuple of the matching component ids).
    predictions : pandas.DataFrame
        One row per predicted component: ``patient_id``, ``component`` (1-based),
        ``volume_mm3``, ``short_axis_mm``, ``z_mm``, ``y_mm``, ``x_mm``, ``true_positive``
        (bool), ``matched_nodes`` (tuple of node ids).

    Raises
    ------
    InputError
        The arrays differ in shape or are not 3-D, ``spacing`` is not three positive numbers,
        ``min_dice`` is outside [0, 1), or ``stations`` does not have one entry per node.

    Notes
    -----
    Each array is labelled once; per-component measures are taken on the component's
    bounding box (``scipy.ndimage.find_objects``), and all pairwise overlaps come from one
    ``numpy.unique`` over the voxels, inside the reference nodes' joint bounding box, where
    both label images are nonzero. A 512 x 512 x 80 map with a few nodes costs a few tenths
    of a second.
    """
    pid = "" if patient is None else str(patient)
    ref = _node_mask(reference, label, "reference", patient)
    pred = _node_mask(prediction, label, "prediction", patient)
    if ref.shape != pred.shape:
        raise InputError(f"reference and prediction differ in shape: {ref.shape} vs {pred.shape}", patient=patient)
    spacing = _check_spacing(spacing, patient=patient)
    min_dice = float(min_dice)
    if not 0.0 <= min_dice < 1.0:
        raise InputError(f"min_dice must be in [0, 1), got {min_dice}", patient=patient)

    ref_lab, n_ref, ref_boxes = _components(ref)
    pred_lab, n_pred, pred_boxes = _components(pred)
    if stations is None:
        stations = [""] * n_ref
    else:
        stations = [str(s) for s in stations]
        if len(stations) != n_ref:
            raise InputError(
                f"stations has {len(stations)} entries but the reference has {n_ref} lymph-node components", patient=patient
            )
    ref_n, ref_c, ref_short = _describe(ref_lab, ref_boxes, spacing)
    pred_n, pred_c, pred_short = _describe(pred_lab, pred_boxes, spacing)

    # overlaps of every (node, component) pair, counted in one pass inside the nodes' joint box
    overlap: dict[tuple[int, int], int] = {}
    if n_ref and n_pred:
        box = tuple(slice(min(b[a].start for b in ref_boxes), max(b[a].stop for b in ref_boxes)) for a in range(3))
        r, p = ref_lab[box], pred_lab[box]
        both = (r > 0) & (p > 0)
        codes = r[both].astype(np.int64) * (n_pred + 1) + p[both]
        keys, counts = np.unique(codes, return_counts=True)
        overlap = {(int(k // (n_pred + 1)), int(k % (n_pred + 1))): int(c) for k, c in zip(keys, counts)}

    matches: set[tuple[int, int]] = set()
    best_dice = np.zeros(n_ref)
    for (i, j), ov in overlap.items():
        d = 2.0 * ov / (ref_n[i - 1] + pred_n[j - 1])
        best_dice[i - 1] = max(best_dice[i - 1], d)
        if d > min_dice:
            matches.add((i, j))
    for j in range(1, n_pred + 1):
        nearest = tuple(int(np.clip(np.floor(c + 0.5), 0, s - 1)) for c, s in zip(pred_c[j - 1], ref.shape))
        i = int(ref_lab[nearest])
        if i:
            matches.add((i, j))

    by_node: list[list[int]] = [[] for _ in range(n_ref)]
    by_comp: list[list[int]] = [[] for _ in range(n_pred)]
    for i, j in sorted(matches):
        by_node[i - 1].append(j)
        by_comp[j - 1].append(i)

    voxel_mm3 = float(np.prod(spacing))
    sp = np.asarray(spacing)
    ref_mm, pred_mm = ref_c * sp, pred_c * sp
    nodes = pd.DataFrame(
        {
            "patient_id": [pid] * n_ref,
            "node": np.arange(1, n_ref + 1, dtype=np.int64),
            "volume_mm3": ref_n * voxel_mm3,
            "short_axis_mm": ref_short,
            "size_bin": [size_bin(s) for s in ref_short],
            "z_mm": ref_mm[:, 0],
            "y_mm": ref_mm[:, 1],
            "x_mm": ref_mm[:, 2],
            "detected": np.array([bool(m) for m in by_node], dtype=bool),
            "dice": best_dice,
            "station": stations,
            "matched_components": pd.Series([tuple(m) for m in by_node], dtype=object),
        },
        columns=list(NODE_COLUMNS),
    )
    predictions = pd.DataFrame(
        {
            "patient_id": [pid] * n_pred,
            "component": np.arange(1, n_pred + 1, dtype=np.int64),
            "volume_mm3": pred_n * voxel_mm3,
            "short_axis_mm": pred_short,
            "z_mm": pred_mm[:, 0],
            "y_mm": pred_mm[:, 1],
            "x_mm": pred_mm[:, 2],
            "true_positive": np.array([bool(m) for m in by_comp], dtype=bool),
            "matched_nodes": pd.Series([tuple(m) for m in by_comp], dtype=object),
        },
        columns=list(PREDICTION_COLUMNS),
    )
    return nodes, predictions


# ---------------------------------------------------------------- summaries over patients


def _check_frames(nodes, predictions) -> None:
    for frame, name, columns in ((nodes, "nodes", NODE_COLUMNS), (predictions, "predictions", PREDICTION_COLUMNS)):
        if not isinstance(frame, pd.DataFrame):
            raise InputError(f"{name} must be a pandas DataFrame from match_nodes, got {type(frame).__name__}")
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InputError(f"{name} lacks the columns {missing} (build it with match_nodes)")


def _n_patients(nodes: pd.DataFrame, predictions: pd.DataFrame, n_patients: int | None) -> int:
    if n_patients is None:
        return len(set(nodes["patient_id"].astype(str)) | set(predictions["patient_id"].astype(str)))
    if int(n_patients) != n_patients or n_patients < 0:
        raise InputError(f"n_patients must be a non-negative integer, got {n_patients}")
    seen = len(set(nodes["patient_id"].astype(str)) | set(predictions["patient_id"].astype(str)))
    if n_patients < seen:
        raise InputError(f"n_patients is {n_patients} but the tables hold {seen} distinct patient ids")
    return int(n_patients)


def _proportion(k: int, n: int) -> tuple[float, list[float]]:
    if n == 0:
        return math.nan, [math.nan, math.nan]
    low, high = wilson_ci(k, n, 0.05)
    return k / n, [float(low), float(high)]


def detection_summary(nodes: pd.DataFrame, predictions: pd.DataFrame, n_patients: int | None = None) -> dict:
    """Node-level sensitivity (overall, by size, >= 5 mm), false positives per patient and node Dice.

    Parameters
    ----------
    nodes, predictions : pandas.DataFrame
        Frames from :func:`match_nodes`, one patient or several concatenated.
    n_patients : int, optional
        Patients evaluated (the FP denominator). Default: the distinct ``patient_id`` values of
        both frames; pass it explicitly when some patients have neither nodes nor predictions.

    Returns
    -------
    dict
        ``n_patients``, ``n_nodes``, ``n_detected``, ``sensitivity`` with ``sensitivity_ci``
        ([low, high], 95 % Wilson), ``sensitivity_by_size`` (bin -> ``{"n", "detected",
        "sensitivity"}`` for ``"<5"``, ``"5-10"``, ``">10"``; NaN sensitivity when n = 0),
        ``n_nodes_5mm``, ``sensitivity_5mm`` (nodes with short axis >= 5 mm) with
        ``sensitivity_5mm_ci``, ``n_predictions``, ``n_false_positives``, ``fp_per_patient``
        (NaN when there are no patients) and ``node_dice_mean`` (mean best Dice over reference
        nodes, NaN without nodes).

    Raises
    ------
    InputError
        A frame lacks the columns of :func:`match_nodes`, or ``n_patients`` is negative or
        smaller than the number of patient ids in the frames.
    """
    _check_frames(nodes, predictions)
    n_pat = _n_patients(nodes, predictions, n_patients)
    detected = nodes["detected"].to_numpy(dtype=bool)
    short = nodes["short_axis_mm"].to_numpy(dtype=float)
    bins = nodes["size_bin"].astype(str).to_numpy()
    n_nodes, n_det = int(detected.size), int(detected.sum())
    sens, sens_ci = _proportion(n_det, n_nodes)
    by_size = {}
    for b in SIZE_BINS:
        sel = bins == b
        n, k = int(sel.sum()), int(detected[sel].sum())
        by_size[b] = {"n": n, "detected": k, "sensitivity": k / n if n else math.nan}
    big = short >= 5.0
    n5, k5 = int(big.sum()), int(detected[big].sum())
    sens5, sens5_ci = _proportion(k5, n5)
    n_fp = int((~predictions["true_positive"].to_numpy(dtype=bool)).sum())
    return {
        "n_patients": n_pat,
        "n_nodes": n_nodes,
        "n_detected": n_det,
        "sensitivity": sens,
        "sensitivity_ci": sens_ci,
        "sensitivity_by_size": by_size,
        "n_nodes_5mm": n5,
        "sensitivity_5mm": sens5,
        "sensitivity_5mm_ci": sens5_ci,
        "n_predictions": int(len(predictions)),
        "n_false_positives": n_fp,
        "fp_per_patient": n_fp / n_pat if n_pat else math.nan,
        "node_dice_mean": float(nodes["dice"].mean()) if n_nodes else math.nan,
    }


def froc(
    nodes: pd.DataFrame,
    predictions: pd.DataFrame,
    n_patients: int | None = None,
    *,
    min_short_axis_mm: float = 0.0,
    thresholds: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Free-response operating characteristic over a minimum-component-volume threshold.

    Parameters
    ----------
    nodes, predictions : pandas.DataFrame
        Frames from :func:`match_nodes` (one or several patients).
    n_patients : int, optional
        FP denominator, as in :func:`detection_summary`.
    min_short_axis_mm : float
        Only reference nodes with a short axis at least this (mm) count in the sensitivity
        (e.g. 5 or 10); false positives are counted over all components.
    thresholds : sequence of float, optional
        Minimum component volumes (mm^3) to evaluate; default 0 and every distinct predicted
        volume.

    Returns
    -------
    pandas.DataFrame
        One row per threshold, ascending: ``min_volume_mm3``, ``fp_per_patient`` and
        ``sensitivity``. A component survives a threshold ``t`` when its ``volume_mm3 >= t``;
        a node is detected at ``t`` when one of its ``matched_components`` survives, so both
        columns are non-increasing down the table, and the row at 0 equals
        :func:`detection_summary`. Sensitivity is NaN when no node qualifies.

    Raises
    ------
    InputError
        A frame lacks the columns of :func:`match_nodes`, a node's matched component is not in
        ``predictions``, or ``n_patients`` is invalid.
    """
    _check_frames(nodes, predictions)
    n_pat = _n_patients(nodes, predictions, n_patients)
    volume = {
        (str(p), int(c)): float(v)
        for p, c, v in zip(predictions["patient_id"], predictions["component"], predictions["volume_mm3"])
    }
    keep = nodes["short_axis_mm"].to_numpy(dtype=float) >= float(min_short_axis_mm)
    # a node is detected at t while its largest matching component survives: t <= that volume
    needed = []
    for p, n, comps in zip(nodes["patient_id"][keep], nodes["node"][keep], nodes["matched_components"][keep]):
        vols = []
        for c in comps:
            key = (str(p), int(c))
            if key not in volume:
                raise InputError(f"node {n} of patient {p!r} matches component {c}, which is not in predictions")
            vols.append(volume[key])
        needed.append(max(vols) if vols else -math.inf)
    needed = np.asarray(needed, dtype=float)
    pred_vol = predictions["volume_mm3"].to_numpy(dtype=float)
    fp_vol = pred_vol[~predictions["true_positive"].to_numpy(dtype=bool)]
    if thresholds is None:
        grid = np.unique(np.concatenate([[0.0], pred_vol]))
    else:
        grid = np.unique(np.asarray(thresholds, dtype=float).ravel())
        if not np.all(np.isfinite(grid)):
            raise InputError("FROC thresholds must be finite volumes in mm^3")
    fp = np.array([(fp_vol >= t).sum() for t in grid], dtype=float)
    det = np.array([(needed >= t).sum() for t in grid], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        fp_pp = fp / n_pat if n_pat else np.full(grid.size, np.nan)
        sens = det / needed.size if needed.size else np.full(grid.size, np.nan)
    return pd.DataFrame({"min_volume_mm3": grid, "fp_per_patient": fp_pp, "sensitivity": sens})


def sensitivity_at_fp(froc_table: pd.DataFrame, fp: float = 1.0) -> float:
    """The best sensitivity among FROC operating points with at most ``fp`` false positives per patient.

    Parameters
    ----------
    froc_table : pandas.DataFrame
        Output of :func:`froc`.
    fp : float
        Allowed false positives per patient.

    Returns
    -------
    float
        Highest ``sensitivity`` with ``fp_per_patient <= fp``; NaN when no point qualifies.
    """
    for col in ("fp_per_patient", "sensitivity"):
        if col not in froc_table.columns:
            raise InputError(f"froc_table lacks the column {col!r} (build it with froc)")
    ok = froc_table["fp_per_patient"].to_numpy(dtype=float) <= float(fp)
    values = froc_table["sensitivity"].to_numpy(dtype=float)[ok]
    values = values[~np.isnan(values)]
    return float(values.max()) if values.size else math.nan


def station_table(nodes: pd.DataFrame) -> pd.DataFrame:
    """Detection per lymph-node station.

    Parameters
    ----------
    nodes : pandas.DataFrame
        Nodes frame from :func:`match_nodes` (with ``station``, ``detected``, ``short_axis_mm``).

    Returns
    -------
    pandas.DataFrame
        One row per station (sorted by name; nodes without a station under ``"unassigned"``,
        listed last) and a final ``"all"`` row: ``station``, ``n``, ``detected``,
        ``sensitivity`` (detected / n) and ``median_short_axis_mm``.
    """
    for col in ("station", "detected", "short_axis_mm"):
        if col not in nodes.columns:
            raise InputError(f"nodes lacks the column {col!r} (build it with match_nodes)")
    station = nodes["station"].fillna("").astype(str).replace("", "unassigned")
    names = sorted(set(station) - {"unassigned"}) + (["unassigned"] if (station == "unassigned").any() else [])
    rows = []
    for name, sel in [(s, (station == s).to_numpy()) for s in names] + [("all", np.ones(len(nodes), bool))]:
        det = nodes["detected"].to_numpy(dtype=bool)[sel]
        short = nodes["short_axis_mm"].to_numpy(dtype=float)[sel]
        n = int(sel.sum())
        rows.append(
            {
                "station": name,
                "n": n,
                "detected": int(det.sum()),
                "sensitivity": det.sum() / n if n else math.nan,
                "median_short_axis_mm": float(np.median(short)) if n else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=["station", "n", "detected", "sensitivity", "median_short_axis_mm"])


def assign_stations(
    reference_mask,
    spacing,
    origin_zyx_mm,
    node_centres_mm_zyx,
    node_stations: Sequence[str],
    label: int = 4,
    max_distance_mm: float = 15.0,
) -> list[str]:
    """Station of every reference node: that of the nearest annotated node centre.

    Parameters
    ----------
    reference_mask : numpy.ndarray, shape (z, y, x)
        Reference label map (node class ``label``) or boolean node mask.
    spacing : float or sequence of float
        Voxel size in mm, ``(z, y, x)``.
    origin_zyx_mm : sequence of 3 float
        Physical position of the centre of voxel [0, 0, 0], mm, ``(z, y, x)``; positions are
        ``origin + index * spacing`` (an axis-aligned grid: the direction matrix is taken as
        the identity, so give origin and centres in that frame).
    node_centres_mm_zyx : array-like, shape (m, 3)
        Physical centres of the annotated nodes, mm, ``(z, y, x)``.
    node_stations : sequence of str, length m
        Station of each annotated centre (e.g. ``"2R"``, ``"7"``).
    label : int
        The lymph-node class.
    max_distance_mm : float
        A component further than this from every centre gets ``""``.

    Returns
    -------
    list of str
        One station per reference component in label order (the order of
        :func:`match_nodes`' ``node`` column), to pass as its ``stations``.
    """
    mask = _node_mask(reference_mask, label, "reference_mask", None)
    spacing = _check_spacing(spacing)
    origin = np.asarray(origin_zyx_mm, dtype=float)
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise InputError(f"origin_zyx_mm must be 3 finite numbers in mm, (z, y, x), got {origin_zyx_mm!r}")
    centres = np.asarray(node_centres_mm_zyx, dtype=float)
    if centres.size == 0:
        centres = centres.reshape(0, 3)
    if centres.ndim == 1 and centres.shape == (3,):
        centres = centres[None, :]
    if centres.ndim != 2 or centres.shape[1] != 3:
        raise InputError(f"node_centres_mm_zyx must have shape (m, 3), (z, y, x) in mm, got {centres.shape}")
    if centres.shape[0] != len(node_stations):
        raise InputError(f"{centres.shape[0]} node centres but {len(node_stations)} stations: one station per centre")
    if not np.all(np.isfinite(centres)):
        raise InputError("node centres must be finite positions in mm")
    labels, n, boxes = _components(mask)
    _, centroids, _ = _describe(labels, boxes, spacing)
    out = []
    for c in origin + centroids * np.asarray(spacing):
        if not len(centres):
            out.append("")
            continue
        d = np.linalg.norm(centres - c, axis=1)
        k = int(np.argmin(d))
        out.append(str(node_stations[k]) if d[k] <= max_distance_mm else "")
    return out
