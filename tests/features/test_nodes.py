"""Lymph-node features: synthetic nodes with known values, and a small phantom cohort against its truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from esoct.errors import InputError
from esoct.features.nodes import NodeSettings, node_features, node_features_cohort
from esoct.io.volume import Volume

SPACING = (1.0, 1.0, 1.0)


def _ball(shape, centre, radius):
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


@pytest.fixture(scope="module")
def two_nodes():
    """A homogeneous node (r = 6 mm, 40 HU), a heterogeneous one (r = 4 mm), a 2-voxel speck, a tumour."""
    shape = (40, 48, 64)
    rng = np.random.default_rng(3)
    labels = np.zeros(shape, np.uint8)
    big, small = _ball(shape, (20, 24, 16), 6), _ball(shape, (20, 24, 46), 4)
    labels[big] = 4
    labels[small] = 4
    labels[5, 5, 5:7] = 4  # a speck: 2 mm^3, below min_volume_mm3
    labels[30:34, 5:9, 30:34] = 1  # tumour, ignored
    hu = np.full(shape, -95.0)  # fat
    hu[big] = 40.0
    hu[small] = 40.0 + rng.normal(0, 30, small.sum())
    origin = (10.0, -20.0, 300.0)
    return Volume(hu.astype(np.float32), SPACING, origin), Volume(labels, SPACING, origin), big, small


def test_synthetic_nodes_known_values(two_nodes):
    ct, labels, big, small = two_nodes
    res = node_features(ct, labels, "EP0001")
    assert res.dropped == 1
    nodes = res.nodes
    assert list(nodes["node"]) == [1, 2]
    assert list(nodes["voxels"]) == [big.sum(), small.sum()]
    np.testing.assert_allclose(nodes["volume_mm3"], [big.sum(), small.sum()])  # 1 mm^3 voxels
    # centroid of the big ball: index (20, 24, 16) -> physical x = 10 + 16, y = -20 + 24, z = 300 + 20
    assert nodes.loc[0, ["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].tolist() == pytest.approx([26, 4, 320])
    # homogeneous node: the DEM is 0 everywhere inside (segmented voxels only), entropy 0, no voxel above a threshold
    assert nodes.loc[0, "dem_mean"] == pytest.approx(0.0, abs=1e-6)
    assert nodes.loc[0, "dem_entropy"] == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(nodes.loc[0, "fd_dem_20"])
    # heterogeneous node: a spread DEM
    # white noise of 30 HU smoothed at sigma = 1 voxel keeps about 30 / (2 sqrt(pi))^1.5 = 4.5 HU, i.e. a few HU/mm
    assert 3 < nodes.loc[1, "dem_mean"] < 10 and nodes.loc[1, "dem_entropy"] > 0.5
    assert 1.5 < nodes.loc[0, "fd_surface"] < 2.5
    # patient aggregates
    f = res.features
    assert f["node_count"] == 2
    assert f["node_total_volume_mm3"] == pytest.approx(big.sum() + small.sum())
    assert f["node_largest_volume_mm3"] == pytest.approx(big.sum())
    assert f["node_max_dem_entropy"] == pytest.approx(nodes.loc[1, "dem_entropy"])
    assert f["node_mean_dem_mean"] == pytest.approx(nodes["dem_mean"].mean())
    assert list(f) == NodeSettings().patient_columns


def test_sphericity_equals_pyradiomics(two_nodes):
    from radiomics import featureextractor

    ct, labels, big, _ = two_nodes
    res = node_features(ct, labels, "EP0001")
    extractor = featureextractor.RadiomicsFeatureExtractor(label=1)
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(shape=["Sphericity"])
    mask = labels.with_array(big.astype(np.uint8))
    ref = float(extractor.execute(ct.to_sitk(), mask.to_sitk())["original_shape_Sphericity"])
    assert res.nodes.loc[0, "sphericity"] == pytest.approx(ref, rel=1e-9)
    assert 0.85 < ref < 1.0


def test_no_node_and_geometry_errors(two_nodes):
    ct, labels, _, _ = two_nodes
    res = node_features(ct, labels.with_array(np.where(labels.array == 4, 0, labels.array)), "EP0002")
    assert res.features["node_count"] == 0 and res.nodes.empty
    assert np.isnan(res.features["node_max_dem_entropy"])
    moved = Volume(labels.array, SPACING, (0.0, 0.0, 0.0), meta={"source": "EP0002_pre.nii.gz"})
    with pytest.raises(InputError, match="grid differs") as err:
        node_features(ct, moved, "EP0002")
    assert err.value.patient == "EP0002" and err.value.path == "EP0002_pre.nii.gz"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from esoct.phantom.cohort import generate_cohort

    root = tmp_path_factory.mktemp("phantom6")
    truth = generate_cohort(root, 6, seed=5, workers=2, progress=False)
    return root, truth


def test_phantom_cohort_matches_truth_and_records_failures(phantom):
    root, truth = phantom
    manifest = pd.read_csv(root / "manifest.csv", dtype={"patient_id": str})
    broken = manifest.copy()
    broken.loc[1, "image_pre"] = "images/missing.nii.gz"
    broken.to_csv(root / "broken.csv", index=False)
    res = node_features_cohort(root / "broken.csv", failures_csv=root / "node_failures.csv")
    bad = manifest.loc[1, "patient_id"]
    assert list(res.failures["patient_id"]) == [bad]
    assert "does not exist" in res.failures.loc[0, "reason"] and "missing.nii.gz" in res.failures.loc[0, "reason"]
    assert pd.read_csv(root / "node_failures.csv")["patient_id"].tolist() == [bad]
    assert list(res.table["patient_id"]) == [p for p in manifest["patient_id"] if p != bad]
    spacing = {}
    for p in truth["patients"]:
        from esoct.io.imageio import read_image

        spacing[p["patient_id"]] = read_image(root / p["files"]["pre"]["labels"]).voxel_volume_mm3
    for row in res.table.itertuples():
        placed = [n["voxels"] for n in next(p for p in truth["patients"] if p["patient_id"] == row.patient_id)["nodes"]]
        # every painted node voxel is found (touching nodes merge into one component, never more nodes)
        assert row.node_total_volume_mm3 == pytest.approx(sum(placed) * spacing[row.patient_id])
        assert 1 <= row.node_count <= sum(v > 0 for v in placed)
    values = res.table.drop(columns="patient_id")
    assert values[["node_max_dem_entropy", "node_max_fd_surface", "node_max_sphericity"]].notna().all().all()
    assert ((values["node_max_fd_surface"] > 1.5) & (values["node_max_fd_surface"] < 3.0)).all()
    assert ((values["node_max_sphericity"] > 0.4) & (values["node_max_sphericity"] <= 1.0)).all()
    assert set(res.nodes["patient_id"]) == set(res.table["patient_id"])
    assert json.dumps(res.settings)  # the settings are recorded, serialisable
