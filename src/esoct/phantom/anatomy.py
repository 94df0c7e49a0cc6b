"""Rasterise a phantom patient's thorax: body, lungs, skeleton, heart, aorta, airway, esophagus.

Shapes are analytic (ellipses, tubes along z, ellipsoids) in the local mm frame
of :mod:`esoct.phantom.spec`; the painting order resolves overlaps (later wins).
Mediastinal organs are first wrapped in a fat envelope so that lung never
touches them directly, as in a real mediastinum.
"""

from __future__ import annotations

import math

import numpy as np

from esoct.phantom import labels as L
from esoct.phantom.grid import Grid, ellipsoid_box
from esoct.phantom.spec import LAYER_THICKNESS_MM, PatientSpec, TumourSpec, patient_rng
from esoct.phantom.wall import esophagus_box, wall_depth


def _lut(codes) -> np.ndarray:
    lut = np.zeros(256, dtype=bool)
    lut[list(codes)] = True
    return lut


_SOFT = _lut([L.LUNG, L.MEDIASTINAL_FAT])


def render_anatomy(spec: PatientSpec, grid: Grid, tumour: TumourSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Paint the anatomy of a patient on ``grid``, the tumour's wall thickening included (not the tumour).

    Parameters
    ----------
    spec : PatientSpec
        The patient.
    grid : Grid
        Voxel centres (local mm).
    tumour : TumourSpec, optional
        Tumour whose expansile growth thickens the wall (see :mod:`esoct.phantom.wall`).

    Returns
    -------
    anatomy : numpy.ndarray of uint8, shape (z, y, x)
        Codes of :mod:`esoct.phantom.labels`.
    layers : numpy.ndarray of uint8, shape (z, y, x)
        Esophageal wall layers: 0 outside, 1 mucosa, 2 submucosa,
        3 muscularis propria, 4 adventitia, 5 lumen.
    """
    rng = patient_rng(0, spec.index, stream=1)  # same vessels at pre and post
    anatomy = np.zeros(grid.shape, dtype=np.uint8)
    _paint_trunk(anatomy, grid, spec)
    _paint_lung_vessels(anatomy, grid, rng)
    _paint_spine(anatomy, grid, spec)
    sl = _mediastinum_box(grid, spec)
    _paint_envelopes(anatomy, grid, spec, sl)
    _paint_heart(anatomy, grid, spec)
    _paint_aorta(anatomy, grid, spec, sl)
    _paint_airway(anatomy, grid, spec, sl)
    layers = _paint_esophagus(anatomy, grid, spec, tumour)
    return anatomy, layers


def _ellipse2d(grid: Grid, cx, cy, a, b) -> np.ndarray:
    yy, xx = grid.y[:, None], grid.x[None, :]
    return ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0


def _paint_trunk(anatomy: np.ndarray, grid: Grid, spec: PatientSpec) -> None:
    """Body outline, subcutaneous fat, chest-wall muscle, lungs and ribs (z-invariant trunk)."""
    a, b, f = spec.body_a, spec.body_b, spec.fat_mm
    slab = np.zeros(anatomy.shape[1:], dtype=np.uint8)
    slab[_ellipse2d(grid, 0, 0, a, b)] = L.SUBCUTANEOUS_FAT
    slab[_ellipse2d(grid, 0, 0, a - f, b - f)] = L.MUSCLE
    ac, bc = a - f - 12.0, b - f - 12.0
    cavity = _ellipse2d(grid, 0, 0, ac, bc)
    slab[cavity] = L.MEDIASTINAL_FAT
    for side in (-1.0, 1.0):
        lung = _ellipse2d(grid, side * ac * 0.5, -bc * 0.04, ac * 0.47, bc * 0.93)
        slab[lung & cavity] = L.LUNG
    # sternum in the anterior chest wall
    sternum_y = -(b - f) + 9.0
    slab[_ellipse2d(grid, 0, sternum_y, 15.0, 6.5)] = L.BONE_CORTEX
    slab[_ellipse2d(grid, 0, sternum_y, 12.5, 4.0)] = L.BONE_MARROW
    anatomy[:] = slab[None]
    # ribs: segments of a ring just outside the pleural cavity, their angle sweeping with z
    ring = _ellipse2d(grid, 0, 0, ac + 9, bc + 9) & ~_ellipse2d(grid, 0, 0, ac + 1.5, bc + 1.5)
    iy, ix = np.nonzero(ring)
    ang = np.degrees(np.arctan2(grid.y[iy], grid.x[ix]))
    phase = (ang[None, :] + 1.8 * grid.z[:, None]) % 48.0
    iz, k = np.nonzero(phase < 13.0)
    anatomy[iz, iy[k], ix[k]] = L.BONE_CORTEX


def _paint_lung_vessels(anatomy: np.ndarray, grid: Grid, rng: np.random.Generator) -> None:
    """Small enhancing pulmonary vessels, only inside lung."""
    x0, x1 = float(grid.x.min()), float(grid.x.max())
    y0, y1 = float(grid.y.min()), float(grid.y.max())
    z1 = float(grid.z.max())
    pts = np.column_stack([rng.uniform(x0 * 0.8, x1 * 0.8, 90), rng.uniform(y0 * 0.6, y1 * 0.6, 90), rng.uniform(0, z1, 90)])
    radii = rng.uniform(1.2, 3.2, 90)
    for p, r in zip(pts, radii):
        sl, rho = ellipsoid_box(grid, p, (r, r, r * 3.0))
        if sl is None:
            continue
        view = anatomy[sl]
        view[(rho <= 1.0) & (view == L.LUNG)] = L.LUNG_VESSEL


def _paint_spine(anatomy: np.ndarray, grid: Grid, spec: PatientSpec) -> None:
    """Vertebral bodies (cortex, marrow, discs), spinal canal and posterior arch."""
    r, ys = spec.spine_r, spec.spine_y
    body = _ellipse2d(grid, 0, ys, r, r * 0.92)
    marrow = _ellipse2d(grid, 0, ys, r - 2.2, r * 0.92 - 2.2)
    canal_y = ys + r + 8.0
    canal = _ellipse2d(grid, 0, canal_y, 7.5, 7.0)
    arch = _ellipse2d(grid, 0, canal_y + 1.5, 15.0, 13.0) & ~canal & (grid.y[:, None] > canal_y - 2)
    disc_z = (grid.z % 27.0) < 5.0
    for iz in range(anatomy.shape[0]):
        s = anatomy[iz]
        s[body] = L.DISC if disc_z[iz] else L.BONE_CORTEX
        if not disc_z[iz]:
            s[marrow] = L.BONE_MARROW
        s[arch] = L.BONE_CORTEX
        s[canal] = L.SPINAL_CANAL


def _mediastinum_box(grid: Grid, spec: PatientSpec):
    """Index box holding every mediastinal organ (keeps the 3D work small)."""
    lo = (-95.0, spec.eso_y - 150.0, -1e9)
    hi = (110.0, spec.spine_y + 5.0, 1e9)
    return grid.box(lo, hi)


def _tube(grid: Grid, sl, cx, cy, radius) -> np.ndarray:
    """Voxels of box ``sl`` within ``radius`` of a z-dependent centre ``(cx, cy)`` (arrays over z)."""
    zz, yy, xx = grid.coords(sl)
    cx = np.asarray(cx, dtype=np.float32).reshape(-1, 1, 1)
    cy = np.asarray(cy, dtype=np.float32).reshape(-1, 1, 1)
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2


def _aorta_sections(grid: Grid, spec: PatientSpec, sl):
    """z-mask and centres of the descending and ascending aorta within box ``sl``."""
    z = grid.z[sl[0]]
    ax, ay = spec.aorta_center(z)
    below_arch = z <= spec.arch_z
    hz, hsemi = spec.heart_zc, spec.heart_semi
    ascending = (z >= hz + 0.45 * hsemi[2]) & below_arch
    asc_xy = (-18.0, spec.eso_y - 62.0)
    return ax, ay, below_arch, ascending, asc_xy


def _arch_points(spec: PatientSpec) -> np.ndarray:
    """Centreline of the aortic arch, from the ascending to the descending aorta, local mm."""
    t = np.linspace(0, 1, 36)
    ax, ay = spec.aorta_center(spec.arch_z)
    x0, y0 = -18.0, spec.eso_y - 62.0
    x = x0 + (float(ax) - x0) * t + 22.0 * np.sin(math.pi * t)
    y = y0 + (float(ay) - y0) * t
    z = spec.arch_z + 9.0 * np.sin(math.pi * t)
    return np.column_stack([x, y, z])


def _heart_center(spec: PatientSpec) -> tuple[float, float, float]:
    return (18.0, spec.eso_y - spec.outer_r - spec.heart_gap - spec.heart_semi[1], spec.heart_zc)


def _paint_envelopes(anatomy: np.ndarray, grid: Grid, spec: PatientSpec, sl) -> None:
    """Mediastinal fat around every mediastinal organ, painted over lung only."""
    zz, yy, xx = grid.coords(sl)
    z = grid.z[sl[0]]
    ex, ey = spec.eso_center(z)
    env = _tube(grid, sl, ex, ey, spec.outer_r + 9.0)
    # central mediastinal column between airway/heart and spine
    env |= ((xx - ex.reshape(-1, 1, 1)) / 24.0) ** 2 + ((yy - (spec.eso_y - 30.0)) / 45.0) ** 2 <= 1.0
    ax, ay, below_arch, ascending, asc = _aorta_sections(grid, spec, sl)
    env |= _tube(grid, sl, ax, ay, spec.aorta_r + 6.0) & below_arch[:, None, None]
    env |= _tube(grid, sl, np.full_like(z, asc[0]), np.full_like(z, asc[1]), spec.aorta_r * 1.15 + 6.0) & ascending[:, None, None]
    tx, ty = spec.trachea_center(z)
    env |= _tube(grid, sl, tx, ty, spec.trachea_r + 6.0) & (z > spec.carina_z - 30)[:, None, None]
    view = anatomy[sl]
    view[env & _SOFT[view]] = L.MEDIASTINAL_FAT
    for p in _arch_points(spec):
        s2, rho = ellipsoid_box(grid, p, (spec.aorta_r + 6.0,) * 3)
        if s2 is not None:
            v = anatomy[s2]
            v[(rho <= 1.0) & _SOFT[v]] = L.MEDIASTINAL_FAT
    hc = _heart_center(spec)
    s3, rho = ellipsoid_box(grid, hc, tuple(s + 8.0 for s in spec.heart_semi))
    if s3 is not None:
        v = anatomy[s3]
        v[(rho <= 1.0) & _SOFT[v]] = L.MEDIASTINAL_FAT


def _paint_heart(anatomy: np.ndarray, grid: Grid, spec: PatientSpec) -> None:
    """Pericardium (2.5 mm shell), myocardium (9 mm) and enhanced blood pool."""
    hc, semi = _heart_center(spec), spec.heart_semi
    sl, _ = ellipsoid_box(grid, hc, semi)
    if sl is None:
        return
    zz, yy, xx = grid.coords(sl)
    view = anatomy[sl]
    soft = _lut([L.LUNG, L.MEDIASTINAL_FAT, L.LUNG_VESSEL])[view]
    for shrink, code in ((0.0, L.PERICARDIUM), (2.5, L.MYOCARDIUM), (11.5, L.HEART_BLOOD)):
        a, b, c = (s - shrink for s in semi)
        inside = ((xx - hc[0]) / a) ** 2 + ((yy - hc[1]) / b) ** 2 + ((zz - hc[2]) / c) ** 2 <= 1.0
        view[inside & (soft | (view == L.PERICARDIUM) | (view == L.MYOCARDIUM))] = code


def _paint_aorta(anatomy: np.ndarray, grid: Grid, spec: PatientSpec, sl) -> None:
    """Descending aorta beside the esophagus, ascending aorta and the arch."""
    z = grid.z[sl[0]]
    ax, ay, below_arch, ascending, asc = _aorta_sections(grid, spec, sl)
    aorta = _tube(grid, sl, ax, ay, spec.aorta_r) & below_arch[:, None, None]
    aorta |= _tube(grid, sl, np.full_like(z, asc[0]), np.full_like(z, asc[1]), spec.aorta_r * 1.15) & ascending[:, None, None]
    anatomy[sl][aorta] = L.AORTA
    for p in _arch_points(spec):
        s2, rho = ellipsoid_box(grid, p, (spec.aorta_r,) * 3)
        if s2 is not None:
            v = anatomy[s2]
            v[(rho <= 1.0) & (v != L.BONE_CORTEX)] = L.AORTA


def _paint_airway(anatomy: np.ndarray, grid: Grid, spec: PatientSpec, sl) -> None:
    """Trachea above the carina and the two main bronchi below it (2 mm wall)."""
    z = grid.z[sl[0]]
    tx, ty = spec.trachea_center(z)
    above = (z > spec.carina_z)[:, None, None]
    view = anatomy[sl]
    free = _lut([L.LUNG, L.MEDIASTINAL_FAT, L.LUNG_VESSEL])[view]
    wall = _tube(grid, sl, tx, ty, spec.trachea_r) & above
    lumen = _tube(grid, sl, tx, ty, spec.trachea_r - 2.0) & above
    depth = np.clip(spec.carina_z - z, 0, None)
    below = ((z <= spec.carina_z) & (z > spec.carina_z - 32))[:, None, None]
    for side in (-1.0, 1.0):
        bx, by = tx + side * 0.9 * depth, ty + 0.2 * depth
        wall |= _tube(grid, sl, bx, by, 7.0) & below
        lumen |= _tube(grid, sl, bx, by, 5.0) & below
    view[wall & (free | (view == L.TRACHEA_WALL))] = L.TRACHEA_WALL
    view[lumen & (view == L.TRACHEA_WALL)] = L.AIRWAY_LUMEN


_WALL_OVER = _lut([L.LUNG, L.MEDIASTINAL_FAT, L.LUNG_VESSEL])


def _paint_esophagus(anatomy: np.ndarray, grid: Grid, spec: PatientSpec, tumour: TumourSpec | None) -> np.ndarray:
    """Esophageal wall and lumen, and the wall-layer map (by depth below the mucosal surface).

    A thickened wall grows into fat and lung only; it never overwrites a neighbouring organ.
    """
    layers = np.zeros(anatomy.shape, dtype=np.uint8)
    sl = esophagus_box(grid, spec, tumour=tumour)
    depth, _ = wall_depth(grid, spec, tumour, sl)
    bounds = np.cumsum(LAYER_THICKNESS_MM)
    lay = np.zeros(depth.shape, dtype=np.uint8)
    lay[depth <= bounds[3]] = 4
    lay[depth < bounds[2]] = 3
    lay[depth < bounds[1]] = 2
    lay[depth < bounds[0]] = 1
    lay[depth < 0] = 5
    view = anatomy[sl]
    lay[(lay > 0) & ~_WALL_OVER[view]] = 0
    layers[sl] = lay
    view[(lay >= 1) & (lay <= 4)] = L.ESOPHAGUS_WALL
    view[lay == 5] = L.ESOPHAGUS_LUMEN
    return layers


def ray_distance_mm(anatomy: np.ndarray, grid: Grid, start_xy, z: float, theta: float, codes, max_mm: float = 60.0) -> float:
    """Distance from a point along an in-plane ray to the first voxel with a code in ``codes``.

    Parameters
    ----------
    anatomy : numpy.ndarray (z, y, x)
    grid : Grid
    start_xy : tuple of float
        Start point, local mm.
    z : float
        Local height of the ray, mm.
    theta : float
        Ray angle, radians (``atan2(dy, dx)``).
    codes : iterable of int
    max_mm : float

    Returns
    -------
    float
        Distance in mm, or ``inf`` when nothing is hit within ``max_mm``.
    """
    iz = int(np.argmin(np.abs(grid.z - z)))
    s = np.arange(0.0, max_mm, 0.25)
    px = start_xy[0] + s * math.cos(theta)
    py = start_xy[1] + s * math.sin(theta)
    ix = np.clip(np.rint((px - grid.x[0]) / (grid.x[1] - grid.x[0])).astype(int), 0, len(grid.x) - 1)
    iy = np.clip(np.rint((py - grid.y[0]) / (grid.y[1] - grid.y[0])).astype(int), 0, len(grid.y) - 1)
    hit = np.isin(anatomy[iz, iy, ix], list(codes))
    return float(s[np.argmax(hit)]) if hit.any() else math.inf
