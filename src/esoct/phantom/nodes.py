"""Mediastinal lymph nodes: benign ones oval and homogeneous, metastatic ones larger, rounder, rougher."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from esoct.phantom import labels as L
from esoct.phantom.grid import Grid, ellipsoid_box
from esoct.phantom.spec import NodeSpec

def _nudges() -> list[tuple[float, float, float]]:
    """Offsets (x, y, z mm) tried in turn until a node fits in mediastinal fat: nearest first."""
    out = [(0.0, 0.0, 0.0)]
    for dz in (0.0, 8.0, -8.0, 16.0, -16.0):
        for radius in (6.0, 11.0, 16.0, 22.0):
            for a in np.linspace(0, 2 * math.pi, 12, endpoint=False):
                out.append((radius * math.cos(a), radius * math.sin(a), dz))
    return out


_NUDGES = _nudges()


def node_shape(grid: Grid, node: NodeSpec, center, scale: float = 1.0):
    """Index box and boolean shape of a node with an undulating (rough) surface."""
    semi = tuple(s * scale for s in node.semi_axes)
    sl, rho = ellipsoid_box(grid, center, semi, margin=max(semi) * node.irregularity + 1.0)
    if sl is None:
        return None, None, None
    zz, yy, xx = grid.coords(sl)
    dx, dy, dz = xx - center[0], yy - center[1], zz - center[2]
    az = np.arctan2(dy, dx)
    el = np.arctan2(dz, np.sqrt(dx * dx + dy * dy) + 1e-6)
    p = node.phase
    bumps = (
        0.45 * np.sin(3 * az + p[0]) * np.cos(2 * el + p[1])
        + 0.3 * np.sin(5 * az + 3 * el + p[2])
        + 0.25 * np.sin(8 * az + p[3]) * np.sin(4 * el + p[4])
    )
    return sl, rho <= 1.0 + node.irregularity * bumps, rho


def paint_nodes(anatomy: np.ndarray, grid: Grid, nodes: list[NodeSpec], tumour: np.ndarray, scales=None) -> list[dict]:
    """Paint lymph nodes into mediastinal fat, away from the tumour, nudging them until they fit.

    Parameters
    ----------
    anatomy : numpy.ndarray (z, y, x), modified in place
    grid : Grid
    nodes : list of NodeSpec
    tumour : numpy.ndarray of bool
        Tumour mask; nodes keep one voxel away from it.
    scales : list of float, optional
        Size factor per node (post-treatment shrinkage).

    Returns
    -------
    list of dict
        Per node: station, metastatic, the centre actually used (local mm), voxel count.
    """
    away = ~ndimage.binary_dilation(tumour, iterations=2) if tumour.any() else np.ones(anatomy.shape, bool)
    placed = []
    for i, node in enumerate(nodes):
        scale = 1.0 if scales is None else scales[i]
        result = {"station": node.station, "metastatic": node.metastatic, "center_local_mm": None, "voxels": 0}
        for nudge in _NUDGES if node.center is not None else []:
            center = tuple(c + d for c, d in zip(node.center, nudge))
            sl, shape, _ = node_shape(grid, node, center, scale)
            if sl is None or not shape.any():
                continue
            view = anatomy[sl]
            free = (view == L.MEDIASTINAL_FAT) & away[sl]
            if free[shape].mean() >= 0.9:
                view[shape & free] = L.LYMPH_NODE
                result.update(center_local_mm=[round(float(c), 3) for c in center], voxels=int((shape & free).sum()))
                break
        placed.append(result)
    return placed
