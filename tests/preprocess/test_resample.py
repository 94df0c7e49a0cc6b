"""Resampling to a new spacing and onto another grid, on synthetic volumes and real lung CT."""

from __future__ import annotations

import numpy as np
import pytest

from esoct.io import Volume, read_image
from esoct.preprocess import median_spacing, resample, resample_like


def _oblique() -> np.ndarray:
    a = np.deg2rad(30)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def _ramp(shape=(10, 20, 30), spacing=(3.0, 0.5, 0.8), direction=None) -> Volume:
    """Values = 2*x - 3*y + 0.5*z of the voxel's physical (LPS, mm) position."""
    vol = Volume(np.zeros(shape, np.float32), spacing=spacing, origin=(-12.0, 40.0, -300.0),
                 direction=_oblique() if direction is None else direction)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    p = vol.index_to_physical(idx)
    return vol.with_array((2 * p[..., 0] - 3 * p[..., 1] + 0.5 * p[..., 2]).astype(np.float32))


def _tumour_stats(vol: Volume, label: int = 1):
    idx = np.argwhere(vol.array == label)
    return len(idx) * vol.voxel_volume_mm3, vol.index_to_physical(idx).mean(axis=0)


def _edges(vol: Volume):
    """Physical lower/upper voxel-edge positions per index axis, (z, y, x) order, for an axis-aligned volume."""
    lo, hi = vol.physical_bounds()
    half = np.asarray(vol.spacing_xyz) / 2
    return (lo - half)[::-1], (hi + half)[::-1]


def test_grid_size_origin_direction():
    vol = _ramp()
    out = resample(vol, (1.5, 1.0, 1.6), interpolator="linear")
    assert out.shape == (20, 10, 15)  # round(10*3/1.5), round(20*0.5/1), round(30*0.8/1.6)
    assert out.spacing == (1.5, 1.0, 1.6)
    assert out.origin == vol.origin
    np.testing.assert_array_equal(out.direction, vol.direction)
    assert out.array.dtype == np.float32
    # odd ratios round to the nearest voxel count
    assert resample(vol, (7.0, 3.0, 3.0), interpolator="linear").shape == (4, 3, 8)


@pytest.mark.parametrize("interpolator", ["linear", "bspline"])
def test_values_follow_physical_space_in_oblique_volume(interpolator):
    vol = _ramp()
    out = resample(vol, (2.0, 1.0, 1.0), interpolator=interpolator)
    idx = np.argwhere(np.ones(out.shape, bool))
    p = out.index_to_physical(idx)
    expected = (2 * p[:, 0] - 3 * p[:, 1] + 0.5 * p[:, 2]).reshape(out.shape)
    inner = (slice(4, out.shape[0] - 4), slice(2, out.shape[1] - 3), slice(2, out.shape[2] - 3))
    # a linear field is reproduced by both interpolators away from the borders (values span ~200)
    np.testing.assert_allclose(out.array[inner], expected[inner], atol=0.02)


@pytest.mark.parametrize("interpolator", ["nearest", "linear", "bspline"])
def test_half_spacing_keeps_original_samples(interpolator):
    rng = np.random.default_rng(0)
    vol = Volume(rng.normal(0, 100, (6, 8, 10)).astype(np.float32), spacing=(4.0, 2.0, 1.0),
                 origin=(1.0, 2.0, 3.0))
    out = resample(vol, (2.0, 1.0, 0.5), interpolator=interpolator)
    assert out.shape == (12, 16, 20)
    # B-spline interpolation passes through the input samples
    np.testing.assert_allclose(out.array[::2, ::2, ::2], vol.array, atol=1e-2)


def test_outside_input_gets_default_value():
    vol = Volume(np.full((4, 3, 3), 100, np.int16), spacing=(5.0, 1.0, 1.0))
    out = resample(vol, (1.0, 1.0, 1.0), interpolator="linear")
    assert out.shape == (20, 3, 3)
    # centres up to 17.5 mm lie within half an input voxel of the last slice (15 mm)
    np.testing.assert_array_equal(out.array[:18], 100.0)
    np.testing.assert_array_equal(out.array[18:], -1024.0)
    assert (resample(vol, (1, 1, 1), interpolator="linear", default_value=-1000).array[19] == -1000).all()
    lab = resample(vol.with_array(np.ones((4, 3, 3), np.uint8)), (1, 1, 1), is_label=True)
    assert lab.array.dtype == np.uint8 and (lab.array[18:] == 0).all() and (lab.array[:18] == 1).all()


def test_labels_keep_dtype_and_label_set():
    labels = np.zeros((8, 12, 12), np.int16)
    labels[2:6, 3:9, 3:9] = 1
    labels[3:5, 4:6, 4:6] = 2
    labels[1:3, 0:3, 9:12] = 5
    vol = Volume(labels, spacing=(5.0, 0.7, 0.7), direction=_oblique())
    out = resample(vol, (2.0, 1.0, 1.0), is_label=True)
    assert out.array.dtype == np.int16
    assert set(np.unique(out.array)) == {0, 1, 2, 5}
    as_bool = resample(vol.with_array(labels == 1), (2.0, 1.0, 1.0), is_label=True)
    assert as_bool.array.dtype == bool
    np.testing.assert_array_equal(as_bool.array, out.array == 1)


def test_bad_arguments():
    vol = Volume(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="nearest"):
        resample(vol, (1, 1, 1), is_label=True, interpolator="linear")
    with pytest.raises(ValueError, match="unknown interpolator"):
        resample(vol, (1, 1, 1), interpolator="cubic")
    with pytest.raises(ValueError, match="positive"):
        resample(vol, (1, 0, 1))


def test_resample_like_puts_a_mask_on_the_image_grid():
    image = _ramp(shape=(12, 40, 40), spacing=(2.5, 0.75, 0.75), direction=np.eye(3))
    # shifted by 0.2 mm so that no image voxel centre lies exactly on the box's faces
    coarse = Volume(np.zeros((6, 10, 10), np.uint8), spacing=(5.0, 3.0, 3.0),
                    origin=tuple(np.asarray(image.origin) + 0.2))
    coarse.array[2:4, 3:6, 4:7] = 1
    on_image = resample_like(coarse, image, is_label=True)
    assert on_image.same_geometry(image, atol=0)
    assert on_image.array.dtype == np.uint8
    vol_mm3, centre = _tumour_stats(on_image)
    ref_mm3, ref_centre = _tumour_stats(coarse)
    assert vol_mm3 == pytest.approx(ref_mm3, rel=0.1)
    # nearest neighbour can shift the centroid by at most half a target voxel per axis
    assert np.all(np.abs(centre - ref_centre) <= np.asarray(image.spacing_xyz) / 2)
    img_on_coarse = resample_like(image, coarse, interpolator="linear")
    assert img_on_coarse.same_geometry(coarse) and img_on_coarse.array.dtype == np.float32


def test_median_spacing():
    spacings = [(5.0, 0.7, 0.7), (2.5, 0.8, 0.9), (1.0, 0.6, 0.6)]
    assert median_spacing(spacings) == (2.5, 0.7, 0.7)
    vols = [Volume(np.zeros((2, 2, 2)), spacing=s) for s in spacings + [(3.0, 0.75, 0.8)]]
    assert median_spacing(vols) == pytest.approx((2.75, 0.725, 0.75))
    with pytest.raises(ValueError, match="at least one"):
        median_spacing([])


@pytest.fixture(scope="module")
def lung1(shared_data):
    d = shared_data / "pyradiomics"
    return read_image(d / "lung1_image.nrrd"), read_image(d / "lung1_label.nrrd")


def test_real_lung1_label_to_1mm_keeps_volume_centroid_extent(lung1):
    _, mask = lung1
    assert mask.spacing == pytest.approx((5.0, 0.5703125, 0.5703125))
    ref_mm3, ref_centre = _tumour_stats(mask)
    assert ref_mm3 == pytest.approx(837 * 0.5703125**2 * 5.0)
    out = resample(mask, (1.0, 1.0, 1.0), is_label=True)
    assert out.shape == (240, 292, 292)
    assert out.array.dtype == mask.array.dtype
    assert set(np.unique(out.array)) == set(np.unique(mask.array)) == {0, 1}
    vol_mm3, centre = _tumour_stats(out)
    assert vol_mm3 == pytest.approx(ref_mm3, rel=0.1)
    np.testing.assert_allclose(centre, ref_centre, atol=1.0)
    # physical extent: same length to within one output voxel, edges within half the coarser voxel
    np.testing.assert_allclose(np.array(out.shape) * out.spacing, np.array(mask.shape) * mask.spacing, atol=1.0)
    for a, b in zip(_edges(out), _edges(mask)):
        assert np.all(np.abs(a - b) <= np.maximum(out.spacing, mask.spacing) / 2 + 1e-6)


def test_real_lung2_image_bspline_2mm_keeps_tumour_hu(shared_data):
    d = shared_data / "pyradiomics"
    image, mask = read_image(d / "lung2_image.nrrd"), read_image(d / "lung2_label.nrrd")
    img2 = resample(image, (2.0, 2.0, 2.0))  # B-spline by default
    msk2 = resample(mask, (2.0, 2.0, 2.0), is_label=True)
    assert img2.same_geometry(msk2)
    assert img2.shape == (152, 160, 160)
    original = float(image.array[mask.array == 1].mean())  # 7.6 HU
    assert float(img2.array[msk2.array == 1].mean()) == pytest.approx(original, abs=15.0)
    vol_mm3, centre = _tumour_stats(msk2)
    ref_mm3, ref_centre = _tumour_stats(mask)
    assert vol_mm3 == pytest.approx(ref_mm3, rel=0.05)
    np.testing.assert_allclose(centre, ref_centre, atol=1.0)
    # body HU range is kept (B-spline may overshoot slightly at sharp edges)
    assert -1300 < img2.array.min() < -1000 and 1500 < img2.array.max() < 1800
