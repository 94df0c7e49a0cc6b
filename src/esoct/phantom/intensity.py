"""Turn a phantom anatomy map into Hounsfield units: tissue values, textures, blur and scanner noise."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from esoct.phantom import labels as L
from esoct.phantom.centers import CenterProfile
from esoct.phantom.grid import Grid
from esoct.phantom.nodes import node_shape
from esoct.phantom.spec import NodeSpec, PatientSpec, TumourSpec

# Mean HU of each tissue (unenhanced or independent of contrast timing).
BASE_HU = {
    L.AIR: -1000.0,
    L.SUBCUTANEOUS_FAT: -105.0,
    L.MUSCLE: 48.0,
    L.LUNG: -855.0,
    L.BONE_CORTEX: 780.0,
    L.BONE_MARROW: 235.0,
    L.MEDIASTINAL_FAT: -92.0,
    L.PERICARDIUM: 28.0,
    L.TRACHEA_WALL: 70.0,
    L.AIRWAY_LUMEN: -995.0,
    L.ESOPHAGUS_WALL: 40.0,
    L.ESOPHAGUS_LUMEN: 12.0,
    L.SPINAL_CANAL: 22.0,
    L.DISC: 85.0,
}
# Wall layers as they enhance (mucosa bright, submucosa dark: the CT "target" sign).
LAYER_HU = {1: 62.0, 2: 18.0, 3: 46.0, 4: 24.0}

# In-plane / through-plane blur of the reconstruction (voxel units) and the
# resulting reduction of white-noise standard deviation.
_BLUR_SIGMA = (0.3, 0.65, 0.65)


def _noise_gain() -> float:
    delta = np.zeros((9, 9, 9), dtype=np.float64)
    delta[4, 4, 4] = 1.0
    return float(np.sqrt((ndimage.gaussian_filter(delta, _BLUR_SIGMA) ** 2).sum()))


_NOISE_GAIN = _noise_gain()


def _contrast_hu(spec: PatientSpec) -> dict[int, float]:
    a = spec.aorta_hu
    return {L.AORTA: a, L.HEART_BLOOD: 0.9 * a, L.MYOCARDIUM: 60.0 + 0.18 * a, L.LUNG_VESSEL: 0.55 * a}


def smooth_field(rng: np.random.Generator, shape, sigma_vox) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ``sigma_vox`` (voxels, per axis)."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    sd = float(f.std())
    return f / sd if sd > 0 else f


def _texture(hu, region, rng, grid: Grid, mean_hu, amp_hu, scale_mm, necrosis_hu=0.0):
    """Fill ``region`` (bool, full grid) of ``hu`` with a textured value (in place)."""
    if not region.any():
        return
    idx = np.nonzero(region)
    sl = tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
    sigma = tuple(max(scale_mm / s, 0.3) for s in grid.spacing_zyx)
    field = smooth_field(rng, tuple(s.stop - s.start for s in sl), sigma)
    values = mean_hu + amp_hu * field
    if necrosis_hu:
        values = np.where(field < -1.1, values - necrosis_hu, values)
    view = hu[sl]
    r = region[sl]
    view[r] = values[r]


def synthesize_hu(
    anatomy: np.ndarray,
    layers: np.ndarray,
    grid: Grid,
    spec: PatientSpec,
    tumour: TumourSpec,
    center: CenterProfile,
    rng: np.random.Generator,
    node_scales=None,
) -> np.ndarray:
    """CT intensities of a phantom scan.

    Parameters
    ----------
    anatomy, layers : numpy.ndarray of uint8, shape (z, y, x)
    grid : Grid
    spec : PatientSpec
    tumour : TumourSpec
        The tumour as painted (its HU and texture parameters).
    center : CenterProfile
        Noise level of the scanner.
    rng : numpy.random.Generator
        Noise and texture source for this scan.
    node_scales : list of float, optional
        Node size factors used when painting (to find node cores).

    Returns
    -------
    numpy.ndarray of int16, shape (z, y, x)
        Hounsfield units clipped to [-1024, 3071].
    """
    lut = np.zeros(256, dtype=np.float32)
    for code, value in {**BASE_HU, **_contrast_hu(spec)}.items():
        lut[code] = value
    hu = lut[anatomy]
    wall = anatomy == L.ESOPHAGUS_WALL
    layer_lut = np.zeros(256, dtype=np.float32)
    for k, v in LAYER_HU.items():
        layer_lut[k] = v
    hu[wall] = layer_lut[layers[wall]]
    lung = anatomy == L.LUNG
    hu[lung] += 22.0 * smooth_field(rng, lung.shape, (1.0, 3.0, 3.0))[lung]
    enhancement = 0.06 * (spec.aorta_hu - 200.0)
    _texture(hu, anatomy == L.TUMOUR, rng, grid, tumour.hu + enhancement, tumour.texture_hu, tumour.texture_scale_mm,
             necrosis_hu=25.0 if tumour.texture_trait > 0.8 else 0.0)
    _paint_node_hu(hu, anatomy, grid, spec.nodes, rng, node_scales, enhancement)
    noise = rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(center.noise_hu / _NOISE_GAIN)
    hu += noise
    hu = ndimage.gaussian_filter(hu, _BLUR_SIGMA)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def _paint_node_hu(hu, anatomy, grid, nodes: list[NodeSpec], rng, scales, enhancement) -> None:
    for i, node in enumerate(nodes):
        if node.center is None:
            continue
        scale = 1.0 if scales is None else scales[i]
        sl, shape, rho = node_shape(grid, node, node.center, scale)
        if sl is None:
            continue
        region = shape & (anatomy[sl] == L.LYMPH_NODE)
        if not region.any():
            continue
        field = smooth_field(rng, region.shape, 0.8)
        values = node.hu + enhancement + node.heterogeneity_hu * field
        if node.necrosis:
            values = np.where(rho < 0.5, values - 22.0, values)
        view = hu[sl]
        view[region] = values[region]
