"""The phantom cohort: files, geometry, HU, label volumes, T-stage truth auditable from the files, determinism."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pandas as pd
import pytest

from esoct.io.imageio import read_image
from esoct.phantom import labels as L
from esoct.phantom.centers import DEFAULT_CENTERS
from esoct.phantom.cohort import MANIFEST_COLUMNS, generate_cohort
from esoct.phantom.spec import layer_boundaries_mm
from esoct.phantom.tumour import audit_t_stage

N = 14
SEED = 3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    truth = generate_cohort(out, N, seed=SEED, workers=2, progress=False)
    return out, truth


def _scan(out, rec, tp, kind):
    return read_image(out / rec["files"][tp][kind])


def test_cohort_layout_and_manifest(cohort):
    out, truth = cohort
    manifest = pd.read_csv(out / "manifest.csv", dtype={"patient_id": str})
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == N == truth["n_patients"]
    assert manifest["patient_id"].tolist() == [f"EP{i:04d}" for i in range(1, N + 1)]
    assert set(manifest["pT"]) <= {"T1", "T2", "T3", "T4"}
    assert set(manifest["os_event"]) <= {0, 1}
    assert (manifest["os_months"] > 0).all()
    for col in ("image_pre", "mask_pre", "image_post", "mask_post", "mask_pre_reader2"):
        assert all((out / p).is_file() for p in manifest[col])
    assert truth["failed"] == []


def test_manifest_passes_check(cohort):
    from esoct.io.manifest import check_manifest

    out, _ = cohort
    report = check_manifest(out / "manifest.csv")
    assert report.ok, report.to_text()


def test_t_stage_is_auditable_from_files_on_every_patient(cohort):
    """The hidden depth decides T; the label, layer and anatomy files show the same T."""
    out, truth = cohort
    b = layer_boundaries_mm()
    critical_lut = np.zeros(256, bool)
    critical_lut[list(L.T4_STRUCTURES)] = True
    for rec in truth["patients"]:
        labels = _scan(out, rec, "pre", "labels").array
        layers = _scan(out, rec, "pre", "layers").array
        anatomy = _scan(out, rec, "pre", "anatomy").array
        tumour = labels == 1
        assert tumour.any(), rec["patient_id"]
        stage = audit_t_stage(tumour, layers, critical_lut[anatomy])
        assert stage == rec["t_stage"] == int(rec["pT"][1]), rec["patient_id"]
        depth = rec["invasion_depth_mm"]
        lay = layers[tumour]
        if stage == 1:
            assert depth <= b[1] and lay.max() <= 2 and (lay > 0).all()
        elif stage == 2:
            assert b[1] < depth <= b[2] and set(lay) <= {1, 2, 3} and 3 in lay
        else:
            assert depth > b[3] or stage == 4
            assert (lay == 0).any() or (lay == 4).any()
        if stage == 3:  # fat plane kept: no tumour voxel next to aorta, heart/pericardium or trachea
            assert rec["t4_target"] is None


def test_t4_contact_is_with_the_named_structure(cohort):
    from scipy import ndimage

    out, truth = cohort
    codes = {"aorta": [L.AORTA], "trachea": [L.TRACHEA_WALL, L.AIRWAY_LUMEN], "pericardium": [L.PERICARDIUM, L.MYOCARDIUM]}
    t4 = [r for r in truth["patients"] if r["t_stage"] == 4]
    assert t4, "cohort should contain a T4 patient"
    for rec in t4:
        anatomy = _scan(out, rec, "pre", "anatomy").array
        tumour = anatomy == L.TUMOUR
        ring = ndimage.binary_dilation(tumour, ndimage.generate_binary_structure(3, 1)) & ~tumour
        assert np.isin(anatomy[ring], codes[rec["t4_target"]]).any(), rec["patient_id"]


def test_geometry_and_centre_protocols(cohort):
    out, truth = cohort
    centers = {c.name: c for c in DEFAULT_CENTERS}
    for rec in truth["patients"][:6]:
        c = centers[rec["center"]]
        vols = [_scan(out, rec, tp, k) for tp in ("pre", "post") for k in ("image", "labels", "layers", "anatomy")]
        image = vols[0]
        assert image.spacing == pytest.approx((c.slice_mm, c.pixel_mm, c.pixel_mm))
        assert image.shape[0] * c.slice_mm == pytest.approx(200.0)
        assert all(v.same_geometry(image) for v in vols)
        assert image.array.dtype == np.int16
        assert np.allclose(image.direction, np.eye(3))


def test_hounsfield_units_are_realistic(cohort):
    out, truth = cohort
    for rec in truth["patients"][:5]:
        hu = _scan(out, rec, "pre", "image").array.astype(float)
        anatomy = _scan(out, rec, "pre", "anatomy").array
        labels = _scan(out, rec, "pre", "labels").array
        mean = {code: np.median(hu[anatomy == code]) for code in (L.LUNG, L.MEDIASTINAL_FAT, L.SUBCUTANEOUS_FAT, L.MUSCLE, L.AORTA, L.AIR)}
        assert -900 < mean[L.LUNG] < -780
        assert -125 < mean[L.MEDIASTINAL_FAT] < -55
        assert -130 < mean[L.SUBCUTANEOUS_FAT] < -80
        assert 30 < mean[L.MUSCLE] < 65
        assert mean[L.AIR] < -980
        aorta_hu = next(p for p in truth["centers"] if p["name"] == rec["center"])["aorta_hu"]
        assert abs(mean[L.AORTA] - aorta_hu) < 90
        tumour_hu = hu[labels == 1].mean()
        assert 15 < tumour_hu < 100
        assert hu.min() >= -1024 and hu.max() <= 3071


def test_label_volumes_match_truth_and_treatment_shrinks_tumour(cohort):
    out, truth = cohort
    reductions = []
    for rec in truth["patients"]:
        pre = _scan(out, rec, "pre", "labels")
        post = _scan(out, rec, "post", "labels")
        v_pre = (pre.array == 1).sum() * pre.voxel_volume_mm3 / 1000
        v_post = (post.array == 1).sum() * post.voxel_volume_mm3 / 1000
        assert v_pre == pytest.approx(rec["tumour_volume_ml_pre"], abs=1e-3)
        assert v_post == pytest.approx(rec["tumour_volume_ml_post"], abs=1e-3)
        assert 0 < v_post < v_pre
        reductions.append(rec["volume_reduction"])
        for organ in (2, 3, 5):
            assert (pre.array == organ).any(), (rec["patient_id"], organ)
        assert (pre.array == 4).sum() > 0  # lymph nodes
    assert 0.2 < np.mean(reductions) < 0.8


def test_second_reader_mask_is_close_but_not_identical(cohort):
    out, truth = cohort
    for rec in truth["patients"][:5]:
        a = _scan(out, rec, "pre", "labels").array == 1
        b = read_image(out / rec["files"]["pre"]["labels_reader2"]).array == 1
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert 0.6 < dice < 1.0


def test_lymph_node_truth(cohort):
    _, truth = cohort
    for rec in truth["patients"]:
        nodes = rec["nodes"]
        assert any(n["station"] == "right_rln" for n in nodes)
        placed_meta = [n for n in nodes if n["metastatic"] and n["voxels"] > 0]
        if rec["lnm"]:
            assert placed_meta, rec["patient_id"]
        else:
            assert not any(n["metastatic"] for n in nodes)


def test_truth_records_survival_model(cohort):
    _, truth = cohort
    s = truth["survival_model"]
    assert s["coefficients"]["lnm"] > 0 and s["coefficients"]["response_minus_0.5"] < 0
    assert 0.5 < truth["summary"]["oracle_c_index"] <= 1.0
    for rec in truth["patients"]:
        assert set(rec["survival"]) == {"linear_predictor", "os_months", "os_event"}


def test_same_seed_gives_byte_identical_files_independent_of_cohort_size(cohort, tmp_path):
    out, truth = cohort
    small = generate_cohort(tmp_path / "a", 3, seed=SEED, workers=1, progress=False)
    for rec in small["patients"]:
        for tp in ("pre", "post"):
            for kind, rel in rec["files"][tp].items():
                assert filecmp.cmp(tmp_path / "a" / rel, out / rel, shallow=False), rel
    other = generate_cohort(tmp_path / "b", 1, seed=SEED + 1, workers=1, progress=False)
    rel = other["patients"][0]["files"]["pre"]["image"]
    assert not filecmp.cmp(tmp_path / "b" / rel, out / rel, shallow=False)
    again = json.loads((tmp_path / "a" / "truth.json").read_text())
    assert again["patients"][0]["invasion_depth_mm"] == truth["patients"][0]["invasion_depth_mm"]


def test_dicom_export_reads_back_as_the_nifti(tmp_path):
    from esoct.io.dicom import read_dicom_series

    truth = generate_cohort(tmp_path, 1, seed=SEED, dicom=True, workers=1, progress=False)
    rec = truth["patients"][0]
    for tp in ("pre", "post"):
        nifti = read_image(tmp_path / rec["files"][tp]["image"])
        series = read_dicom_series(tmp_path / rec["files"][tp]["dicom"])
        assert series.volume.same_geometry(nifti, atol=1e-3)
        np.testing.assert_array_equal(series.volume.array, nifti.array)
        assert series.problems == []
        assert series.info.modality == "CT"
    import pydicom

    # a manifest whose images are the DICOM folders is clean: masks share the series' geometry
    from esoct.io.manifest import check_manifest

    table = pd.read_csv(tmp_path / "manifest.csv", dtype={"patient_id": str})
    table["image_pre"] = rec["files"]["pre"]["dicom"]
    table["image_post"] = rec["files"]["post"]["dicom"]
    table.to_csv(tmp_path / "manifest_dicom.csv", index=False)
    report = check_manifest(tmp_path / "manifest_dicom.csv")
    assert report.ok, report.to_text()
    first = sorted((tmp_path / rec["files"]["pre"]["dicom"]).iterdir())[0]
    ds = pydicom.dcmread(first)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert str(ds.PatientID) == rec["patient_id"]
    assert float(ds.RescaleIntercept) == -1024.0


def test_lymph_node_metastasis_signal_is_real_but_weak():
    """Metastatic nodes are larger and rounder on average, with overlapping distributions."""
    from sklearn.metrics import roc_auc_score

    from esoct.phantom.cohort import assign_centers
    from esoct.phantom.spec import sample_patient

    centers = assign_centers(400, 11)
    nodes = [n for i in range(400) for n in sample_patient(11, i, centers[i]).nodes]
    meta = np.array([n.metastatic for n in nodes])
    volume = np.array([np.prod(n.semi_axes) for n in nodes])
    roundness = np.array([n.semi_axes[0] / n.semi_axes[2] for n in nodes])
    assert 0.2 < meta.mean() < 0.5
    assert 0.6 < roc_auc_score(meta, volume) < 0.95
    assert 0.6 < roc_auc_score(meta, roundness) < 0.95
    assert 0.6 < roc_auc_score(meta, [n.heterogeneity_hu for n in nodes]) < 0.99


def test_wall_thickening_does_not_change_the_t_stage():
    """The same tumour with a thin and a thick wall shows the same T in its voxels, with more volume."""
    from dataclasses import replace

    from esoct.phantom.anatomy import render_anatomy
    from esoct.phantom.grid import Grid
    from esoct.phantom.spec import sample_patient
    from esoct.phantom.tumour import grow_tumour

    center = DEFAULT_CENTERS[0]
    for index in range(6):
        spec = sample_patient(21, index, center)
        grid = Grid.for_center(center)
        volumes, stages = [], []
        for thickening in (1.0, 2.5):
            spec.tumour = replace(spec.tumour, thickening=thickening)
            anatomy, layers = render_anatomy(spec, grid, spec.tumour)
            mask, _ = grow_tumour(anatomy, layers, grid, spec)
            critical = np.isin(anatomy, L.T4_STRUCTURES)
            stages.append(audit_t_stage(mask, layers, critical))
            volumes.append(mask.sum())
        assert stages[0] == stages[1] == spec.tumour.t_stage
        assert volumes[1] > volumes[0]


def test_phantom_cli_refuses_bad_counts_and_a_file_as_output(tmp_path, capsys):
    from esoct.cli import main

    assert main(["phantom", "--patients", "0", "--out", str(tmp_path / "p"), "-q"]) == 2
    assert "--patients must be at least 1, got 0" in capsys.readouterr().err
    target = tmp_path / "a_file"
    target.write_text("x")
    assert main(["phantom", "--patients", "2", "--out", str(target), "-q"]) == 2
    assert "the output folder is an existing file" in capsys.readouterr().err and target.read_text() == "x"
