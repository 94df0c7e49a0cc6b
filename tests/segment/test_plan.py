"""Fingerprint and plan: a phantom cohort's known geometry, the rules by hand, the paper's numbers, JSON round trips."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from esoct.errors import InputError
from esoct.io.imageio import read_image
from esoct.phantom.centers import DEFAULT_CENTERS, FIELD_OF_VIEW_MM, Z_EXTENT_MM
from esoct.phantom.cohort import generate_cohort
from esoct.segment.plan import (
    ACTIVATIONS_PER_FEATURE_VOXEL,
    Fingerprint,
    Plan,
    class_loss_weights,
    compute_plan,
    estimate_activation_bytes,
    extract_fingerprint,
    features_per_stage,
    make_plan,
    network_topology,
    target_spacing,
)

CENTERS = {c.name: c for c in DEFAULT_CENTERS}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Four phantom patients from centres A, A, B, C (seed 4)."""
    out = tmp_path_factory.mktemp("phantom")
    generate_cohort(out, 4, seed=4, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def fingerprint(cohort):
    # enough samples per case to take every foreground voxel: percentiles become exact
    return extract_fingerprint(cohort / "manifest.csv", intensity_samples_per_case=10**7, progress=False)


def test_planning_and_metrics_do_not_import_torch():
    code = (
        "import sys, esoct.segment, esoct.segment.plan, esoct.evaluate.segmentation, esoct.io.nnunet, "
        "esoct.report.agreement_figure; print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fingerprint_spacings_and_shapes_are_the_centres(cohort, fingerprint):
    manifest = pd.read_csv(cohort / "manifest.csv")
    assert fingerprint.patients == manifest["patient_id"].tolist()
    assert fingerprint.centers == ["A", "A", "B", "C"]
    for center, spacing, shape in zip(fingerprint.centers, fingerprint.spacings, fingerprint.shapes):
        c = CENTERS[center]
        assert spacing == (c.slice_mm, c.pixel_mm, c.pixel_mm)
        n_xy = round(FIELD_OF_VIEW_MM / c.pixel_mm)
        assert shape == (round(Z_EXTENT_MM / c.slice_mm), n_xy, n_xy)
    assert fingerprint.spacings_by_center() == {"A": [(5.0, 2.0, 2.0)], "B": [(2.5, 1.8, 1.8)], "C": [(5.0, 2.2, 2.2)]}
    # z: median of 5, 5, 2.5, 5; y, x: median of 2, 2, 1.8, 2.2
    assert fingerprint.median_spacing == (5.0, 2.0, 2.0)
    assert fingerprint.failures == {}


def test_fingerprint_classes_intensities_boxes_and_stages(cohort, fingerprint):
    manifest = pd.read_csv(cohort / "manifest.csv")
    values, counts, boxes = [], np.zeros(6, int), []
    for row in manifest.itertuples():
        image = read_image(cohort / row.image_pre)
        labels = read_image(cohort / row.mask_pre).array.astype(int)
        values.append(image.array[labels > 0].astype(float))
        counts += np.bincount(labels.ravel(), minlength=6)[:6]
        sl = ndimage.find_objects((labels == 1).astype(np.uint8))[0]
        boxes.append(tuple((s.stop - s.start) * sp for s, sp in zip(sl, image.spacing)))
    values = np.concatenate(values)
    names = ["tumour", "aorta", "esophagus", "lymph_node", "pericardium"]
    assert fingerprint.class_voxel_counts == dict(zip(names, counts[1:].tolist()))
    assert sum(fingerprint.class_fractions.values()) == pytest.approx(1.0)
    assert fingerprint.class_fractions["tumour"] == pytest.approx(counts[1] / counts[1:].sum())
    inten = fingerprint.intensity
    assert inten["n_voxels"] == inten["n_sampled"] == values.size
    assert inten["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert inten["std"] == pytest.approx(values.std(), rel=1e-10)
    p = np.percentile(values, [0.5, 50, 99.5])
    assert (inten["percentile_00_5"], inten["percentile_50_0"], inten["percentile_99_5"]) == pytest.approx(tuple(p))
    assert (inten["min"], inten["max"]) == (values.min(), values.max())
    np.testing.assert_allclose(np.asarray(fingerprint.tumour_box_mm), np.asarray(boxes), atol=1e-5)
    stages = manifest["pT"].value_counts().to_dict()
    assert fingerprint.t_stage_counts == {t: stages.get(t, 0) for t in ("T1", "T2", "T3", "T4")}


def test_fingerprint_sampling_is_seeded(cohort):
    a = extract_fingerprint(cohort / "manifest.csv", intensity_samples_per_case=500, seed=3, progress=False)
    b = extract_fingerprint(cohort / "manifest.csv", intensity_samples_per_case=500, seed=3, progress=False)
    assert a.intensity == b.intensity and a.intensity["n_sampled"] == 2000


def test_fingerprint_records_failed_patients(cohort, tmp_path):
    manifest = pd.read_csv(cohort / "manifest.csv")
    for col in ("image_pre", "mask_pre", "image_post", "mask_post", "mask_pre_reader2"):
        manifest[col] = [str(cohort / v) for v in manifest[col]]
    bad = manifest.iloc[[0]].copy()
    bad["patient_id"] = "EP9999"
    bad["image_pre"] = str(tmp_path / "missing.nii.gz")
    offgrid = manifest.iloc[[1]].copy()
    offgrid["patient_id"] = "EP9998"
    offgrid["mask_pre"] = manifest.iloc[2]["mask_pre"]  # centre B's mask on a centre A image
    path = tmp_path / "manifest.csv"
    pd.concat([manifest, bad, offgrid]).to_csv(path, index=False)
    fp, plan = compute_plan(path, tmp_path / "plan", progress=False, fingerprint_kwargs={"intensity_samples_per_case": 200})
    assert fp.patients == manifest["patient_id"].tolist()
    assert set(fp.failures) == {"EP9999", "EP9998"}
    assert "does not exist" in fp.failures["EP9999"] and "missing.nii.gz" in fp.failures["EP9999"]
    assert "mask grid differs" in fp.failures["EP9998"]
    failures = pd.read_csv(tmp_path / "plan" / "fingerprint_failures.csv")
    assert failures["patient_id"].tolist() == ["EP9999", "EP9998"]
    assert Plan.from_json(tmp_path / "plan" / "plan.json") == plan
    assert Fingerprint.from_json(tmp_path / "plan" / "fingerprint.json") == fp


# ---------------------------------------------------------------- rules by hand


def test_target_spacing_median_and_anisotropy_rule():
    shapes = [(20, 256, 256)] * 10
    assert target_spacing([(5.0, 2.0, 2.0)] * 3 + [(2.5, 1.8, 1.8)], shapes[:4]) == ((5.0, 2.0, 2.0), None)
    # median z 6.5 > 3 x 1 mm and 20 slices x 3 < 256: z takes the 10th percentile (3.0)
    spacings = [(10.0, 1.0, 1.0)] * 5 + [(3.0, 1.0, 1.0)] * 5
    assert target_spacing(spacings, shapes) == ((3.0, 1.0, 1.0), 0)
    # the 10th percentile (0.8) would be finer than the others: it stops just above them
    spacings = [(10.0, 1.0, 1.0)] * 5 + [(0.8, 1.0, 1.0)] * 5
    (z, y, x), axis = target_spacing(spacings, shapes)
    assert axis == 0 and z == pytest.approx(1.0 + 1e-5) and (y, x) == (1.0, 1.0)
    # anisotropic spacing but many slices: no change (both conditions are needed)
    assert target_spacing(spacings, [(200, 256, 256)] * 10)[1] is None


def test_topology_of_the_papers_patch_matches_table_6():
    # EC169: median spacing (1.0, 0.73, 0.73) mm, patch 128 x 64 x 64 -> 4 poolings per axis, depth 5
    n_pool, strides, kernels, patch = network_topology((1.0, 0.73, 0.73), (128, 64, 64))
    assert n_pool == (4, 4, 4)
    assert strides == [(1, 1, 1)] + [(2, 2, 2)] * 4
    assert kernels == [(3, 3, 3)] * 5
    assert patch == (128, 64, 64)


def test_topology_anisotropic_and_padding():
    # 5 mm slices, 2 mm pixels: the first stage pools only in-plane, with a 1 x 3 x 3 kernel
    n_pool, strides, kernels, patch = network_topology((5.0, 2.0, 2.0), (40, 180, 180))
    assert strides[1] == (1, 2, 2) and kernels[0] == (1, 3, 3)
    # z: 40 -> 20 -> 10 -> 5 (then < 8); y, x: 180 -> 90 -> 45 -> 23 -> 12 -> 6
    assert n_pool == (3, 5, 5)
    assert patch == (40, 192, 192)  # padded up to multiples of 2**3 and 2**5
    assert all(p % 2**n == 0 for p, n in zip(patch, n_pool))
    # no axis is pooled below min_edge voxels
    size = np.asarray(patch, float)
    for s in strides:
        size = size / np.asarray(s)
    assert size.min() >= 4


def test_features_and_activation_formula():
    assert features_per_stage(7) == [32, 64, 128, 256, 320, 320, 320]
    strides = [(1, 1, 1), (2, 2, 2), (1, 2, 2)]
    feats = [4, 8, 16]
    per_voxel = 8 * 6 * 10 * 4 + 4 * 3 * 5 * 8 + 4 * 2 * 3 * 16  # stage voxels x features
    expected = 3 * 2 * ACTIVATIONS_PER_FEATURE_VOXEL * per_voxel
    assert estimate_activation_bytes((8, 6, 10), strides, feats, batch_size=3, bytes_per_activation=2) == expected


def test_class_loss_weights_reproduce_the_paper():
    # 169 patients; shares 54.44 % (92) and 10.06 % (17) as in the paper's Fig. 7 text
    w = class_loss_weights({"T1": 27, "T2": 33, "T3": 92, "T4": 17})
    assert [round(w[t], 2) for t in ("T1", "T2", "T3", "T4")] == [0.20, 0.16, 0.10, 0.54]
    assert sum(w.values()) == pytest.approx(1.0)
    inv = class_loss_weights({"T1": 1, "T2": 2, "T3": 4, "T4": 0}, rule="inverse_frequency")
    assert inv == pytest.approx({"T1": 4 / 7, "T2": 2 / 7, "T3": 1 / 7, "T4": 0.0})
    ties = class_loss_weights({"T1": 10, "T2": 10, "T3": 20, "T4": 0})
    assert ties == pytest.approx({"T1": (0.5 + 0.25) / 2, "T2": (0.5 + 0.25) / 2, "T3": 0.25, "T4": 0.0})
    with pytest.raises(InputError, match="no patient"):
        class_loss_weights({})
    with pytest.raises(InputError, match="rule"):
        class_loss_weights({"T1": 1}, rule="softmax")


# ---------------------------------------------------------------- the plan


def test_plan_from_the_phantom_fingerprint(fingerprint):
    plan = make_plan(fingerprint, memory_budget_mb=8000)
    assert plan.target_spacing == (5.0, 2.0, 2.0) and plan.anisotropic_axis is None
    # every centre's grid covers 200 x 360 x 360 mm: 40 x 180 x 180 voxels at the target spacing
    assert plan.median_shape == (40, 180, 180)
    assert plan.n_pool_per_axis == (3, 5, 5) and plan.n_stages == 6
    assert plan.patch_size == (40, 192, 192)
    assert plan.features_per_stage == [32, 64, 128, 256, 320, 320]
    assert plan.batch_size == 2  # a larger batch would cover more than 5 % of this tiny cohort
    one = estimate_activation_bytes(plan.patch_size, plan.strides, plan.features_per_stage, 1, 2)
    assert plan.estimated_memory_mb == pytest.approx(2 * one / 2**20, abs=0.05)
    boxes = np.asarray(fingerprint.tumour_box_mm)
    expected = [math.ceil(math.ceil((np.percentile(boxes[:, i], 95) + 20) / plan.target_spacing[i] - 1e-9) / 2**n) * 2**n
                for i, n in enumerate(plan.n_pool_per_axis)]
    assert plan.krt_crop_size == tuple(expected)
    inten = fingerprint.intensity
    assert plan.normalization == {"scheme": "CT", "clip_low": inten["percentile_00_5"], "clip_high": inten["percentile_99_5"],
                                  "mean": inten["mean"], "std": inten["std"]}
    assert plan.class_loss_weights == class_loss_weights(fingerprint.t_stage_counts)
    assert plan.krt_reference_size == (128, 64, 64)


def test_memory_budget_shrinks_the_patch(fingerprint):
    small = make_plan(fingerprint, memory_budget_mb=400)
    assert small.estimated_memory_mb <= 400
    assert np.prod(small.patch_size) < 40 * 192 * 192
    assert all(p % 2**n == 0 for p, n in zip(small.patch_size, small.n_pool_per_axis))
    with pytest.raises(InputError, match="memory budget"):
        make_plan(fingerprint, memory_budget_mb=0.001)


def test_plan_json_round_trip_edit_and_unknown_key(fingerprint, tmp_path):
    plan = make_plan(fingerprint)
    path = tmp_path / "plan.json"
    plan.to_json(path)
    assert Plan.from_json(path) == plan
    assert Plan.from_json(plan.to_json()) == plan
    data = json.loads(path.read_text())
    data["batch_size"] = 3
    data["krt_crop_size"] = [32, 64, 64]
    path.write_text(json.dumps(data))
    edited = Plan.from_json(path)
    assert edited.batch_size == 3 and edited.krt_crop_size == (32, 64, 64)
    data["batchsize"] = 4
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="unknown plan key 'batchsize'") as info:
        Plan.from_json(path)
    assert str(path) in str(info.value) and "batch_size" in str(info.value)
    del data["batchsize"]
    data["patch_size"] = [40, 190, 192]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="multiple of"):
        Plan.from_json(path)
    fp_text = fingerprint.to_json()
    assert Fingerprint.from_json(fp_text) == fingerprint
    with pytest.raises(InputError, match="not a fingerprint"):
        Fingerprint.from_json(plan.to_json())
    with pytest.raises(InputError, match="not valid JSON"):
        Plan.from_json("{ not json")
