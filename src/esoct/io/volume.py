"""Volume: a 3D array that carries its spacing, origin and direction everywhere.

Axis conventions
----------------
* ``array`` is indexed ``(z, y, x)`` (slice, row, column), as SimpleITK's
  ``GetArrayFromImage`` returns it.
* ``spacing`` is given in the same ``(z, y, x)`` order, in millimetres, so that
  ``array.shape[i]`` and ``spacing[i]`` describe the same axis.
* ``origin`` is the physical position (LPS, millimetres) of voxel ``[0, 0, 0]``
  in ``(x, y, z)`` order, as DICOM and ITK give it.
* ``direction`` is the 3x3 ITK direction matrix: column ``j`` is the physical
  (x, y, z) unit vector of index axis ``j`` where index axes are ordered
  ``(i, j, k) = (x, y, z)`` -- exactly ``sitk.Image.GetDirection()`` reshaped.

The physical position of array element ``[k, j, i]`` is therefore
``origin + direction @ ([i, j, k] * spacing_xyz)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image or label map with its geometry.

    Parameters
    ----------
    array : numpy.ndarray
        Voxel values, shape ``(z, y, x)``.
    spacing : tuple of float
        Voxel size in mm, ``(z, y, x)`` order (same order as ``array`` axes).
    origin : tuple of float
        Physical LPS position in mm of voxel ``[0, 0, 0]``, ``(x, y, z)`` order.
    direction : numpy.ndarray
        3x3 direction cosine matrix (ITK convention, columns are index axes x, y, z).
    meta : dict
        Free-form, non-identifying metadata (series description, modality...).

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(np.zeros((4, 3, 2)), spacing=(5.0, 1.0, 1.0))
    >>> v.shape, v.spacing_xyz
    ((4, 3, 2), (1.0, 1.0, 5.0))
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        arr = np.asarray(self.array)
        if arr.ndim != 3:
            raise ValueError(f"Volume needs a 3D (z, y, x) array, got shape {arr.shape}")
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ValueError(f"spacing must be three positive numbers (z, y, x) in mm, got {self.spacing}")
        origin = tuple(float(o) for o in self.origin)
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    # -- basic properties -------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(self.array.shape)

    @property
    def spacing_xyz(self) -> tuple[float, float, float]:
        """Spacing in ITK's ``(x, y, z)`` order, mm."""
        return tuple(reversed(self.spacing))

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Grid size in ITK's ``(x, y, z)`` order."""
        return tuple(reversed(self.shape))

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in cubic millimetres."""
        return float(np.prod(self.spacing))

    def with_array(self, array: np.ndarray) -> "Volume":
        """Return a Volume with the same geometry and a new array of the same shape."""
        array = np.asarray(array)
        if array.shape != self.shape:
            raise ValueError(f"new array shape {array.shape} differs from volume shape {self.shape}")
        return Volume(array, self.spacing, self.origin, self.direction, dict(self.meta))

    # -- geometry -----------------------------------------------------------
    def index_to_physical(self, index_zyx) -> np.ndarray:
        """Map (possibly fractional) array indices to physical points.

        Parameters
        ----------
        index_zyx : array_like, shape (..., 3)
            Indices in ``(z, y, x)`` order.

        Returns
        -------
        numpy.ndarray, shape (..., 3)
            Physical LPS coordinates in mm, ``(x, y, z)`` order.
        """
        idx = np.asarray(index_zyx, dtype=float)[..., ::-1]
        return np.asarray(self.origin) + (idx * np.asarray(self.spacing_xyz)) @ self.direction.T

    def physical_to_index(self, points_xyz) -> np.ndarray:
        """Map physical LPS points (mm, ``(x, y, z)``) to fractional ``(z, y, x)`` indices."""
        pts = np.asarray(points_xyz, dtype=float) - np.asarray(self.origin)
        idx_xyz = (pts @ np.linalg.inv(self.direction).T) / np.asarray(self.spacing_xyz)
        return idx_xyz[..., ::-1]

    def same_geometry(self, other: "Volume", atol: float = 1e-3) -> bool:
        """True when both volumes share shape, spacing, origin and direction.

        ``atol`` is in mm for spacing and origin and unitless for the direction cosines.
        """
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
            and np.allclose(self.direction, other.direction, atol=atol)
        )

    def geometry_differences(self, other: "Volume", atol: float = 1e-3) -> list[str]:
        """Describe, in words, how the geometry of ``other`` differs from this one."""
        out = []
        if self.shape != other.shape:
            out.append(f"size (x, y, z) {other.size_xyz} vs {self.size_xyz}")
        if not np.allclose(self.spacing, other.spacing, atol=atol):
            out.append(f"spacing (x, y, z) {_fmt(other.spacing_xyz)} vs {_fmt(self.spacing_xyz)} mm")
        if not np.allclose(self.origin, other.origin, atol=atol):
            out.append(f"origin {_fmt(other.origin)} vs {_fmt(self.origin)} mm")
        if not np.allclose(self.direction, other.direction, atol=atol):
            out.append("direction " + _fmt(other.direction.ravel()) + " vs " + _fmt(self.direction.ravel()))
        return out

    def physical_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned physical bounding box of the voxel centres, ``(min_xyz, max_xyz)`` in mm."""
        corners = np.array(
            [[z, y, x] for z in (0, self.shape[0] - 1) for y in (0, self.shape[1] - 1) for x in (0, self.shape[2] - 1)]
        )
        pts = self.index_to_physical(corners)
        return pts.min(axis=0), pts.max(axis=0)

    def crop(self, start_zyx, size_zyx, fill=0) -> "Volume":
        """Cut a box of ``size_zyx`` voxels starting at ``start_zyx``, padding with ``fill``.

        The box may extend outside the volume; the returned Volume's origin is the
        physical position of the box's first voxel, so geometry stays exact.
        """
        start = np.asarray(start_zyx, dtype=int)
        size = np.asarray(size_zyx, dtype=int)
        out = np.full(tuple(size), fill, dtype=self.array.dtype)
        src_lo = np.maximum(start, 0)
        src_hi = np.minimum(start + size, self.shape)
        if np.all(src_hi > src_lo):
            dst_lo = src_lo - start
            dst_hi = dst_lo + (src_hi - src_lo)
            out[tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi))] = self.array[
                tuple(slice(a, b) for a, b in zip(src_lo, src_hi))
            ]
        origin = self.index_to_physical(start.astype(float))
        return Volume(out, self.spacing, tuple(origin), self.direction, dict(self.meta))

    # -- SimpleITK interchange ---------------------------------------------
    @classmethod
    def from_sitk(cls, image, meta: dict | None = None) -> "Volume":
        """Build a Volume from a 3D ``SimpleITK.Image``."""
        import SimpleITK as sitk

        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError("expected a scalar image, got a multi-component one")
        return cls(
            sitk.GetArrayFromImage(image),
            spacing=tuple(reversed(image.GetSpacing())),
            origin=image.GetOrigin(),
            direction=np.asarray(image.GetDirection()).reshape(3, 3),
            meta=dict(meta or {}),
        )

    def to_sitk(self):
        """Return a ``SimpleITK.Image`` with the same voxels and geometry."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetSpacing(self.spacing_xyz)
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(self.direction.ravel()))
        return image

    def __repr__(self) -> str:
        return (
            f"Volume(shape(z,y,x)={self.shape}, dtype={self.array.dtype}, spacing(z,y,x)={_fmt(self.spacing)} mm, "
            f"origin(x,y,z)={_fmt(self.origin)} mm)"
        )


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"
