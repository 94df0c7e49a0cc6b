"""The voxel grid of a phantom scan and painting primitives on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from esoct.phantom.centers import FIELD_OF_VIEW_MM, FULL_RES_MATRIX, Z_EXTENT_MM, CenterProfile

Z_ORIGIN_MM = -500.0
"""Physical (LPS) z of the lowest slice: a typical table position."""


@dataclass(frozen=True)
class Grid:
    """Voxel-centre coordinates of a scan in the phantom's local frame.

    ``x``, ``y``, ``z`` are 1D arrays of voxel-centre positions in mm (local frame:
    body axis at x = y = 0, z from the lowest slice). ``shift`` moves the patient
    in-plane (x, y) in mm, e.g. for repositioning at the post-treatment scan.
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    spacing_zyx: tuple[float, float, float]

    @classmethod
    def for_center(cls, center: CenterProfile, full_res: bool = False, shift=(0.0, 0.0)) -> "Grid":
        """Grid of one centre's protocol; ``full_res`` gives a 512 x 512 matrix."""
        pixel = FIELD_OF_VIEW_MM / FULL_RES_MATRIX if full_res else center.pixel_mm
        n_xy = int(round(FIELD_OF_VIEW_MM / pixel))
        n_z = int(round(Z_EXTENT_MM / center.slice_mm))
        half = (n_xy - 1) / 2 * pixel
        x = np.arange(n_xy, dtype=np.float32) * pixel - half - shift[0]
        y = np.arange(n_xy, dtype=np.float32) * pixel - half - shift[1]
        z = np.arange(n_z, dtype=np.float32) * center.slice_mm + center.slice_mm / 2
        return cls(x, y, z, (center.slice_mm, pixel, pixel))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return (len(self.z), len(self.y), len(self.x))

    @property
    def origin_xyz(self) -> tuple[float, float, float]:
        """Physical LPS position of voxel [0, 0, 0], mm (local frame re-centred at 0 and the table)."""
        sz, sy, sx = self.spacing_zyx
        n_z, n_y, n_x = self.shape
        return (-(n_x - 1) / 2 * sx, -(n_y - 1) / 2 * sy, Z_ORIGIN_MM)

    def box(self, lo_xyz, hi_xyz) -> tuple[slice, slice, slice] | None:
        """Index slices ``(z, y, x)`` of the voxels whose centres lie in a local box, or None if empty."""
        out = []
        for axis, lo, hi in zip((self.z, self.y, self.x), lo_xyz[::-1], hi_xyz[::-1]):
            i0 = int(np.searchsorted(axis, lo, side="left"))
            i1 = int(np.searchsorted(axis, hi, side="right"))
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)

    def coords(self, sl):
        """Broadcastable local coordinates ``(z, y, x)`` of the voxels in index box ``sl``."""
        return (
            self.z[sl[0]][:, None, None],
            self.y[sl[1]][None, :, None],
            self.x[sl[2]][None, None, :],
        )

    def full(self) -> tuple[slice, slice, slice]:
        """Index box covering the whole grid."""
        return (slice(None), slice(None), slice(None))


def paint(labels: np.ndarray, sl, inside: np.ndarray, code: int, allowed=None) -> None:
    """Set ``labels[sl][inside] = code`` where the current label is in ``allowed`` (all if None)."""
    view = labels[sl]
    if allowed is not None:
        inside = inside & np.isin(view, allowed)
    view[inside] = code


def ellipsoid_box(grid: Grid, center, semi, margin: float = 0.0):
    """Index box of an axis-aligned ellipsoid (local mm) and its normalised radius there."""
    lo = [c - s - margin for c, s in zip(center, semi)]
    hi = [c + s + margin for c, s in zip(center, semi)]
    sl = grid.box(lo, hi)
    if sl is None:
        return None, None
    zz, yy, xx = grid.coords(sl)
    rho = ((xx - center[0]) / semi[0]) ** 2 + ((yy - center[1]) / semi[1]) ** 2 + ((zz - center[2]) / semi[2]) ** 2
    return sl, np.sqrt(rho)
