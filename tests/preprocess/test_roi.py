"""The papers' tumour ROIs (ResoLSTM slice sequence, 2.5D slab, nn-TransEC KRT box) on real and synthetic CT."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from esoct.errors import InputError
from esoct.io import Volume, read_image
from esoct.preprocess import (
    krt_box,
    longitudinal_inputs,
    resample,
    resolstm_inputs,
    slab_25d,
    slice_sequence,
)

CASES = ["lung1", "lung2"]


@pytest.fixture(scope="module")
def lung(shared_data):
    d = shared_data / "pyradiomics"
    return {c: (read_image(d / f"{c}_image.nrrd"), read_image(d / f"{c}_label.nrrd")) for c in CASES}


def _synthetic(shape=(10, 40, 50), spacing=(2.0, 0.5, 1.0), direction=None, box=((3, 7), (10, 26), (20, 30))):
    """CT with HU = 2*x - 3*y (physical mm) and a box tumour (label 1) at ``box`` index ranges."""
    direction = np.eye(3) if direction is None else direction
    image = Volume(np.zeros(shape, np.float32), spacing=spacing, origin=(-20.0, 10.0, -100.0), direction=direction)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    p = image.index_to_physical(idx)
    image = image.with_array((2 * p[..., 0] - 3 * p[..., 1]).astype(np.float32))
    labels = np.zeros(shape, np.uint8)
    labels[tuple(slice(a, b) for a, b in box)] = 1
    return image, Volume(labels, spacing=spacing, origin=image.origin, direction=direction, meta={"source": "m.nrrd"})


# -- (a) ResoLSTM-Depth slice sequence ----------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_slice_sequence_real(lung, case):
    image, mask = lung[case]
    tumour = mask.array == 1
    seq = slice_sequence(image, mask)
    tumour_slices = np.flatnonzero(tumour.any(axis=(1, 2)))
    n = len(tumour_slices)
    assert seq.images.shape == (n, 224, 224) and seq.images.dtype == np.float32
    assert seq.masks.shape == (n, 224, 224) and seq.masks.dtype == np.uint8
    assert sorted(seq.slice_index) == list(tumour_slices)
    # head to foot: LPS z decreases; with an identity direction that is decreasing z index
    assert np.all(np.diff(seq.z_mm) < 0)
    np.testing.assert_array_equal(seq.slice_index, tumour_slices[::-1])
    np.testing.assert_allclose(seq.z_mm, image.index_to_physical(np.c_[seq.slice_index, [0] * n, [0] * n])[:, 2])
    sy, sx = image.spacing[1:]
    for r, k in enumerate(seq.slice_index):
        jj, ii = np.nonzero(tumour[k])
        diameter = max((np.ptp(jj) + 1) * sy, (np.ptp(ii) + 1) * sx)
        assert seq.side_mm[r] == pytest.approx(1.1 * diameter)
        assert seq.pixel_size_mm[r] == pytest.approx(1.1 * diameter / 224)
        # every tumour pixel, edges included, lies in the square (physical mm around the ROI centre)
        p = image.index_to_physical(np.c_[np.full(len(jj), k), jj, ii])
        half = seq.side_mm[r] / 2
        assert np.all(np.abs(p[:, 0] - seq.center_mm[r, 0]) + sx / 2 <= half + 1e-6)
        assert np.all(np.abs(p[:, 1] - seq.center_mm[r, 1]) + sy / 2 <= half + 1e-6)
        # the margin leaves background all around the tumour
        m = seq.masks[r]
        assert m[0].sum() == m[-1].sum() == m[:, 0].sum() == m[:, -1].sum() == 0
        # the ROI mask covers the slice's tumour area (mm^2) in its own pixel size
        area = len(jj) * sy * sx
        assert m.sum() * seq.pixel_size_mm[r] ** 2 == pytest.approx(area, rel=0.1)
        # HU inside the tumour match the source (linear interpolation of the same pixels)
        assert float(seq.images[r][m == 1].mean()) == pytest.approx(float(image.array[k][tumour[k]].mean()), abs=25)


def test_resolstm_inputs_range_and_relation(lung):
    for case in CASES:
        image, mask = lung[case]
        raw = slice_sequence(image, mask)
        seq = resolstm_inputs(image, mask, patient="P001")
        assert seq.images.dtype == np.float32
        assert seq.images.min() >= 0.0 and seq.images.max() <= 1.0
        np.testing.assert_allclose(seq.images, np.clip((raw.images + 145) / 370, 0, 1), atol=1e-6)
        np.testing.assert_array_equal(seq.masks, raw.masks)
    # lung2's ROIs hold both lung (< -145 HU) and bone/contrast (> 225 HU)
    seq2 = resolstm_inputs(*lung["lung2"])
    assert seq2.images.min() == 0.0 and seq2.images.max() == 1.0


def test_slice_sequence_samples_square_pixels_in_physical_space():
    image, mask = _synthetic()  # pixels 0.5 mm (y) x 1.0 mm (x); tumour 16 x 10 pixels = 8 mm x 10 mm
    seq = slice_sequence(image, mask, size=32)
    assert seq.images.shape == (4, 32, 32)
    np.testing.assert_allclose(seq.diameter_mm, 10.0)
    np.testing.assert_allclose(seq.side_mm, 11.0)
    offs = (np.arange(32) - 15.5) * 11.0 / 32
    for r in range(4):
        cx, cy = seq.center_mm[r, :2]
        x, y = cx + offs[None, :], cy + offs[:, None]  # columns follow x, rows follow y
        np.testing.assert_allclose(seq.images[r], 2 * x - 3 * y, atol=1e-3)
    # tumour is 8 mm tall (y) and 10 mm wide (x) in an 11 mm square: 8/11 x 10/11 of the pixels
    assert seq.masks[0].sum() == pytest.approx(32 * 32 * 8 / 11 * 10 / 11, rel=0.1)


def test_slice_sequence_pads_with_air_at_the_edge():
    image, mask = _synthetic(box=((3, 5), (0, 8), (44, 50)))  # tumour touching the y=0 and x=49 borders
    seq = slice_sequence(image, mask, size=64)
    assert (seq.images[:, 0, :] == -1024).all() and (seq.images[:, :, -1] == -1024).all()
    assert (seq.images[:, 40, 10] != -1024).all()


def test_slice_sequence_order_follows_direction_not_array():
    flip = np.diag([1.0, 1.0, -1.0])  # z index increases towards the feet
    image, mask = _synthetic(direction=flip)
    seq = slice_sequence(image, mask, size=16)
    np.testing.assert_array_equal(seq.slice_index, [3, 4, 5, 6])
    assert np.all(np.diff(seq.z_mm) < 0)


def test_slice_sequence_margin_rules():
    image, mask = _synthetic()
    with pytest.warns(UserWarning, match="1.0-1.2"):
        seq = slice_sequence(image, mask, margin=1.5, size=8)
    np.testing.assert_allclose(seq.side_mm, 15.0)
    for bad in (0.9, 2.5):
        with pytest.raises(ValueError, match="margin"):
            slice_sequence(image, mask, margin=bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        slice_sequence(image, mask, margin=1.2, size=8)


# -- (b) 2.5D slab ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_slab_real(lung, case):
    image, mask = lung[case]
    tumour = mask.array == 1
    slab = slab_25d(image, mask)
    assert slab.channels.shape == (7, 224, 224) and slab.channels.dtype == np.float32
    assert slab.masks.shape == (7, 224, 224)
    area = tumour.sum(axis=(1, 2))
    assert area[slab.center_index] == area.max()
    assert slab.area_mm2 == pytest.approx(area.max() * image.spacing[1] * image.spacing[2])
    c = slab.center_index
    np.testing.assert_array_equal(slab.slice_index, np.arange(c + 3, c - 4, -1))  # head to foot
    assert slab.n_padded == 0
    assert np.all(np.diff(slab.z_mm) < 0)
    y0, y1, x0, x1 = slab.box
    union = tumour[slab.slice_index].any(axis=0)
    jj, ii = np.nonzero(union)
    assert (jj.min(), jj.max() + 1, ii.min(), ii.max() + 1) == (y0, y1, x0, x1)  # minimal and complete
    assert not union[:y0].any() and not union[y1:].any() and not union[:, :x0].any() and not union[:, x1:].any()
    # nearest neighbour: every output value is a source value of its slice; corners map to corners
    for ch, k in enumerate(slab.slice_index):
        assert np.isin(slab.channels[ch], image.array[k, y0:y1, x0:x1]).all()
        assert slab.channels[ch, 0, 0] == image.array[k, y0, x0]
        assert slab.channels[ch, -1, -1] == image.array[k, y1 - 1, x1 - 1]
    assert set(np.unique(slab.masks)) == {0, 1}
    assert slab.masks[3].sum() > 0


def test_slab_nearest_resize_maps_pixel_centres_symmetrically():
    image, mask = _synthetic(shape=(3, 6, 6), box=((0, 3), (1, 5), (1, 4)))  # 4 rows x 3 columns
    values = np.arange(3 * 6 * 6, dtype=np.float32).reshape(3, 6, 6)
    slab = slab_25d(image.with_array(values), mask, n_adjacent=0, size=3)
    assert slab.box == (1, 5, 1, 4)
    # rows: centres of 3 output pixels fall in source rows 0, 2, 3 of the 4-row crop; columns map 1:1
    np.testing.assert_array_equal(slab.channels[0], values[slab.center_index][np.ix_([1, 3, 4], [1, 2, 3])])


def test_slab_replicates_edge_slices():
    image, mask = _synthetic(shape=(6, 20, 20), box=((4, 6), (5, 9), (5, 9)))
    mask.array[5, 4:10, 4:10] = 1  # slice 5 (the top, most superior slice) is the largest
    slab = slab_25d(image, mask, size=16)
    assert slab.center_index == 5
    np.testing.assert_array_equal(slab.slice_index, [5, 5, 5, 5, 4, 3, 2])
    assert slab.n_padded == 3
    np.testing.assert_array_equal(slab.channels[0], slab.channels[3])
    assert slab.box == (4, 10, 4, 10)


def test_longitudinal_inputs_on_lung2(lung):
    image, mask = lung["lung2"]
    slab = longitudinal_inputs(image, mask, patient="P002")
    assert slab.channels.shape == (7, 224, 224) and np.isfinite(slab.channels).all()
    # 1 mm isotropic: the channels are 1 mm apart and the largest area matches the original grid's
    np.testing.assert_allclose(np.diff(slab.z_mm), -1.0)
    assert slab.area_mm2 == pytest.approx(slab_25d(image, mask).area_mm2, rel=0.05)
    # z-scored with the windowed scan's statistics: window bounds map to these values
    w = np.clip(image.array.astype(np.float64), -125, 225)
    lo, hi = (-125 - w.mean()) / w.std(), (225 - w.mean()) / w.std()
    assert slab.channels.min() == pytest.approx(lo, abs=1e-5)  # lung, clipped to -125 HU
    assert slab.channels.max() == pytest.approx(hi, abs=1e-5)  # contrast / bone, clipped to 225 HU
    # the whole-scan resampling gives the same slab up to the placement of the 1 mm grid
    full = longitudinal_inputs(image, mask, crop_margin_mm=None)
    assert full.area_mm2 == pytest.approx(slab.area_mm2, rel=0.02)
    assert float(full.channels[3][full.masks[3] == 1].mean()) == pytest.approx(
        float(slab.channels[3][slab.masks[3] == 1].mean()), abs=0.05)
    with pytest.raises(ValueError, match="crop_margin_mm"):
        longitudinal_inputs(image, mask, crop_margin_mm=5.0)


# -- (c) KRT box -----------------------------------------------------------------------------------
def test_krt_box_real_lung1_native_grid(lung):
    image, mask = lung["lung1"]
    tumour = np.argwhere(mask.array == 1)
    box = krt_box(image, mask)
    assert box.image.shape == box.mask.shape == (128, 64, 64)
    assert box.image.array.dtype == np.int16  # int16 holds the air fill
    np.testing.assert_array_equal(box.center_index, np.floor(tumour.mean(axis=0) + 0.5).astype(int))
    np.testing.assert_array_equal(box.start_index, np.array(box.center_index) - (64, 32, 32))
    # geometry is exact: box voxel [0,0,0] sits at the source's start index, the centre at size // 2
    np.testing.assert_allclose(box.image.index_to_physical([0, 0, 0]), image.index_to_physical(box.start_index))
    np.testing.assert_allclose(box.mask.index_to_physical([64, 32, 32]), image.index_to_physical(box.center_index))
    assert box.image.same_geometry(box.mask)
    assert box.tumour_inside and int((box.mask.array == 1).sum()) == len(tumour) == 837
    # 48 slices of 5 mm in a 128-slice box: the rest is air padding
    assert box.fraction_inside == pytest.approx(48 / 128)
    z0 = -box.start_index[0]
    assert (box.image.array[:z0] == -1024).all() and (box.mask.array[:z0] == 0).all()
    s = box.start_index
    np.testing.assert_array_equal(box.image.array[z0:z0 + 48], image.array[:, s[1]:s[1] + 64, s[2]:s[2] + 64])


def test_krt_box_real_lung2_needs_1mm(lung):
    image, mask = lung["lung2"]  # tumour 55 x 41 x 55 mm (z, y, x) at 0.63 mm pixels: 87 pixels wide
    with pytest.warns(UserWarning, match="beyond the KRT box"):
        native = krt_box(image, mask, patient="P002")
    assert not native.tumour_inside and native.image.shape == (128, 64, 64)
    img1 = resample(image, (1.0, 1.0, 1.0), interpolator="linear")
    msk1 = resample(mask, (1.0, 1.0, 1.0), is_label=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        box = krt_box(img1, msk1, patient="P002")
    assert box.image.shape == (128, 64, 64) and box.image.spacing == (1.0, 1.0, 1.0)
    assert box.tumour_inside
    assert int((box.mask.array == 1).sum()) == int((msk1.array == 1).sum())
    assert box.fraction_inside == 1.0
    np.testing.assert_allclose(box.image.origin, img1.index_to_physical(box.start_index))
    s = box.start_index
    np.testing.assert_array_equal(box.image.array, img1.array[s[0]:s[0] + 128, s[1]:s[1] + 64, s[2]:s[2] + 64])


def test_krt_box_pads_with_air_near_the_edge_and_bbox_centre():
    image, mask = _synthetic(shape=(10, 40, 50), box=((0, 3), (0, 4), (46, 50)))
    mask.array[0, 0, 46] = 0  # make the centre of mass differ from the bbox centre
    ct = image.with_array(np.rint(image.array).astype(np.int16))
    box = krt_box(ct, mask, size_zyx=(8, 8, 8))
    assert box.tumour_inside
    assert box.fraction_inside < 1.0
    assert (box.image.array[: -box.start_index[0]] == -1024).all()
    assert (box.image.array[:, :, 8 - (box.start_index[2] + 8 - 50):] == -1024).all()
    assert (box.mask.array[box.image.array == -1024] == 0).all()
    assert box.mask.array.sum() == mask.array.sum()
    bbox = krt_box(ct, mask, size_zyx=(8, 8, 8), center="bbox")
    assert bbox.center_index == (1, 2, 48)  # (0+2)/2, (0+3)/2 -> 2 (half up), (46+49)/2 -> 48
    # an image type that cannot hold -1024 becomes float32
    u8 = krt_box(ct.with_array(np.zeros(ct.shape, np.uint8)), mask, size_zyx=(8, 8, 8))
    assert u8.image.array.dtype == np.float32 and u8.image.array.min() == -1024


def test_krt_box_warns_when_the_tumour_does_not_fit():
    image, mask = _synthetic()
    with pytest.warns(UserWarning, match="P9: tumour extends beyond"):
        box = krt_box(image, mask, size_zyx=(2, 4, 4), patient="P9")
    assert not box.tumour_inside and box.mask.array.sum() == 2 * 4 * 4


# -- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [slice_sequence, slab_25d, krt_box, resolstm_inputs, longitudinal_inputs])
def test_empty_mask_names_the_patient(fn):
    image, mask = _synthetic()
    empty = mask.with_array(np.zeros(mask.shape, np.uint8))
    with pytest.raises(InputError, match="patient P042.*no voxel with label 1") as err:
        fn(image, empty, patient="P042")
    assert err.value.patient == "P042" and err.value.path == "m.nrrd"
    with pytest.raises(InputError, match="label 2"):
        fn(image, mask, label=2)


@pytest.mark.parametrize("fn", [slice_sequence, slab_25d, krt_box])
def test_mismatched_geometry_is_an_input_error(fn):
    image, mask = _synthetic()
    shifted = Volume(mask.array, spacing=mask.spacing, origin=(0.0, 0.0, 0.0), meta=mask.meta)
    with pytest.raises(InputError, match="patient P7.*grids differ.*origin"):
        fn(image, shifted, patient="P7")
    other = Volume(mask.array[:, :, :-1], spacing=mask.spacing, origin=mask.origin)
    with pytest.raises(InputError, match="size"):
        fn(image, other)
    with pytest.raises(TypeError, match="Volume"):
        fn(image.array, mask)


def test_non_axial_scan_is_rejected():
    sagittal = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    image, mask = _synthetic(direction=sagittal)
    with pytest.raises(InputError, match="not axial"):
        slice_sequence(image, mask)


def test_krt_inputs_on_lung2_holds_the_whole_tumour_at_1mm(shared_data):
    """lung2's tumour (~48 cm3, 55 x 41 x 55 mm) fits the 128 x 64 x 64 box at 1 mm, volume kept."""
    from esoct.preprocess.roi import krt_inputs

    image = read_image(shared_data / "pyradiomics" / "lung2_image.nrrd")
    mask = read_image(shared_data / "pyradiomics" / "lung2_label.nrrd")
    box = krt_inputs(image, mask, patient="lung2")
    assert box.image.shape == (128, 64, 64) and box.image.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert box.tumour_inside
    v_ref = (mask.array == 1).sum() * mask.voxel_volume_mm3
    v_box = (box.mask.array == 1).sum() * box.mask.voxel_volume_mm3
    assert v_box == pytest.approx(v_ref, rel=0.05)
    centroid_ref = mask.index_to_physical(np.argwhere(mask.array == 1).mean(axis=0))
    centroid_box = box.mask.index_to_physical(np.argwhere(box.mask.array == 1).mean(axis=0))
    assert np.linalg.norm(centroid_box - centroid_ref) < 2.0
    centre_box = box.image.index_to_physical((np.array(box.image.shape) - 1) / 2)
    assert np.linalg.norm(centre_box - centroid_ref) < 2.0
    inside = box.image.array[box.mask.array == 1]
    assert -150 < inside.mean() < 150  # soft-tissue tumour, not air padding
