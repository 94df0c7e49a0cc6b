"""Differential elasticity map: hand-computed gradient of a ramp, geometry, and entropy equal to PyRadiomics'."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from esoct.errors import InputError
from esoct.features.elasticity import dem_entropy, elasticity_map
from esoct.io.volume import Volume

SPACING = (2.0, 1.5, 1.5)  # (z, y, x) mm
ORIGIN = (-40.0, 12.0, 100.0)  # (x, y, z) mm


def _ramp_and_ball():
    """CT whose HU rise 10 HU/mm along x and 5 HU/mm along y; a 10 mm ball in the middle."""
    shape = (30, 60, 60)
    image = Volume(np.zeros(shape, np.float32), SPACING, ORIGIN)
    zz, yy, xx = np.indices(shape)
    pts = image.index_to_physical(np.stack([zz, yy, xx], axis=-1))  # (x, y, z) mm
    hu = 10.0 * (pts[..., 0] - ORIGIN[0]) + 5.0 * (pts[..., 1] - ORIGIN[1]) - 300.0
    centre = image.index_to_physical(np.array([15.0, 30.0, 30.0]))
    ball = np.linalg.norm(pts - centre, axis=-1) <= 10.0
    return image.with_array(hu.astype(np.float32)), image.with_array(ball.astype(np.uint8))


def _expected(dem: Volume) -> np.ndarray:
    idx = np.argwhere(np.isfinite(dem.array))
    pts = dem.index_to_physical(idx.astype(float))
    hu = 10.0 * (pts[:, 0] - ORIGIN[0]) + 5.0 * (pts[:, 1] - ORIGIN[1]) - 300.0
    return 1000.0 * np.sqrt(10.0**2 + 5.0**2) / (hu + 1000.0)  # per mille / mm


def test_linear_ramp_gives_the_hand_computed_gradient():
    image, ball = _ramp_and_ball()
    dem = elasticity_map(image, ball, context="image")  # isotropic 1 mm, cropped
    assert dem.spacing == (1.0, 1.0, 1.0)
    inside = np.isfinite(dem.array)
    # the resampled ball holds about (4/3) pi 10^3 = 4189 voxels of 1 mm^3
    assert 3900 < inside.sum() < 4500
    np.testing.assert_allclose(dem.array[inside], _expected(dem), rtol=2e-3)
    # the default (segmented voxels only) is exact too wherever the kernel (4 sigma) stays inside
    masked = elasticity_map(image, ball)
    assert masked.same_geometry(dem)
    deep = ndimage.distance_transform_edt(inside) > 4.0
    assert deep.sum() > 300
    np.testing.assert_allclose(masked.array[deep], dem.array[deep], rtol=2e-3)
    assert np.isfinite(masked.array[inside]).all() and (masked.array[inside] > 0).all()
    # |grad| = sqrt(125) = 11.18 HU/mm; at the ball centre HU = 10*45 + 5*45 - 300 = 375 -> 8.131 per mille/mm
    centre = np.round(dem.physical_to_index(image.index_to_physical(np.array([15.0, 30.0, 30.0])))).astype(int)
    assert dem.array[tuple(centre)] == pytest.approx(1000 * np.sqrt(125) / 1375, rel=2e-3)
    assert dem.meta["dem_outside"] == "nan"


def test_native_grid_uncropped_keeps_geometry():
    image, ball = _ramp_and_ball()
    dem = elasticity_map(image, ball, spacing_mm=None, crop=False, sigma_mm=1.5, context="image")
    assert dem.same_geometry(image)
    assert np.array_equal(np.isfinite(dem.array), ball.array.astype(bool))
    np.testing.assert_allclose(dem.array[np.isfinite(dem.array)], _expected(dem), rtol=2e-4)  # float32 HU, truncated kernel


def test_cropped_map_has_exact_physical_geometry():
    image, ball = _ramp_and_ball()
    dem = elasticity_map(image, ball, spacing_mm=None, context="image")
    full = elasticity_map(image, ball, spacing_mm=None, crop=False, context="image")
    assert dem.shape < full.shape
    # same physical voxel -> same value
    idx = np.argwhere(np.isfinite(dem.array))[:50]
    back = np.round(full.physical_to_index(dem.index_to_physical(idx.astype(float)))).astype(int)
    np.testing.assert_allclose(dem.array[tuple(idx.T)], full.array[tuple(back.T)], rtol=1e-9)


def test_mask_context_ignores_the_tissue_around_the_region():
    image, ball = _ramp_and_ball()
    outside = ball.array == 0
    changed = image.with_array(np.where(outside, -1000.0, image.array).astype(np.float32))  # air around
    a = elasticity_map(image, ball, spacing_mm=None)
    b = elasticity_map(changed, ball, spacing_mm=None)
    np.testing.assert_allclose(a.array, b.array, rtol=1e-6, equal_nan=True)
    c = elasticity_map(changed, ball, spacing_mm=None, context="image")
    assert np.nanmax(c.array) > 10 * np.nanmax(a.array)  # the image context sees the air border


def test_label_selection_and_input_errors():
    image, ball = _ramp_and_ball()
    labels = ball.with_array(ball.array * 4)
    dem = elasticity_map(image, labels, label=4, spacing_mm=None)
    assert np.isfinite(dem.array).sum() == ball.array.sum()
    with pytest.raises(InputError, match="no voxel of label 1"):
        elasticity_map(image, labels, label=1, patient="EP0001")
    shifted = Volume(ball.array, SPACING, (0.0, 0.0, 0.0), meta={"source": "EP0001_pre.nii.gz"})
    with pytest.raises(InputError, match="grid differs") as err:
        elasticity_map(image, shifted, patient="EP0001")
    assert err.value.patient == "EP0001" and err.value.path == "EP0001_pre.nii.gz"
    with pytest.raises(InputError, match="context"):
        elasticity_map(image, ball, context="lung")
    with pytest.raises(InputError, match="sigma_mm"):
        elasticity_map(image, ball, sigma_mm=0)


def test_entropy_hand_computed():
    # bin width 5, edges from 0: [0,5) -> 2 values, [5,10) -> 1, [20,25) -> 1 => p = 1/2, 1/4, 1/4 -> 1.5 bits
    values = np.array([[[1.0, 4.9, 5.0, 24.0]]])
    assert dem_entropy(values, np.ones_like(values, bool), bin_width=5) == pytest.approx(1.5, abs=1e-12)
    assert dem_entropy(np.full((1, 1, 3), 7.0), bin_width=5) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(dem_entropy(np.full((1, 1, 3), np.nan)))
    with pytest.raises(InputError, match="NaN or infinite"):
        dem_entropy(np.array([[[1.0, np.nan]]]), np.ones((1, 1, 2), bool))


@pytest.mark.parametrize("settings", [{"binWidth": 1.0}, {"binWidth": 5.0}, {"binWidth": 0.7}, {"binCount": 16}])
def test_entropy_equals_pyradiomics_firstorder_entropy(settings):
    from radiomics import featureextractor

    rng = np.random.default_rng(11)
    image, ball = _ramp_and_ball()
    noisy = image.with_array(image.array + rng.normal(0, 15, image.shape).astype(np.float32))
    dem = elasticity_map(noisy, ball)
    inside = np.isfinite(dem.array)
    ours = dem_entropy(dem, bin_width=settings.get("binWidth", 1.0), bin_count=settings.get("binCount"))
    extractor = featureextractor.RadiomicsFeatureExtractor(**settings)
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(firstorder=["Entropy"])
    result = extractor.execute(dem.with_array(np.nan_to_num(dem.array)).to_sitk(),
                               dem.with_array(inside.astype(np.uint8)).to_sitk())
    assert ours == pytest.approx(float(result["original_firstorder_Entropy"]), rel=1e-12)
    assert ours > 0.5  # a real spread of values, not a single bin
