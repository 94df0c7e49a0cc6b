"""One phantom scan (pre- or post-treatment): image, organ labels, wall layers and anatomy as Volumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from esoct.io.volume import Volume
from esoct.phantom import labels as L
from esoct.phantom.anatomy import render_anatomy
from esoct.phantom.centers import CenterProfile
from esoct.phantom.grid import Grid
from esoct.phantom.intensity import synthesize_hu
from esoct.phantom.nodes import paint_nodes
from esoct.phantom.spec import PatientSpec, TumourSpec, patient_rng
from esoct.phantom.tumour import audit_t_stage, grow_tumour, paint_tumour, post_treatment


@dataclass
class PhantomScan:
    """A rendered scan and what is true about it."""

    image: Volume
    labels: Volume
    layers: Volume
    anatomy: Volume
    tumour: TumourSpec
    t_stage_audit: int
    tumour_volume_ml: float
    nodes: list[dict]


def _volume(array: np.ndarray, grid: Grid, meta: dict | None = None) -> Volume:
    return Volume(array, spacing=grid.spacing_zyx, origin=grid.origin_xyz, meta=meta or {})


def render_scan(spec: PatientSpec, center: CenterProfile, timepoint: str = "pre", full_res: bool = False, seed: int = 0) -> PhantomScan:
    """Render a patient's pre- or post-treatment scan.

    Parameters
    ----------
    spec : PatientSpec
        The patient. For ``"pre"``, lymph-node centres are updated in place to
        where they were actually placed, so the post scan reuses them.
    center : CenterProfile
        Acquisition protocol.
    timepoint : {"pre", "post"}
    full_res : bool
        512 x 512 matrix instead of the centre's default pixel size.
    seed : int
        Cohort seed (noise and texture streams).

    Returns
    -------
    PhantomScan
    """
    post = timepoint == "post"
    shift = spec.post_shift_mm if post else (0.0, 0.0)
    grid = Grid.for_center(center, full_res=full_res, shift=shift)
    tumour = post_treatment(spec.tumour, spec.response) if post else spec.tumour
    anatomy, layers = render_anatomy(spec, grid, tumour)
    critical = np.zeros(256, dtype=bool)
    critical[list(L.T4_STRUCTURES)] = True
    if post:
        mask = paint_tumour(anatomy, layers, grid, spec, tumour)
        node_scales = [1.0 - 0.5 * spec.response if n.metastatic else 1.0 for n in spec.nodes]
    else:
        mask, tumour = grow_tumour(anatomy, layers, grid, spec)
        node_scales = None
    audit = audit_t_stage(mask, layers, critical[anatomy])
    nodes = paint_nodes(anatomy, grid, spec.nodes, mask, node_scales)
    if not post:
        for node, placed in zip(spec.nodes, nodes):
            node.center = tuple(placed["center_local_mm"]) if placed["center_local_mm"] else None
    rng = patient_rng(seed, spec.index, stream=3 if post else 2)
    hu = synthesize_hu(anatomy, layers, grid, spec, tumour, center, rng, node_scales)
    meta = {"patient_id": spec.patient_id, "timepoint": timepoint, "center": center.name}
    voxel_ml = float(np.prod(grid.spacing_zyx)) / 1000.0
    return PhantomScan(
        image=_volume(hu, grid, meta),
        labels=_volume(L.organ_labels(anatomy), grid),
        layers=_volume(layers, grid),
        anatomy=_volume(anatomy, grid),
        tumour=tumour,
        t_stage_audit=audit,
        tumour_volume_ml=float(mask.sum()) * voxel_ml,
        nodes=nodes,
    )


def reader2_mask(labels: Volume, seed: int, index: int) -> Volume:
    """A second reader's label map: the tumour outline redrawn one voxel in or out in places.

    Used for inter-reader ICC of radiomic features. Only the tumour class changes.
    """
    from scipy import ndimage

    rng = patient_rng(seed, index, stream=4)
    lab = labels.array.copy()
    tumour = lab == 1
    idx = np.nonzero(tumour)
    sl = tuple(slice(max(int(i.min()) - 2, 0), int(i.max()) + 3) for i in idx)
    t = tumour[sl]
    field = ndimage.gaussian_filter(rng.standard_normal(t.shape).astype(np.float32), 1.5)
    field /= max(float(field.std()), 1e-6)
    grown = ndimage.binary_dilation(t) & ~t & (field > 0.6) & np.isin(lab[sl], (0, 3))
    shrunk = t & ~ndimage.binary_erosion(t) & (field < -0.6)
    new = (t | grown) & ~shrunk
    if not new.any():
        new = t
    view = lab[sl]
    view[t & ~new] = 3  # redrawn as esophagus
    view[new] = 1
    return labels.with_array(lab)
