"""CT differential elasticity map (DEM) of a segmented region and its first-order entropy.

The RLN paper (seeds/rln-lymph-node-dem-radiomics.txt) builds "three-dimensional CT elasticity
images from segmented CT voxels" but does not publish the formula. esoct uses a documented,
reproducible stand-in (see docs/elasticity.md):

    DEM(x) = 1000 * |grad S|(x) / (S(x) + 1000 HU)        [per mille / mm]

on the image ``I`` (HU) resampled to an isotropic grid, ``S`` its Gaussian smoothing (standard
deviation ``sigma_mm``) over the segmented voxels only (normalised convolution) and ``grad S`` its
Gaussian-derivative gradient. ``I + 1000 HU`` is proportional to the physical density (water = 1000,
air = 0), so the map is the *relative density change per millimetre*: a tissue compressed or
stretched by a strain ``e`` changes its density by the fraction ``e``, and the spatial derivative of
the relative density is a differential (local) strain proxy. Homogeneous, soft tissue gives a flat,
low map; heterogeneous tissue (necrosis, infiltration) gives a high, varied one.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from esoct.errors import InputError
from esoct.io.volume import Volume

DENSITY_OFFSET_HU = 1000.0  # I + 1000 HU is proportional to physical density (air 0, water 1000)
DEFAULT_SIGMA_MM = 1.0
DEFAULT_SPACING_MM = 1.0
DEFAULT_BIN_WIDTH = 1.0  # per mille / mm
_MIN_DENSITY_HU = 1.0  # floor of the denominator (I + 1000), so air gives a finite value


def elasticity_map(
    volume: Volume,
    mask: Volume,
    *,
    label: int | None = None,
    sigma_mm: float = DEFAULT_SIGMA_MM,
    spacing_mm: float | None = DEFAULT_SPACING_MM,
    crop: bool = True,
    context: str = "mask",
    patient: str | None = None,
) -> Volume:
    """Differential elasticity map (DEM) of the voxels of ``mask``.

    ``DEM = 1000 * |grad S| / max(S + 1000, 1)``, in per mille of density per mm (module docstring),
    where ``S`` is the image smoothed by a Gaussian of ``sigma_mm`` and ``grad S`` its
    Gaussian-derivative gradient (HU/mm). With ``context="mask"`` (default) only the segmented
    voxels enter: ``S = G*(I M) / G*(M)`` (normalised convolution, ``M`` the mask) and
    ``grad S = (G'*(I M) G*(M) - G*(I M) G'*(M)) / G*(M)^2``, so the map describes the node itself,
    as the paper builds it "from segmented CT voxels", and not the contrast with the fat, vessel or
    airway next to it (which would make the map a measure of size and shape). ``context="image"``
    smooths and differentiates the whole image instead.

    Parameters
    ----------
    volume : Volume
        CT image in HU, array ``(z, y, x)``.
    mask : Volume
        Binary mask or label map on the same grid as ``volume``.
    label : int, optional
        Voxels ``mask == label`` form the region; default: every non-zero voxel.
    sigma_mm : float
        Standard deviation of the Gaussian derivative, mm (default 1 mm, about one voxel of the
        resampled grid: the finest scale the data support without amplifying noise).
    spacing_mm : float or None
        Isotropic voxel size (mm) the image (B-spline) and the mask (nearest neighbour) are
        resampled to first (default 1 mm, PyRadiomics' and nnU-Net's usual choice), so the
        gradient and the fractal box sizes mean the same physical distance in every direction.
        None keeps the input grid.
    crop : bool
        Work on (and return) the mask's bounding box plus a margin of ``4 sigma + 2 voxels``
        (clipped to the volume) instead of the whole volume: same values, much faster.
    context : {"mask", "image"}
        Voxels the smoothing and the gradient use: the region only (normalised convolution) or the
        whole image. Both are exact on a linear ramp at least ``4 sigma`` inside the region; with
        ``"mask"`` the first ``4 sigma`` from the border are estimated from the inside only.
    patient : str, optional
        Pseudonymous patient id, named in errors.

    Returns
    -------
    Volume
        float64 map ``(z, y, x)``, per mille / mm. Voxels outside the (resampled) mask are **NaN**,
        so ``numpy.isfinite(map.array)`` is the region on the output grid. Origin and direction
        are exact physical ones (the crop's first voxel); spacing is ``spacing_mm`` (isotropic)
        or the input's.

    Raises
    ------
    InputError
        Grids of ``volume`` and ``mask`` differ, the region is empty, or ``sigma_mm`` /
        ``spacing_mm`` is not positive.

    Examples
    --------
    >>> ramp = Volume(np.tile(np.arange(20.0) * 10.0, (20, 20, 1)))  # 10 HU/mm along x
    >>> dem = elasticity_map(ramp, ramp.with_array(np.ones(ramp.shape)), spacing_mm=None, crop=False)
    >>> round(float(dem.array[10, 10, 10]), 2)  # 1000 * 10 / (100 + 1000) = 9.09
    9.09
    """
    region = _region(volume, mask, label, patient)
    if not sigma_mm > 0:
        raise InputError(f"sigma_mm must be positive, got {sigma_mm}", patient=patient)
    if context not in ("mask", "image"):
        raise InputError(f"context must be 'mask' or 'image', got {context!r}", patient=patient)
    if spacing_mm is not None and not spacing_mm > 0:
        raise InputError(f"spacing_mm must be positive or None, got {spacing_mm}", patient=patient)
    image = volume.with_array(np.asarray(volume.array, dtype=np.float32))
    roi = mask.with_array(region.astype(np.uint8))
    if crop:
        margin_mm = 4.0 * sigma_mm + 2.0 * max(spacing_mm or 0.0, max(volume.spacing))
        image, roi = _crop_around(image, roi, region, margin_mm)
    if spacing_mm is not None:
        from esoct.preprocess.resample import resample

        iso = (float(spacing_mm),) * 3
        image = resample(image, iso)
        roi = resample(roi, iso, is_label=True)
    inside = roi.array.astype(bool)
    if not inside.any():
        raise InputError(
            f"the region vanished when resampled to {spacing_mm} mm voxels (too small)", patient=patient
        )
    sigma_vox = [sigma_mm / s for s in image.spacing]
    hu = image.array.astype(np.float64)
    if context == "mask":
        weight = inside.astype(np.float64)
        smooth, grads = _smooth_and_gradient(hu * weight, sigma_vox, image.spacing)
        w, wgrads = _smooth_and_gradient(weight, sigma_vox, image.spacing)
        w = np.where(inside, np.maximum(w, 1e-12), 1.0)
        grads = [(g * w - smooth * wg) / (w * w) for g, wg in zip(grads, wgrads)]
        smooth = smooth / w
    else:
        smooth, grads = _smooth_and_gradient(hu, sigma_vox, image.spacing)
    magnitude = np.sqrt(sum(g * g for g in grads))  # HU / mm
    dem = 1000.0 * magnitude / np.maximum(smooth + DENSITY_OFFSET_HU, _MIN_DENSITY_HU)
    dem[~inside] = np.nan
    out = image.with_array(dem)
    out.meta.update(dem_sigma_mm=float(sigma_mm), dem_context=context, dem_units="per mille / mm", dem_outside="nan")
    return out


def dem_entropy(dem: Volume | np.ndarray, mask=None, *, bin_width: float = DEFAULT_BIN_WIDTH,
                bin_count: int | None = None) -> float:
    """First-order entropy of a map inside a mask, exactly as PyRadiomics' ``firstorder_Entropy``.

    Values are discretised like PyRadiomics (fixed bin width: edges equally spaced from 0,
    ``floor(x / W) - floor(min / W) + 1``; or fixed bin count), then
    ``entropy = -sum_i p_i log2(p_i + eps)`` with ``eps = numpy.spacing(1)``.

    Parameters
    ----------
    dem : Volume or numpy.ndarray
        The map, e.g. from :func:`elasticity_map` (per mille / mm), array ``(z, y, x)``.
    mask : Volume or numpy.ndarray of bool, optional
        Region on the same grid; default: the finite voxels of ``dem``.
    bin_width : float
        Fixed bin width in the map's units (default 1 per mille / mm).
    bin_count : int, optional
        Use this many equal bins between the region's minimum and maximum instead.

    Returns
    -------
    float
        Entropy in bits; NaN for an empty region.

    Raises
    ------
    InputError
        Shapes differ, the region holds non-finite values, or ``bin_width`` is not positive.

    References
    ----------
    .. [1] van Griethuysen JJM et al. Computational radiomics system to decode the radiographic
       phenotype. Cancer Research 77(21):e104-e107, 2017 (firstorder Entropy, getBinEdges).
    """
    values = _region_values(dem, mask)
    if values.size == 0:
        return float("nan")
    edges = pyradiomics_bin_edges(values, bin_width=bin_width, bin_count=bin_count)
    _, counts = np.unique(np.digitize(values, edges), return_counts=True)
    p = counts / values.size
    return float(-np.sum(p * np.log2(p + np.spacing(1))))


def pyradiomics_bin_edges(values: np.ndarray, *, bin_width: float = DEFAULT_BIN_WIDTH,
                          bin_count: int | None = None) -> np.ndarray:
    """Bin edges as PyRadiomics' ``imageoperations.getBinEdges`` computes them.

    Parameters
    ----------
    values : numpy.ndarray
        The region's values (1-D, finite).
    bin_width : float
        Fixed bin width (ignored when ``bin_count`` is given).
    bin_count : int, optional
        Fixed number of bins.

    Returns
    -------
    numpy.ndarray
        Edges for ``numpy.digitize`` (half-open bins ``[lower, upper)``).
    """
    if bin_count is not None:
        if int(bin_count) < 1:
            raise InputError(f"bin_count must be a positive integer, got {bin_count}")
        edges = np.histogram(values, int(bin_count))[1]
        edges[-1] += 1
        return edges
    if not bin_width > 0:
        raise InputError(f"bin_width must be positive, got {bin_width}")
    low, high = values.min(), values.max()
    edges = np.arange(low - (low % bin_width), high + 2 * bin_width, bin_width)
    if len(edges) == 1:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return edges


# -- helpers ----------------------------------------------------------------------
def _region(volume: Volume, mask: Volume, label: int | None, patient: str | None) -> np.ndarray:
    if not isinstance(volume, Volume) or not isinstance(mask, Volume):
        raise InputError("elasticity_map needs Volume inputs (image and mask with their geometry)", patient=patient)
    if not volume.same_geometry(mask):
        where = mask.meta.get("source")
        raise InputError(
            "mask grid differs from the image grid: " + "; ".join(volume.geometry_differences(mask)), where, patient
        )
    region = mask.array != 0 if label is None else mask.array == label
    if not region.any():
        what = "no non-zero voxel" if label is None else f"no voxel of label {label}"
        raise InputError(f"the mask has {what}", mask.meta.get("source"), patient)
    return region


def _smooth_and_gradient(arr: np.ndarray, sigma_vox, spacing) -> tuple[np.ndarray, list[np.ndarray]]:
    """Gaussian smoothing and Gaussian-derivative gradient (per mm) along (z, y, x)."""
    smooth = ndimage.gaussian_filter(arr, sigma_vox, mode="nearest")
    orders = [[int(a == axis) for a in range(3)] for axis in range(3)]
    grads = [
        ndimage.gaussian_filter(arr, sigma_vox, order=o, mode="nearest") / spacing[axis] for axis, o in enumerate(orders)
    ]
    return smooth, grads


def _crop_around(image: Volume, roi: Volume, region: np.ndarray, margin_mm: float) -> tuple[Volume, Volume]:
    idx = np.argwhere(region)
    pad = np.ceil(margin_mm / np.asarray(image.spacing)).astype(int)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + 1 + pad, image.shape)
    return image.crop(lo, hi - lo), roi.crop(lo, hi - lo)


def _region_values(dem, mask) -> np.ndarray:
    arr = np.asarray(dem.array if isinstance(dem, Volume) else dem, dtype=float)
    if mask is None:
        inside = np.isfinite(arr)
    else:
        inside = np.asarray(mask.array if isinstance(mask, Volume) else mask) != 0
        if inside.shape != arr.shape:
            raise InputError(f"mask shape {inside.shape} differs from the map's {arr.shape}")
    values = arr[inside]
    if not np.isfinite(values).all():
        raise InputError(f"{int((~np.isfinite(values)).sum())} voxels inside the mask are NaN or infinite")
    return values
