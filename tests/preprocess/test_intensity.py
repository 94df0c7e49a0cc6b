"""HU clipping, windows, min-max and z-score on arrays and Volumes."""

from __future__ import annotations

import numpy as np
import pytest

from esoct.errors import InputError
from esoct.io import Volume
from esoct.preprocess import clip_hu, minmax, window, zscore


def _volume(arr) -> Volume:
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return Volume(np.asarray(arr), spacing=(5.0, 0.7, 0.8), origin=(-10.0, 20.0, -300.0), direction=rot,
                  meta={"source": "ct.nrrd"})


def _assert_same_geometry(out, vol):
    assert isinstance(out, Volume)
    assert out.same_geometry(vol, atol=0)
    assert out.meta == vol.meta
    assert out.array.dtype == np.float32


def test_clip_hu_boundaries_and_defaults():
    x = np.array([-3000, -146, -145, -144.5, 0, 224.5, 225, 226, 3071], dtype=np.float64)
    out = clip_hu(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [-145, -145, -145, -144.5, 0, 224.5, 225, 225, 225])
    np.testing.assert_array_equal(clip_hu(np.array([-500, 500], np.int16), -100, 100), [-100, 100])
    with pytest.raises(ValueError, match="low < high"):
        clip_hu(x, 10, 10)


def test_window_50_350_equals_clip_minus125_225():
    rng = np.random.default_rng(1)
    x = rng.integers(-1024, 3000, size=(4, 8, 8)).astype(np.int16)
    np.testing.assert_array_equal(window(x), clip_hu(x, -125, 225))
    np.testing.assert_array_equal(window(x, 40, 400), clip_hu(x, -160, 240))
    assert window(x).min() == -125 and window(x).max() == 225
    with pytest.raises(ValueError, match="width"):
        window(x, 50, 0)


def test_minmax_from_data_spans_zero_to_one_linearly():
    x = np.array([[-20.0, 0.0], [30.0, 80.0]])
    out = minmax(x)
    np.testing.assert_allclose(out, [[0.0, 0.2], [0.5, 1.0]], rtol=0, atol=1e-7)
    assert out.dtype == np.float32


def test_minmax_fixed_bounds_after_clip():
    hu = np.array([-1024, -145, 40, 225, 1000], dtype=np.int16)
    out = minmax(clip_hu(hu, -145, 225), -145, 225)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)
    # fixed bounds, not the data's range: a narrow ROI is not stretched
    narrow = minmax(np.array([0.0, 40.0]), -145, 225)
    np.testing.assert_allclose(narrow, [145 / 370, 0.5], atol=1e-6)
    # values beyond fixed bounds are clipped into [0, 1]
    np.testing.assert_array_equal(minmax(np.array([-500.0, 500.0]), -145, 225), [0.0, 1.0])
    with pytest.raises(ValueError, match="low <= high"):
        minmax(hu, 10, -10)


def test_minmax_constant_input_gives_zeros_without_nan():
    out = minmax(np.full((3, 3), 7.0))
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, 0.0)


def test_zscore_whole_array():
    rng = np.random.default_rng(2)
    x = rng.normal(40.0, 25.0, size=(6, 10, 10))
    out = zscore(x)
    assert out.dtype == np.float32
    assert abs(float(out.mean())) < 1e-5
    assert float(out.std()) == pytest.approx(1.0, abs=1e-5)


def test_zscore_statistics_inside_mask_applied_everywhere():
    x = np.zeros((2, 4, 4))
    x[0] = np.arange(16).reshape(4, 4)  # inside the mask: 0..15
    x[1] = 1000.0  # outside
    mask = np.zeros_like(x, dtype=np.uint8)
    mask[0] = 1
    out = zscore(x, mask)
    inside = out[0]
    assert abs(float(inside.mean())) < 1e-6
    assert float(inside.std()) == pytest.approx(1.0, abs=1e-6)
    mean, std = 7.5, np.std(np.arange(16))
    assert out[1, 0, 0] == pytest.approx((1000.0 - mean) / std, rel=1e-6)


def test_zscore_errors_are_clear():
    with pytest.raises(InputError, match="standard deviation 0"):
        zscore(np.full((2, 2, 2), 5.0))
    x = np.arange(8.0).reshape(2, 2, 2)
    with pytest.raises(InputError, match="constant"):
        zscore(x, np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]]))
    with pytest.raises(InputError, match="no voxel"):
        zscore(x, np.zeros_like(x))
    with pytest.raises(ValueError, match="shape"):
        zscore(x, np.ones((2, 2)))


def test_volumes_keep_geometry_and_are_not_modified():
    rng = np.random.default_rng(3)
    arr = rng.integers(-1024, 2000, size=(3, 5, 7)).astype(np.int16)
    vol = _volume(arr)
    before = arr.copy()
    outs = [clip_hu(vol), window(vol), minmax(vol), minmax(vol, -145, 225), zscore(vol)]
    for out in outs:
        _assert_same_geometry(out, vol)
    np.testing.assert_array_equal(vol.array, before)
    np.testing.assert_array_equal(outs[1].array, window(arr))
    mask = _volume((arr > 0).astype(np.uint8))
    z = zscore(vol, mask)
    _assert_same_geometry(z, vol)
    assert abs(float(z.array[arr > 0].mean())) < 1e-4
