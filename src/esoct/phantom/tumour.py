"""The primary tumour: grown from the mucosa outward to a depth that decides its T stage.

The tumour occupies, about the esophageal centreline, the voxels whose radial
depth below the mucosal surface is less than a local depth
``depth * profile(z, angle) * (1 + undulation)``. T1 and T2 depths are capped
inside the submucosa and the muscularis propria; T3 passes the adventitia into
fat but keeps at least one voxel of fat between it and the aorta, trachea and
pericardium; T4 reaches one of them (the fat plane is lost).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import ndimage

from esoct.phantom import labels as L
from esoct.phantom.anatomy import ray_distance_mm
from esoct.phantom.wall import WALL_MM, esophagus_box, profile, stretch, wall_depth
from esoct.phantom.grid import Grid
from esoct.phantom.spec import PatientSpec, TumourSpec, layer_boundaries_mm

_CRITICAL = np.zeros(256, dtype=bool)
_CRITICAL[list(L.T4_STRUCTURES)] = True
_GROWABLE = np.zeros(256, dtype=bool)
_GROWABLE[[L.ESOPHAGUS_WALL, L.MEDIASTINAL_FAT]] = True
_SIX = ndimage.generate_binary_structure(3, 1)


def audit_t_stage(tumour: np.ndarray, layers: np.ndarray, critical: np.ndarray) -> int:
    """T stage read off voxel maps, as a pathologist reads depth of invasion.

    Parameters
    ----------
    tumour : numpy.ndarray of bool, shape (z, y, x)
        Tumour voxels.
    layers : numpy.ndarray of uint8, shape (z, y, x)
        Wall-layer map (0 outside, 1 mucosa, 2 submucosa, 3 muscularis propria,
        4 adventitia, 5 lumen).
    critical : numpy.ndarray of bool, shape (z, y, x)
        Adjacent structures whose invasion makes T4 (aorta, pericardium, trachea).

    Returns
    -------
    int
        4 if a tumour voxel touches (6-connectivity) a critical structure; 3 if it
        reaches the adventitia or beyond the wall; 2 if it reaches the muscularis
        propria; 1 if confined to mucosa/submucosa; 0 if there is no tumour.
    """
    if not tumour.any():
        return 0
    idx = np.nonzero(tumour)
    sl = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in idx)
    t = tumour[sl]
    if (ndimage.binary_dilation(t, _SIX) & critical[sl]).any():
        return 4
    lay = layers[sl][t]
    if (lay == 0).any() or (lay == 4).any():
        return 3
    if (lay == 3).any():
        return 2
    return 1


def _stage_cap(t_stage: int) -> float:
    b = layer_boundaries_mm()
    return {1: b[1] - 0.05, 2: b[2] - 0.05}.get(t_stage, math.inf)


def target_depth(anatomy: np.ndarray, grid: Grid, spec: PatientSpec, tumour: TumourSpec) -> float:
    """Depth below the mucosa (unstretched mm) at which a T4 tumour's focus meets its target structure."""
    codes = {"aorta": [L.AORTA], "trachea": [L.TRACHEA_WALL, L.AIRWAY_LUMEN]}.get(tumour.t4_target, [L.PERICARDIUM, L.MYOCARDIUM])
    ex, ey = (float(v) for v in spec.eso_center(tumour.z_center))
    dist = ray_distance_mm(anatomy, grid, (ex, ey), tumour.z_center, tumour.focal_theta, codes)
    s = float(stretch(tumour, np.float32(tumour.focal_theta), np.float32(tumour.z_center)))
    return dist - spec.lumen_r - (s - 1) * WALL_MM


def tumour_field(grid: Grid, spec: PatientSpec, tumour: TumourSpec, sl) -> np.ndarray:
    """Boolean tumour shape (before anatomy constraints) in index box ``sl``: bulk plus deepest focus."""
    rho, ang = wall_depth(grid, spec, tumour, sl)
    z = grid.z[sl[0]].reshape(-1, 1, 1)
    p = tumour.phases
    undulation = 1 + tumour.irregularity * (
        0.5 * np.sin(3 * ang + p[0]) + 0.3 * np.sin(2 * math.pi * z / 17.0 + p[1]) + 0.2 * np.sin(5 * ang + 2 * math.pi * z / 29.0 + p[2])
    )
    cap = _stage_cap(tumour.t_stage)
    bulk = tumour.bulk_depth_mm * profile(ang, z, tumour.theta0, tumour.half_width_rad, tumour.z_center, tumour.length_mm)
    focus = tumour.depth_mm * profile(ang, z, tumour.focal_theta, tumour.focal_half_width_rad, tumour.z_center, tumour.focal_length_mm)
    local = np.minimum(np.maximum(bulk, focus) * undulation, cap)
    return (rho >= 0) & (rho < local)


def paint_tumour(anatomy: np.ndarray, layers: np.ndarray, grid: Grid, spec: PatientSpec, tumour: TumourSpec) -> np.ndarray:
    """Paint ``tumour`` into ``anatomy`` (in place) and return the tumour mask (full grid).

    Tumour grows only into esophageal wall and mediastinal fat. Unless it is T4,
    voxels within one voxel of a critical structure are left as fat (fat plane kept).
    """
    half = tumour.length_mm / 2 + 1.0
    pixel = max(grid.spacing_zyx[1:])
    # one extra voxel all round so that critical voxels just outside the tumour are seen
    z_range = (tumour.z_center - half - grid.spacing_zyx[0], tumour.z_center + half + grid.spacing_zyx[0])
    sl = esophagus_box(grid, spec, margin=max(tumour.depth_mm, 0) + 4 * pixel, z_range=z_range, tumour=tumour)
    mask = np.zeros(anatomy.shape, dtype=bool)
    if sl is None:
        return mask
    view = anatomy[sl]
    inside = tumour_field(grid, spec, tumour, sl) & _GROWABLE[view]
    if tumour.t_stage != 4:
        crit = _CRITICAL[view]
        if crit.any():  # keep a fat plane: no tumour voxel face-adjacent to a critical structure
            inside &= ~ndimage.binary_dilation(crit, _SIX)
    view[inside] = L.TUMOUR
    mask[sl] = inside
    return mask


def grow_tumour(anatomy: np.ndarray, layers: np.ndarray, grid: Grid, spec: PatientSpec, tries: int = 8):
    """Place the pre-treatment tumour so that its voxels show exactly its T stage.

    The drawn depth decides T; if voxel sampling hides it (a thin layer falling
    between voxel centres) the depth is nudged within the same stage and retried.

    Returns
    -------
    mask : numpy.ndarray of bool
    tumour : TumourSpec
        The spec actually painted (T4 depth and angle filled in).
    """
    tumour = spec.tumour
    b = layer_boundaries_mm()
    pixel = max(grid.spacing_zyx[1:])
    if tumour.t_stage == 4:
        depth = target_depth(anatomy, grid, spec, tumour)
        if not math.isfinite(depth):
            raise RuntimeError(f"{spec.patient_id}: T4 target {tumour.t4_target} not found near the tumour")
        tumour = replace(tumour, depth_mm=(depth + 1.5 * pixel) / (1 - tumour.irregularity))
    critical = None
    for _ in range(tries):
        trial = anatomy.copy()
        mask = paint_tumour(trial, layers, grid, spec, tumour)
        if critical is None:
            critical = _CRITICAL[anatomy]
        if audit_t_stage(mask, layers, critical) == tumour.t_stage:
            anatomy[:] = trial
            return mask, tumour
        # nudge within the stage: deeper (and wider, longer) so the deepest layer gets a voxel
        if tumour.t_stage == 1:
            new_depth = min(tumour.depth_mm + 0.3, b[1] - 0.1)
        elif tumour.t_stage == 2:
            new_depth = min(tumour.depth_mm + 0.3, b[2] - 0.1)
        else:
            new_depth = tumour.depth_mm + 0.6 * pixel
        tumour = replace(
            tumour,
            depth_mm=new_depth,
            bulk_depth_mm=min(tumour.bulk_depth_mm, new_depth),
            focal_half_width_rad=min(tumour.focal_half_width_rad * 1.25, tumour.half_width_rad),
            focal_length_mm=min(tumour.focal_length_mm * 1.2, tumour.length_mm),
            irregularity=tumour.irregularity * 0.7,
        )
    raise RuntimeError(f"{spec.patient_id}: could not realise T{spec.tumour.t_stage} after {tries} tries")


def post_treatment(tumour: TumourSpec, response: float) -> TumourSpec:
    """The residual tumour after treatment removing a fraction ``response`` of its volume.

    Length, circumferential extent and depth shrink so that their product falls by
    roughly ``response``; the T stage of the residual is read off the voxels (ypT).
    """
    keep = 1.0 - response
    b = layer_boundaries_mm()
    return replace(
        tumour,
        t_stage=min(tumour.t_stage, 3),
        length_mm=max(tumour.length_mm * keep**0.45, 10.0),
        half_width_rad=max(tumour.half_width_rad * keep**0.2, 0.5),
        depth_mm=max(tumour.depth_mm * keep**0.35, 0.8 * b[0]),
        bulk_depth_mm=max(tumour.bulk_depth_mm * keep**0.35, 0.8 * b[0]),
        focal_length_mm=max(tumour.focal_length_mm * keep**0.45, 6.0),
        thickening=1.0 + (tumour.thickening - 1.0) * keep**0.5,
        texture_hu=tumour.texture_hu * (0.6 + 0.4 * keep),
    )
