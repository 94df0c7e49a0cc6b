"""KRT crop around the predicted tumour: centring, padding, geometry, empty-tumour errors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from esoct.classify.krt import krt_crop, krt_from_plan, normalize_ct, whole_volume
from esoct.errors import InputError
from esoct.io.volume import Volume


def _scan(tumour_box, shape=(30, 40, 50), spacing=(2.0, 1.0, 1.5)):
    rng = np.random.default_rng(0)
    image = Volume(rng.integers(-100, 200, shape).astype(np.int16), spacing=spacing, origin=(10.0, -20.0, 5.0))
    labels = np.zeros(shape, np.uint8)
    labels[tuple(slice(a, b) for a, b in tumour_box)] = 1
    labels[:, 2:5, 2:5] = np.where(labels[:, 2:5, 2:5] == 0, 3, labels[:, 2:5, 2:5])  # esophagus strip
    return image, image.with_array(labels)


def test_crop_is_centred_on_the_predicted_tumour_with_exact_geometry():
    # tumour voxels z 10..14, y 20..26, x 30..33: centre of mass (12, 23, 31.5) -> rounded half up (12, 23, 32)
    image, labels = _scan([(10, 15), (20, 27), (30, 34)])
    box = krt_crop(image, labels, (8, 12, 10), patient="EP0001")
    assert box.center_index == (12, 23, 32)
    assert box.start_index == (8, 17, 27)
    assert box.image.shape == (8, 12, 10) and box.mask.shape == (8, 12, 10)
    com = np.argwhere(box.mask.array == 1).mean(axis=0)
    assert np.array_equal(np.floor(com + 0.5).astype(int), np.array([8, 12, 10]) // 2)
    # the pixels are the source's, and the box voxel [0,0,0] sits where source voxel start_index is
    assert np.array_equal(box.image.array, image.array[8:16, 17:29, 27:37])
    assert np.allclose(box.image.origin, image.index_to_physical(box.start_index))
    assert np.allclose(box.image.index_to_physical((4, 6, 5)), image.index_to_physical((12, 23, 32)))
    assert box.image.spacing == image.spacing and box.tumour_inside


def test_padding_outside_the_volume_is_air_and_background():
    image, labels = _scan([(0, 3), (0, 4), (46, 50)])  # tumour in a corner
    box = krt_crop(image, labels, (8, 8, 8), patient="EP0002")
    start = np.array(box.start_index)
    assert (start < 0).any()
    inside = np.zeros((8, 8, 8), bool)
    lo = np.maximum(-start, 0)
    hi = np.minimum(np.array(image.shape) - start, 8)
    inside[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    assert np.all(box.image.array[~inside] == -1024)
    assert np.all(box.mask.array[~inside] == 0)
    assert box.fraction_inside == pytest.approx(inside.mean())
    assert np.all(box.image.array[inside] > -1024)


@pytest.mark.filterwarnings("ignore:patient EP0007. tumour extends beyond")
def test_empty_prediction_names_the_patient_and_fallback_warns():
    image, labels = _scan([(10, 15), (20, 27), (30, 34)])
    empty = labels.with_array(np.where(labels.array == 1, 0, labels.array).astype(np.uint8))
    with pytest.raises(InputError, match=r"patient EP0007.*no tumour voxel"):
        krt_crop(image, empty, (8, 8, 8), fallback_label=None, patient="EP0007")
    with pytest.warns(UserWarning, match="EP0007.*label 3"):
        box = krt_crop(image, empty, (8, 8, 8), patient="EP0007")  # the esophagus is the default fallback
    assert box.center_index[1:] == (3, 3)
    nothing = labels.with_array(np.zeros(labels.shape, np.uint8))
    with pytest.raises(InputError, match="nor label 3"):
        krt_crop(image, nothing, (8, 8, 8), fallback_label=3, patient="EP0007")


def test_plan_box_with_resampling_and_whole_volume_input():
    image, labels = _scan([(10, 15), (20, 27), (30, 34)])
    plan = SimpleNamespace(krt_crop_size=(8, 16, 16), target_spacing=(2.0, 2.0, 2.0))
    box = krt_from_plan(image, labels, plan, patient="EP0003")
    assert box.image.shape == (8, 16, 16) and box.image.spacing == (2.0, 2.0, 2.0)
    com_mm = image.index_to_physical(np.argwhere(labels.array == 1).mean(axis=0))
    centre_mm = box.image.index_to_physical(np.array([8, 16, 16]) // 2)
    assert np.all(np.abs(com_mm - centre_mm) <= 2.0)  # within one target voxel
    small = whole_volume(image, (8, 16, 16))
    assert small.shape == (8, 16, 16) and small.dtype == np.float32
    assert small.mean() == pytest.approx(image.array.mean(), abs=5.0)


def test_ct_normalisation_clips_and_scales():
    out = normalize_ct(np.array([-1024.0, 50.0, 300.0, 2000.0]))
    assert np.allclose(out, [-1.0, 0.0, 1.0, 1.0])
    plan_norm = {"clip_low": -100.0, "clip_high": 100.0, "mean": 0.0, "std": 50.0}
    assert np.allclose(normalize_ct(np.array([-500.0, 25.0]), plan_norm), [-2.0, 0.5])
    with pytest.raises(InputError, match="lacks 'std'"):
        normalize_ct(np.zeros(3), {"clip_low": 0, "clip_high": 1, "mean": 0})
