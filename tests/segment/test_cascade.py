"""The segmentation cascade: crop geometry, paste, stage-1 targets, the station margin, plans and a tiny end-to-end fit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from esoct.errors import InputError
from esoct.io.volume import Volume
from esoct.segment.cascade import (CascadeSegmenter, context_channels, crop_box, is_cascade, load_segmentation, paste,
                                   stage1_targets, write_cascade)
from esoct.segment.postprocess import postprocess_labels


def _labels(shape=(20, 40, 50), spacing=(5.0, 2.0, 2.0), origin=(-50.0, -40.0, -100.0)) -> Volume:
    return Volume(np.zeros(shape, np.uint8), spacing, origin)


def test_crop_box_is_the_esophagus_box_dilated_by_the_margin_in_mm_and_clipped():
    lab = _labels()
    a = lab.array
    a[3:15, 18:24, 20:26] = 3  # esophagus
    a[8:10, 24:26, 22:24] = 1  # tumour extends it by 2 voxels in y
    start, size = crop_box(lab, (10.0, 8.0, 5.0))
    # z: 3..14 +- 2 voxels; y: 18..25 +- 4 voxels; x: 20..25 +- 3 voxels (5 mm / 2 mm rounded up)
    assert start == (1, 14, 17) and size == (16, 16, 12)
    start, size = crop_box(lab, (50.0, 100.0, 100.0))  # clipped to the grid
    assert start == (0, 0, 0) and size == lab.shape


def test_crop_box_without_esophagus_names_the_patient():
    with pytest.raises(InputError, match="no esophagus") as err:
        crop_box(_labels(), (5.0, 5.0, 5.0), patient="EP0042")
    assert err.value.patient == "EP0042"


def test_paste_keeps_stage1_organs_outside_and_the_geometry():
    s1 = _labels()
    s1.array[:, :5, :] = 5  # pericardium at the border, outside the box
    s1.array[5:10, 20:25, 20:25] = 3
    s1.array[0, 30, 45] = 3  # a stray stage-1 esophagus voxel outside the box is dropped
    box = Volume(np.full((6, 8, 8), 4, np.uint8), s1.spacing, tuple(s1.index_to_physical([4, 19, 19])))
    out = paste(s1, box, (4, 19, 19))
    assert out.same_geometry(s1)
    assert (out.array[4:10, 19:27, 19:27] == 4).all()
    assert (out.array[:, :5, :] == 5).all()
    assert out.array[0, 30, 45] == 0 and (out.array == 3).sum() == 0


def test_stage1_targets_merge_tumour_into_esophagus_and_drop_nodes():
    a = np.array([0, 1, 2, 3, 4, 5], np.uint8)
    assert stage1_targets(a).tolist() == [0, 3, 2, 3, 0, 5]
    onehot = context_channels(np.array([[[2, 3, 5, 0]]]))
    assert onehot.shape == (3, 1, 1, 4) and onehot.sum() == 3 and onehot[1, 0, 0, 1] == 1


def test_node_size_rule_removes_only_small_node_components():
    lab = np.zeros((10, 30, 30), np.uint8)
    lab[2:4, 2:4, 2:4] = 4  # 8 voxels x 5*2*2 mm = 160 mm^3: kept at 100
    lab[7, 20, 20] = 4  # 20 mm^3: removed
    out, report = postprocess_labels(lab, (5.0, 2.0, 2.0), min_node_mm3=100.0)
    assert (out == 4).sum() == 8 and report.small_removed[4] == 1
    out, report = postprocess_labels(lab, (5.0, 2.0, 2.0), min_node_mm3=200.0)  # even the largest goes
    assert (out == 4).sum() == 0 and report.small_removed[4] == 2


def test_station_margin_is_derived_from_the_phantom_stations():
    from esoct.phantom.stations import DEFAULT_MARGIN_MM, node_reach_mm, station_margin_mm

    assert station_margin_mm() == DEFAULT_MARGIN_MM
    reach = node_reach_mm(500)
    # paratracheal nodes reach farthest; no node leaves the esophagus' z extent
    assert reach["zyx"][0] == 0.0
    assert reach["by_station"]["paratracheal"][1] == pytest.approx(max(r[1] for r in reach["by_station"].values()))


def test_every_rendered_node_lies_in_the_reference_crop(tmp_path):
    from esoct.io.imageio import read_image
    from esoct.phantom.cohort import generate_cohort
    from esoct.phantom.stations import DEFAULT_MARGIN_MM

    generate_cohort(tmp_path / "c", 8, seed=11, workers=1, progress=False)
    for path in sorted((tmp_path / "c" / "labels").glob("*_pre.nii.gz")):
        lab = read_image(path)
        start, size = crop_box(lab, DEFAULT_MARGIN_MM)
        inside = np.zeros(lab.shape, bool)
        inside[tuple(slice(a, a + n) for a, n in zip(start, size))] = True
        nodes = lab.array == 4
        assert nodes.any() and not (nodes & ~inside).any(), path.name
        # and the box is much smaller than the scan
        assert np.prod(size) < 0.25 * np.prod(lab.shape)


def test_plan_overrides_and_the_lowres_rule():
    from esoct.segment.cascade_training import lowres_plan
    from esoct.segment.plan import Fingerprint, make_plan

    fp = Fingerprint(
        patients=["a", "b", "c"], centers=["A", "A", "B"], spacings=[(5.0, 2.0, 2.0)] * 3, shapes=[(40, 180, 180)] * 3,
        intensity={"percentile_00_5": -100.0, "percentile_99_5": 300.0, "mean": 40.0, "std": 80.0},
        class_voxel_counts={}, class_fractions={}, cases_with_class={}, tumour_box_mm=[(50.0, 30.0, 30.0)] * 3,
        t_stage_counts={"T1": 1, "T2": 1, "T3": 1, "T4": 0}, t_stage_missing=0, failures={},
        labels={"background": 0, "tumour": 1}, image_column="image_pre", mask_column="mask_pre",
        intensity_samples_per_case=10, seed=0)
    plan = make_plan(fp, spacing=(5.0, 4.0, 4.0), patch_size=(20, 48, 40), base_features=8)
    assert plan.target_spacing == (5.0, 4.0, 4.0) and plan.median_shape == (40, 90, 90)
    assert plan.patch_size[1:] == (48, 40) and plan.patch_size[0] % 2 ** plan.n_pool_per_axis[0] == 0
    assert plan.features_per_stage[0] == 8 and plan.normalization["std"] == 80.0
    low = lowres_plan(fp, base_features=16, memory_budget_mb=60)
    assert np.prod(low.patch_size) >= 0.25 * np.prod(low.median_shape)
    assert low.target_spacing[1] > 2.0  # coarser than the full-resolution median


@pytest.fixture(scope="module")
def tiny_fit(tmp_path_factory):
    from esoct.io.manifest import load_manifest
    from esoct.phantom.cohort import generate_cohort
    from esoct.segment.cascade_training import CascadeSettings, fit_cascade

    root = tmp_path_factory.mktemp("cascade")
    generate_cohort(root / "c", 4, seed=5, workers=1, progress=False)
    manifest = load_manifest(root / "c" / "manifest.csv")
    s = CascadeSettings(stage1_epochs=1, stage2_epochs=1, iterations=1, stage1_patch=(16, 32, 32),
                        stage2_patch=(16, 32, 32), base_features=4)
    fit = fit_cascade(manifest, manifest.patients[:3], root / "run", s, progress=False)
    return root, manifest, fit


def test_fit_writes_the_crop_data_set_and_plans_that_describe_the_networks(tiny_fit):
    import pandas as pd

    root, manifest, fit = tiny_fit
    crops = pd.read_csv(fit.crop_manifest, dtype={"patient_id": str})
    assert crops["patient_id"].tolist() == manifest.patients[:3]
    p1, p2 = fit.plans["stage1"], fit.plans["stage2"]
    assert tuple(p1.patch_size) == tuple(fit.cascade.stage1.patch_size) == (16, 32, 32)
    assert fit.cascade.stage2.model.config["channels"] == p2.features_per_stage
    assert fit.cascade.stage2.model.config["in_channels"] == 4  # CT + 3 stage-1 organ channels
    assert fit.cascade.stage2.preprocessing.spacing_zyx == tuple(p2.target_spacing)
    # the crops hold every reference node and tumour voxel of the patient
    from esoct.io.imageio import read_image

    for pid in manifest.patients[:3]:
        full = read_image(manifest.resolve(pid, "mask_pre")).array
        crop = read_image(fit.crop_manifest.parent / f"{pid}_labels.nii.gz").array
        for c in (1, 4):
            assert (crop == c).sum() == (full == c).sum()


def test_written_cascade_loads_and_predicts_on_the_input_grid(tiny_fit, tmp_path):
    from esoct.io.imageio import read_image

    root, manifest, fit = tiny_fit
    folder = tmp_path / "model"
    write_cascade(folder, fit.cascade.settings(), root / "run" / "stage1" / "checkpoint.pt",
                  root / "run" / "stage2" / "checkpoint.pt", fit.plans)
    assert is_cascade(folder) and json.loads((folder / "cascade.json").read_text())["margin_mm"] == [6.0, 33.0, 24.0]
    model = load_segmentation(folder)
    assert isinstance(model, CascadeSegmenter)
    image = read_image(manifest.resolve(manifest.patients[3], "image_pre"))
    labels, info = model.predict(image)
    assert labels.same_geometry(image) and labels.array.dtype == np.uint8
    again, _ = fit.cascade.predict(image)
    assert np.array_equal(labels.array, again.array)
    assert info["stage1_labels"].same_geometry(image)
    reused, _ = model.predict(image, stage1_labels=info["stage1_labels"])  # stage 1 given, not rerun
    assert np.array_equal(reused.array, labels.array)
    with pytest.raises(InputError, match="not on the CT's grid"):
        model.predict(image, stage1_labels=info["stage1_labels"].crop((0, 0, 0), (4, 8, 8)))
    assert all(0 <= s and s + n <= d for s, n, d in zip(info["box_start"], info["box_size"], image.shape))


def test_cascade_file_of_another_format_is_refused(tmp_path):
    (tmp_path / "cascade.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InputError, match="not an esoct cascade"):
        load_segmentation(tmp_path)


def test_cascade_loss_setting_gives_cross_entropy_or_the_papers_focal_loss():
    import torch

    from esoct.segment.cascade_training import CascadeSettings, _config
    from esoct.train.losses import SegmentationLoss

    ce = _config(CascadeSettings(), epochs=1, seed=0)
    assert (ce.focal_alpha, ce.focal_gamma) == (1.0, 0.0)
    focal = _config(CascadeSettings(loss="focal_dice"), epochs=1, seed=0)
    assert (focal.focal_alpha, focal.focal_gamma) == (0.25, 2.0)
    logits = torch.randn(2, 6, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 6, (2, 4, 5, 5), generator=torch.Generator().manual_seed(1))
    got = SegmentationLoss(ce.focal_alpha, ce.focal_gamma)(logits, target)
    assert float(got) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, target)), rel=1e-5)
    with pytest.raises(InputError, match="focal"):
        _config(CascadeSettings(loss="focal"), epochs=1, seed=0)
