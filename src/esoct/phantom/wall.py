"""Geometry of the esophageal wall about its centreline, including the tumour's wall thickening.

A tumour thickens the wall it infiltrates (expansile growth): within the tumour's
extent the wall is stretched radially by ``s = 1 + (thickening - 1) * profile``.
Depth below the mucosal surface is measured in the unstretched frame, so the
layer a voxel belongs to -- and hence the T stage -- does not depend on how
much the wall is thickened, while the tumour's volume does.
"""

from __future__ import annotations

import numpy as np

from esoct.phantom.grid import Grid
from esoct.phantom.spec import LAYER_THICKNESS_MM, PatientSpec, TumourSpec

WALL_MM = float(sum(LAYER_THICKNESS_MM))


def profile(ang, z, theta, half_width, z_center, length):
    """Smooth 0..1 bump over angle (rad) and height (mm): 1 at ``(theta, z_center)``, 0 outside the extent."""
    u = (z - z_center) / (length / 2)
    delta = np.angle(np.exp(1j * (ang - theta))) / half_width
    return np.sqrt(np.clip(1 - u**2, 0, None)) * np.sqrt(np.clip(1 - np.abs(delta) ** 4, 0, None))


def stretch(tumour: TumourSpec | None, ang, z):
    """Radial stretch factor of the wall (1 outside the tumour)."""
    if tumour is None:
        return np.ones(np.broadcast(ang, z).shape, dtype=np.float32)
    p = profile(ang, z, tumour.theta0, tumour.half_width_rad, tumour.z_center, tumour.length_mm)
    return 1 + (tumour.thickening - 1) * p


def esophagus_polar(grid: Grid, spec: PatientSpec, sl):
    """Radius (mm) and angle (rad, atan2 of y over x) about the esophageal centreline, in box ``sl``."""
    zz, yy, xx = grid.coords(sl)
    ex, ey = spec.eso_center(grid.z[sl[0]])
    dx = xx - ex.reshape(-1, 1, 1).astype(np.float32)
    dy = yy - ey.reshape(-1, 1, 1).astype(np.float32)
    return np.sqrt(dx * dx + dy * dy), np.arctan2(dy, dx)


def wall_depth(grid: Grid, spec: PatientSpec, tumour: TumourSpec | None, sl):
    """Depth below the mucosal surface in the unstretched frame (mm; < 0 in the lumen) and angle, in box ``sl``.

    Inside the stretched wall depth is ``(r - R_lumen) / s``; beyond it, the wall
    thickness plus the physical distance from the stretched outer surface.
    """
    r, ang = esophagus_polar(grid, spec, sl)
    z = grid.z[sl[0]].reshape(-1, 1, 1)
    s = stretch(tumour, ang, z)
    rho = r - spec.lumen_r
    depth = np.where(rho < s * WALL_MM, rho / s, rho - (s - 1) * WALL_MM)
    return np.where(rho < 0, rho, depth).astype(np.float32), ang


def esophagus_box(grid: Grid, spec: PatientSpec, margin: float = 0.0, z_range=None, tumour: TumourSpec | None = None):
    """Index box around the (possibly thickened) esophagus plus ``margin`` mm, optionally limited to ``z_range``."""
    z = grid.z
    ex, _ = spec.eso_center(z)
    extra = 0.0 if tumour is None else (tumour.thickening - 1) * WALL_MM
    ro = spec.outer_r + extra + margin + 1.0
    z0, z1 = z_range if z_range is not None else (-1e9, 1e9)
    return grid.box((float(ex.min()) - ro, spec.eso_y - ro, z0), (float(ex.max()) + ro, spec.eso_y + ro, z1))
