"""Segmentation metrics: hand-computed values on simple shapes, a brute-force reference, MONAI on real masks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats
from scipy.spatial.distance import cdist

from esoct.errors import InputError
from esoct.evaluate.segmentation import (
    average_symmetric_surface_distance,
    cohort_volume_agreement,
    dice,
    hausdorff_distance,
    iou,
    label_volumes_ml,
    segmentation_scores,
    segmentation_table,
    surface_distances,
    surface_voxels,
    volume_agreement,
)
from esoct.io.imageio import read_image, write_image
from esoct.io.volume import Volume

SPACING = (2.5, 0.8, 1.1)  # (z, y, x) mm, deliberately anisotropic and different on every axis


def _cubes(n: int, k: int, axis: int, shape=(24, 24, 24), start=4):
    ref = np.zeros(shape, bool)
    ref[start : start + n, start : start + n, start : start + n] = True
    pred = np.roll(ref, k, axis=axis)
    return ref, pred


def _brute_force(ref: np.ndarray, pred: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Surface by an explicit 6-neighbour test and distances by all pairs (independent of scipy's EDT)."""

    def surface(m):
        padded = np.pad(m, 1)
        inner = np.ones_like(m)
        for ax in range(3):
            for step in (-1, 1):
                inner &= np.roll(padded, step, axis=ax)[1:-1, 1:-1, 1:-1]
        return m & ~inner

    a = np.argwhere(surface(pred)) * np.asarray(spacing)
    b = np.argwhere(surface(ref)) * np.asarray(spacing)
    d = cdist(a, b)
    return d.min(axis=1), d.min(axis=0)


# ---------------------------------------------------------------- hand-computed shapes


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_cubes_offset_by_k_voxels(axis, k):
    n = 10
    ref, pred = _cubes(n, k, axis)
    s = segmentation_scores(ref, pred, SPACING)
    assert s.dice == pytest.approx((n - k) / n, abs=1e-12)
    assert s.iou == pytest.approx((n - k) / (n + k), abs=1e-12)
    assert s.hd_mm == pytest.approx(k * SPACING[axis], abs=1e-9)  # the top face moves by exactly k voxels
    assert s.hd95_mm <= k * SPACING[axis] + 1e-9
    assert s.volume_ref_ml == s.volume_pred_ml == pytest.approx(n**3 * np.prod(SPACING) / 1000)
    assert s.note == ""
    # ASSD against an all-pairs computation of the same definition
    d1, d2 = _brute_force(ref, pred, SPACING)
    assert s.assd_mm == pytest.approx((d1.sum() + d2.sum()) / (d1.size + d2.size), rel=1e-12)
    assert s.hd95_mm == pytest.approx(max(np.percentile(d1, 95), np.percentile(d2, 95)), rel=1e-12)


def test_single_voxels_k_apart():
    ref = np.zeros((9, 9, 9), bool)
    pred = ref.copy()
    ref[4, 4, 1] = True
    pred[4, 4, 6] = True
    assert hausdorff_distance(ref, pred, SPACING) == pytest.approx(5 * SPACING[2])
    assert average_symmetric_surface_distance(ref, pred, SPACING) == pytest.approx(5 * SPACING[2])
    assert dice(ref, pred) == 0.0 and iou(ref, pred) == 0.0


def test_identical_masks_score_perfectly():
    ref, _ = _cubes(6, 0, 0)
    s = segmentation_scores(ref, ref, SPACING)
    assert (s.dice, s.iou, s.hd95_mm, s.hd_mm, s.assd_mm) == (1.0, 1.0, 0.0, 0.0, 0.0)


def test_surface_is_face_connected_boundary_including_array_border():
    m = np.ones((3, 4, 5), bool)  # fills the array: every voxel touching the border is surface
    surf = surface_voxels(m)
    assert surf.sum() == m.size - 1 * 2 * 3  # only the 1 x 2 x 3 core is interior
    d1, d2 = surface_distances(m, m, SPACING)
    assert d1.size == d2.size == surf.sum() and not d1.any()


def test_random_blobs_match_brute_force():
    rng = np.random.default_rng(7)
    ref = ndimage.binary_opening(rng.random((20, 22, 18)) > 0.45, iterations=1)
    pred = ndimage.binary_dilation(ref, iterations=1) & (rng.random(ref.shape) > 0.1)
    d1, d2 = surface_distances(ref, pred, SPACING)
    b1, b2 = _brute_force(ref, pred, SPACING)
    np.testing.assert_allclose(d1, b1, rtol=1e-12)
    np.testing.assert_allclose(d2, b2, rtol=1e-12)
    for p in (95, 100):
        assert hausdorff_distance(ref, pred, SPACING, p) == pytest.approx(max(np.percentile(b1, p), np.percentile(b2, p)))


def test_empty_masks():
    empty = np.zeros((6, 6, 6), bool)
    one = empty.copy()
    one[2:4, 2:4, 2:4] = True
    both = segmentation_scores(empty, empty, SPACING)
    assert all(math.isnan(v) for v in (both.dice, both.iou, both.hd95_mm, both.hd_mm, both.assd_mm))
    assert both.note == "both empty"
    for ref, pred, note in ((one, empty, "prediction empty"), (empty, one, "reference empty")):
        s = segmentation_scores(ref, pred, SPACING)
        assert (s.dice, s.iou) == (0.0, 0.0)
        assert s.hd95_mm == s.hd_mm == s.assd_mm == math.inf
        assert s.note == note


def test_bad_inputs():
    with pytest.raises(InputError, match="differ in shape"):
        dice(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))
    with pytest.raises(InputError, match="spacing"):
        hausdorff_distance(np.ones((2, 2, 2)), np.ones((2, 2, 2)), (1.0, 0.0, 1.0))
    with pytest.raises(InputError, match="percentile"):
        hausdorff_distance(np.ones((2, 2, 2)), np.ones((2, 2, 2)), 1.0, percentile=101)


# ---------------------------------------------------------------- MONAI, the reference implementation


@pytest.fixture(scope="module")
def monai_multi():
    """MONAI's metrics of every class of two label maps at once: name -> array over ``labels``."""
    metrics = pytest.importorskip("monai.metrics")
    torch = pytest.importorskip("torch")

    def one_hot(label_map, labels):
        return torch.from_numpy(np.stack([label_map == 0] + [label_map == k for k in labels])[None].astype(np.float32))

    def run(ref, pred, labels, spacing, keys=("hd95_mm", "hd_mm", "assd_mm", "dice")):
        y, yp = one_hot(ref, labels), one_hot(pred, labels)
        compute = {
            "hd95_mm": lambda: metrics.compute_hausdorff_distance(yp, y, percentile=95, spacing=list(spacing)),
            "hd_mm": lambda: metrics.compute_hausdorff_distance(yp, y, spacing=list(spacing)),
            "assd_mm": lambda: metrics.compute_average_surface_distance(yp, y, symmetric=True, spacing=list(spacing)),
            "dice": lambda: metrics.compute_dice(yp, y, include_background=False),
        }
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # these small per-class loops only lose to thread start-up on a busy machine
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MONAI warns about empty classes
                return {k: compute[k]()[0].numpy().astype(float) for k in keys}
        finally:
            torch.set_num_threads(threads)

    return run


@pytest.fixture(scope="module")
def monai_metrics(monai_multi):
    """MONAI's metrics of one pair of binary masks."""

    def run(ref, pred, spacing):
        return {k: float(v[0]) for k, v in monai_multi(ref.astype(np.uint8), pred.astype(np.uint8), [1], spacing).items()}

    return run


def _assert_like_monai(ours, theirs):
    # MONAI returns float32
    for key, value in theirs.items():
        assert getattr(ours, key) == pytest.approx(value, rel=2e-6, abs=1e-6), key


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_cubes_equal_monai(monai_metrics, axis):
    ref, pred = _cubes(9, 2, axis)
    pred = pred & ~_cubes(3, 0, 0, start=9)[0]  # a hole makes the inner surface count too
    _assert_like_monai(segmentation_scores(ref, pred, SPACING), monai_metrics(ref, pred, SPACING))


def test_empty_prediction_like_monai(monai_metrics):
    ref, _ = _cubes(4, 0, 0, shape=(8, 8, 8), start=2)
    theirs = monai_metrics(ref, np.zeros_like(ref), SPACING)
    ours = segmentation_scores(ref, np.zeros_like(ref), SPACING)
    assert ours.hd_mm == theirs["hd_mm"] == math.inf and ours.assd_mm == theirs["assd_mm"] == math.inf
    assert ours.dice == theirs["dice"] == 0.0
    # MONAI's HD95 is NaN here (torch.quantile of inf values); ours stays inf, like its HD and ASSD
    assert math.isnan(theirs["hd95_mm"]) and ours.hd95_mm == math.inf


@pytest.fixture(scope="module")
def aorta(shared_data):
    path = shared_data / "totalsegmentator" / "aorta_case" / "aorta.nii.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return read_image(path)


@pytest.mark.parametrize(("k", "axis", "spacing"), [(2, 0, None), (1, 2, None), (3, 1, SPACING)])
def test_real_aorta_shifted_by_k_voxels(aorta, monai_metrics, k, axis, spacing):
    ref = np.pad(aorta.array > 0, k)  # room to shift without cutting the mask at the border
    pred = np.roll(ref, k, axis=axis)
    spacing = aorta.spacing if spacing is None else spacing
    ours = segmentation_scores(ref, pred, spacing)
    _assert_like_monai(ours, monai_metrics(ref, pred, spacing))
    # every shifted surface voxel lies k voxels from the surface voxel it came from
    assert ours.hd95_mm <= ours.hd_mm <= k * spacing[axis] + 1e-9
    assert ours.volume_ref_ml == ours.volume_pred_ml


def test_real_aorta_eroded_by_one_voxel(aorta, monai_metrics):
    ref = aorta.array > 0
    eroded = ndimage.binary_erosion(ref, structure=ndimage.generate_binary_structure(3, 1))
    n_ref, n_surface = int(ref.sum()), int(surface_voxels(ref).sum())
    ours = segmentation_scores(ref, eroded, aorta.spacing)
    # eroded = ref minus its surface, all inside ref
    assert ours.dice == 2 * (n_ref - n_surface) / (2 * n_ref - n_surface)
    assert ours.iou == (n_ref - n_surface) / n_ref
    _assert_like_monai(ours, monai_metrics(ref, eroded, aorta.spacing))
    # each reference surface voxel is at least one voxel (1.5 mm) from every eroded voxel
    assert ours.hd95_mm >= aorta.spacing[0]


def test_real_multi_organ_table_equals_monai(shared_data, monai_multi):
    path = shared_data / "totalsegmentator" / "example_seg.nii.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    reference = read_image(path)
    ref = reference.array
    # prediction: the whole map shifted one voxel along y, and every even class eroded by one voxel
    pred = np.roll(ref, 1, axis=1)
    for label in np.unique(pred)[1:]:
        if label % 2 == 0:
            m = pred == label
            pred[m & ~ndimage.binary_erosion(m)] = 0
    table = segmentation_table(reference, reference.with_array(pred), labels=None, patient="TS01")
    present = sorted((set(np.unique(ref).tolist()) | set(np.unique(pred).tolist())) - {0})
    assert table["label"].tolist() == present and len(present) >= 40
    assert (table["patient_id"] == "TS01").all()
    theirs = monai_multi(ref, pred, present, reference.spacing, keys=("hd95_mm", "assd_mm", "dice"))
    scored = (table["note"] == "").to_numpy()  # classes erased by the erosion are "prediction empty"
    assert scored.sum() >= 35
    assert (table.loc[~scored, "note"] == "prediction empty").all() and (table.loc[~scored, "dice"] == 0).all()
    for key, values in theirs.items():
        np.testing.assert_allclose(table[key].to_numpy()[scored], values[scored], rtol=2e-6, atol=1e-6, err_msg=key)
    counts = np.array([(ref == k).sum() for k in present])
    np.testing.assert_allclose(table["volume_ref_ml"], counts * 27 / 1000)  # 3 mm isotropic
    vols = label_volumes_ml(reference, present)
    np.testing.assert_allclose(table["volume_ref_ml"], [vols[k] for k in present])


# ---------------------------------------------------------------- label-map tables


def test_table_refuses_mismatched_geometry_naming_both_files(tmp_path):
    labels = np.zeros((6, 7, 8), np.uint8)
    labels[2:4, 2:5, 3:6] = 1
    ref_path = write_image(Volume(labels, (2.0, 1.0, 1.0)), tmp_path / "reader1.nii.gz")
    pred_path = write_image(Volume(labels, (2.0, 1.0, 1.0), origin=(0.0, 5.0, 0.0)), tmp_path / "model.nii.gz")
    with pytest.raises(InputError) as info:
        segmentation_table(ref_path, pred_path, patient="EP0007")
    message = str(info.value)
    assert "reader1.nii.gz" in message and "model.nii.gz" in message and "origin" in message and "EP0007" in message


def test_table_nn_transec_classes_and_absent_class():
    ref = np.zeros((10, 12, 12), np.uint8)
    ref[2:6, 2:6, 2:6] = 1
    ref[6:9, 6:10, 6:10] = 2
    pred = ref.copy()
    pred[2, 2:6, 2:6] = 0  # tumour loses one slice of 16 voxels out of 64
    table = segmentation_table(Volume(ref, (2.0, 1.0, 1.0)), Volume(pred, (2.0, 1.0, 1.0)))
    assert table["name"].tolist() == ["tumour", "aorta", "esophagus", "lymph_node", "pericardium"]
    tumour = table.set_index("name").loc["tumour"]
    assert tumour["dice"] == pytest.approx(2 * 48 / (64 + 48))
    assert tumour["volume_ref_ml"] == pytest.approx(64 * 2 / 1000)
    assert table.set_index("name").loc["aorta", "dice"] == 1.0
    assert table.set_index("name").loc["esophagus", "note"] == "both empty"
    with pytest.raises(InputError, match="not integers"):
        segmentation_table(Volume(ref + 0.5), Volume(pred.astype(float)))


# ---------------------------------------------------------------- volume agreement


def test_bland_altman_and_pearson_by_hand():
    ref = [10.0, 20.0, 30.0, 40.0]
    pred = [12.0, 19.0, 33.0, 41.0]
    a = volume_agreement(ref, pred)
    sd = math.sqrt((0.75**2 + 2.25**2 + 1.75**2 + 0.25**2) / 3)  # differences 2, -1, 3, 1; mean 1.25
    assert a.n == 4
    assert a.mean_difference_ml == pytest.approx(1.25)
    assert a.sd_difference_ml == pytest.approx(sd)
    assert (a.loa_low_ml, a.loa_high_ml) == pytest.approx((1.25 - 1.96 * sd, 1.25 + 1.96 * sd))
    r, p = stats.pearsonr(ref, pred)
    assert a.pearson_r == pytest.approx(np.corrcoef(ref, pred)[0, 1]) and a.pearson_r == pytest.approx(r)
    assert a.p_value == pytest.approx(p)
    slope, intercept = np.polyfit(ref, pred, 1)
    assert (a.slope, a.intercept) == pytest.approx((slope, intercept))


def test_volume_agreement_refuses_bad_input():
    with pytest.raises(InputError, match="at least 3"):
        volume_agreement([1, 2], [1, 2])
    with pytest.raises(InputError, match="expected 3"):
        volume_agreement([1, 2, 3], [1, 2])
    with pytest.raises(InputError, match="NaN"):
        volume_agreement([1, 2, np.nan], [1, 2, 3])


def test_cohort_volume_agreement_from_tables():
    rows = []
    for i, (r, p) in enumerate([(10, 11), (20, 18), (30, 33), (40, 40)]):
        rows.append({"patient_id": f"P{i}", "label": 1, "name": "tumour", "volume_ref_ml": r, "volume_pred_ml": p})
        rows.append({"patient_id": f"P{i}", "label": 2, "name": "aorta", "volume_ref_ml": 100 + r, "volume_pred_ml": 100 + r})
    rows.append({"patient_id": "P9", "label": 1, "name": "tumour", "volume_ref_ml": 0.0, "volume_pred_ml": 0.0})
    out = cohort_volume_agreement(pd.DataFrame(rows)).set_index("name")
    assert out.loc["tumour", "n"] == 4  # the both-empty case is left out
    assert out.loc["tumour", "mean_difference_ml"] == pytest.approx(0.5)
    assert out.loc["aorta", "pearson_r"] == pytest.approx(1.0) and out.loc["aorta", "sd_difference_ml"] == 0.0
