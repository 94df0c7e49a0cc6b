"""Connected-component post-processing of predicted label maps (nn-TransEC Sec. 3.3, nnU-Net).

Two rules, each a plain function of a label map:

* :func:`keep_largest_component` -- organs that exist once per patient (aorta, esophagus,
  pericardium) keep only their largest connected component; the rest becomes background.
* :func:`remove_small_components` -- tumour components smaller than a volume in ml are removed
  (the largest one is kept by default, so a small true tumour is never erased completely).

:func:`postprocess_labels` applies both with the nn-TransEC label numbers and reports what it removed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from esoct.errors import InputError
from esoct.io.volume import Volume

TUMOUR = 1
AORTA = 2
ESOPHAGUS = 3
LYMPH_NODE = 4
PERICARDIUM = 5
SINGLE_INSTANCE = (AORTA, ESOPHAGUS, PERICARDIUM)


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (1, 2, 3):
        raise InputError(f"connectivity must be 1 (6-neighbour), 2 (18) or 3 (26), got {connectivity}")
    return ndimage.generate_binary_structure(3, connectivity)


def _components(labels: np.ndarray, label: int, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Component image of ``labels == label`` and the voxel count of each component (index 0 unused)."""
    comp, n = ndimage.label(labels == label, structure=_structure(connectivity))
    return comp, np.bincount(comp.ravel(), minlength=n + 1)


def keep_largest_component(labels: np.ndarray, label: int, connectivity: int = 3, fill: int = 0) -> tuple[np.ndarray, int]:
    """Keep only the largest connected component of ``label``.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map ``(z, y, x)``.
    label : int
        Class to clean.
    connectivity : {1, 2, 3}
        Neighbourhood: 1 = faces (6), 2 = + edges (18), 3 = + corners (26, default, as nnU-Net).
    fill : int
        Label given to the removed voxels (background).

    Returns
    -------
    labels : numpy.ndarray
        A new label map.
    n_removed : int
        Number of components removed.
    """
    out = np.array(labels, copy=True)
    comp, sizes = _components(out, label, connectivity)
    n = len(sizes) - 1
    if n <= 1:
        return out, 0
    keep = int(np.argmax(sizes[1:])) + 1  # ties: the first component in scan order
    out[(comp > 0) & (comp != keep)] = fill
    return out, n - 1


def remove_small_components(
    labels: np.ndarray,
    label: int,
    min_volume_ml: float,
    spacing_zyx: Iterable[float],
    connectivity: int = 3,
    keep_largest: bool = True,
    fill: int = 0,
) -> tuple[np.ndarray, int]:
    """Remove components of ``label`` smaller than ``min_volume_ml``.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label map ``(z, y, x)``.
    label : int
        Class to clean (the tumour, 1).
    min_volume_ml : float
        Components with a volume below this (ml = cm^3 = 1000 mm^3) are removed.
    spacing_zyx : sequence of 3 float
        Voxel size in mm, ``(z, y, x)``.
    connectivity : {1, 2, 3}
        As in :func:`keep_largest_component`.
    keep_largest : bool
        Never remove the largest component, however small.
    fill : int
        Label given to removed voxels.

    Returns
    -------
    labels : numpy.ndarray
        A new label map.
    n_removed : int
        Number of components removed.
    """
    out = np.array(labels, copy=True)
    comp, sizes = _components(out, label, connectivity)
    if len(sizes) <= 1:
        return out, 0
    voxel_ml = float(np.prod(np.asarray(list(spacing_zyx), dtype=float))) / 1000.0
    small = sizes * voxel_ml < float(min_volume_ml)
    small[0] = False
    if keep_largest:
        small[int(np.argmax(sizes[1:])) + 1] = False
    out[small[comp]] = fill
    return out, int(small.sum())


@dataclass
class PostprocessReport:
    """What :func:`postprocess_labels` removed: ``{label: number of components removed}``."""

    largest_kept: dict = field(default_factory=dict)
    small_removed: dict = field(default_factory=dict)

    @property
    def n_removed(self) -> int:
        """Total number of components removed."""
        return int(sum(self.largest_kept.values()) + sum(self.small_removed.values()))


def postprocess_labels(
    labels,
    spacing_zyx: Iterable[float] | None = None,
    *,
    single_instance: Iterable[int] = SINGLE_INSTANCE,
    tumour_label: int | None = TUMOUR,
    min_tumour_ml: float = 0.5,
    node_label: int | None = LYMPH_NODE,
    min_node_mm3: float = 0.0,
    connectivity: int = 3,
):
    """nn-TransEC post-processing: one component per single-instance organ, no small tumour or node blobs.

    Parameters
    ----------
    labels : numpy.ndarray or Volume
        Predicted label map ``(z, y, x)`` with the nn-TransEC classes.
    spacing_zyx : sequence of 3 float, optional
        Voxel size in mm; taken from the Volume when ``labels`` is one. Needed for the tumour rule.
    single_instance : iterable of int
        Classes reduced to their largest component (aorta 2, esophagus 3, pericardium 5).
        Lymph nodes (4) are many per patient and left alone.
    tumour_label : int or None
        Class of the tumour; None skips the tumour rule.
    min_tumour_ml : float
        Tumour components below this volume (ml) are removed, except the largest one.
        Default 0.5 ml (a sphere of about 10 mm diameter).
    node_label : int or None
        Class of the lymph nodes (4).
    min_node_mm3 : float
        Lymph-node components below this volume (mm^3) are removed, every one of them (0: keep all).
        The cascade's default, 30 mm^3, is a sphere of 3.9 mm diameter: below the smallest node
        radiologists measure (short axis 5 mm) and below every phantom node.
    connectivity : {1, 2, 3}
        Component neighbourhood (3 = 26-connected).

    Returns
    -------
    labels : numpy.ndarray or Volume
        Same kind as the input (a Volume keeps its geometry).
    report : PostprocessReport
        Components removed per class.
    """
    volume = labels if isinstance(labels, Volume) else None
    arr = np.asarray(labels.array if volume is not None else labels)
    if arr.ndim != 3:
        raise InputError(f"post-processing needs a 3D (z, y, x) label map, got shape {arr.shape}")
    if volume is not None and spacing_zyx is None:
        spacing_zyx = volume.spacing
    report = PostprocessReport()
    for label in single_instance:
        arr, n = keep_largest_component(arr, int(label), connectivity)
        report.largest_kept[int(label)] = n
    if tumour_label is not None:
        if spacing_zyx is None:
            raise InputError("the tumour size rule needs the voxel spacing (mm): pass spacing_zyx or a Volume")
        arr, n = remove_small_components(arr, int(tumour_label), min_tumour_ml, spacing_zyx, connectivity)
        report.small_removed[int(tumour_label)] = n
    if node_label is not None and min_node_mm3 > 0:
        if spacing_zyx is None:
            raise InputError("the node size rule needs the voxel spacing (mm): pass spacing_zyx or a Volume")
        arr, n = remove_small_components(arr, int(node_label), float(min_node_mm3) / 1000.0, spacing_zyx, connectivity,
                                         keep_largest=False)
        report.small_removed[int(node_label)] = n
    return (volume.with_array(arr) if volume is not None else arr), report
