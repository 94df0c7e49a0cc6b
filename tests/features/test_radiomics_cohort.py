"""Cohort radiomics: Parquet table, cache and resume, failures, local processes and Dask; bad input per scan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("radiomics")
pytest.importorskip("pyarrow")

from esoct.features.cohort import extract_cohort
from esoct.features.radiomics import RadiomicsExtractor
from esoct.io.volume import Volume

pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

N_PATIENTS = 4
FAST_PARAMS = {
    "setting": {"binWidth": 25, "label": 1},
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": None, "shape": None, "glcm": None},
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from esoct.phantom.cohort import generate_cohort

    root = tmp_path_factory.mktemp("phantom")
    generate_cohort(root, N_PATIENTS, seed=1, workers=1, progress=False)
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def serial(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "radiomics.parquet"
    return extract_cohort(cohort, out, params=FAST_PARAMS, workers=1, progress=False)


def test_parquet_has_one_row_per_patient_and_timepoint(serial):
    table = pd.read_parquet(serial.parquet)
    assert list(table.columns[:2]) == ["patient_id", "timepoint"]
    assert len(table) == 2 * N_PATIENTS
    assert set(map(tuple, table[["patient_id", "timepoint"]].values)) == {
        (f"EP{i:04d}", tp) for i in range(1, N_PATIENTS + 1) for tp in ("pre", "post")
    }
    features = table.columns[2:]
    assert "original_firstorder_Entropy" in features and "original_glcm_Correlation" in features
    assert "original_shape_MeshVolume" in features
    assert all(c.startswith(("original_firstorder_", "original_shape_", "original_glcm_")) for c in features)
    assert not any(c.startswith("diagnostics_") for c in features)
    assert table[features].notna().all().all()
    assert serial.failures.empty and serial.failures_csv.is_file()
    # the tumour shrinks after treatment in the phantom
    volume = table.pivot(index="patient_id", columns="timepoint", values="original_shape_VoxelVolume")
    assert (volume["post"] < volume["pre"]).all()


def test_rerun_uses_cache_without_pyradiomics(cohort, tmp_path, monkeypatch):
    out = tmp_path / "radiomics.parquet"
    first = extract_cohort(cohort, out, params=FAST_PARAMS, workers=1, progress=False)
    assert (first.computed, first.cached) == (2 * N_PATIENTS, 0)

    def no_pyradiomics(*args, **kwargs):
        raise AssertionError("PyRadiomics must not run on a cached rerun")

    monkeypatch.setattr(RadiomicsExtractor, "extract_detailed", no_pyradiomics)
    again = extract_cohort(cohort, out, params=FAST_PARAMS, workers=1, progress=False)
    assert (again.computed, again.cached) == (0, 2 * N_PATIENTS)
    pd.testing.assert_frame_equal(first.table, again.table)


def test_interrupted_run_resumes_and_settings_change_recomputes(cohort, tmp_path):
    out = tmp_path / "radiomics.parquet"
    first = extract_cohort(cohort, out, params=FAST_PARAMS, workers=1, progress=False)
    cache_files = sorted((tmp_path / "cache" / "radiomics").glob("*.json"))
    assert len(cache_files) == 2 * N_PATIENTS
    cache_files[0].unlink()  # as if the run had stopped before this scan
    resumed = extract_cohort(cohort, out, params=FAST_PARAMS, workers=1, progress=False)
    assert (resumed.computed, resumed.cached) == (1, 2 * N_PATIENTS - 1)
    pd.testing.assert_frame_equal(first.table, resumed.table)

    other = {**FAST_PARAMS, "setting": {"binWidth": 10, "label": 1}}
    changed = extract_cohort(cohort, out, params=other, workers=1, progress=False)
    assert changed.computed == 2 * N_PATIENTS


def test_broken_mask_path_is_recorded_and_others_complete(cohort, tmp_path):
    table = pd.read_csv(cohort, dtype={"patient_id": str})
    table.loc[table["patient_id"] == "EP0002", "mask_pre"] = "labels/does_not_exist.nii.gz"
    manifest = cohort.parent / "manifest_broken.csv"
    table.to_csv(manifest, index=False)

    result = extract_cohort(manifest, tmp_path / "radiomics.parquet", params=FAST_PARAMS, workers=1, progress=False)
    failures = pd.read_csv(result.failures_csv, dtype={"patient_id": str})
    assert list(failures.columns) == ["patient_id", "timepoint", "family", "reason"]
    assert failures[["patient_id", "timepoint", "family"]].values.tolist() == [["EP0002", "pre", "all"]]
    assert "does_not_exist.nii.gz" in failures["reason"][0] and "EP0002" in failures["reason"][0]
    written = pd.read_parquet(result.parquet)
    assert len(written) == 2 * N_PATIENTS - 1
    assert ("EP0002", "post") in set(map(tuple, written[["patient_id", "timepoint"]].values))


def test_two_local_processes_equal_serial(cohort, serial, tmp_path):
    result = extract_cohort(cohort, tmp_path / "radiomics.parquet", params=FAST_PARAMS, workers=2, progress=False)
    pd.testing.assert_frame_equal(result.table, serial.table)


def test_dask_local_cluster_equals_serial(cohort, serial, tmp_path):
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (pip install 'dask[distributed]')"
    )
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        result = extract_cohort(
            cohort,
            tmp_path / "radiomics.parquet",
            params=FAST_PARAMS,
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    assert result.failures.empty
    pd.testing.assert_frame_equal(pd.read_parquet(result.parquet), pd.read_parquet(serial.parquet))


# -- bad input per scan -------------------------------------------------------------
@pytest.fixture(scope="module")
def extractor():
    return RadiomicsExtractor(FAST_PARAMS)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return Volume(rng.normal(40, 20, (16, 24, 24)), spacing=(2.0, 1.0, 1.0))


def _mask(image, *boxes):
    array = np.zeros(image.shape, np.uint8)
    for box in boxes:
        array[box] = 1
    return image.with_array(array)


BOX = np.s_[4:10, 8:16, 8:16]


def test_good_roi_has_every_family(extractor, image):
    result = extractor.extract_detailed(image, _mask(image, BOX), patient="P1")
    assert result.ok and not result.warnings
    assert {n.split("_")[1] for n in result.features} == {"firstorder", "shape", "glcm"}


def test_empty_mask_names_patient_and_families(extractor, image):
    result = extractor.extract_detailed(image, _mask(image), patient="P1")
    assert not result.features
    assert set(result.failures) == {"firstorder", "shape", "glcm"}
    assert all("no voxel with label 1" in why for why in result.failures.values())
    with pytest.raises(ValueError, match="patient P1: no radiomics feature could be computed.*glcm: mask has no voxel"):
        extractor.extract(image, _mask(image), patient="P1")


def test_single_voxel_keeps_shape(extractor, image):
    result = extractor.extract_detailed(image, _mask(image, np.s_[5, 10, 10]), patient="P1")
    assert result.features["original_shape_VoxelVolume"] == pytest.approx(2.0)
    assert "single voxel" in result.failures["glcm"] and "single voxel" in result.failures["firstorder"]
    assert not any(n.startswith("original_glcm") for n in result.features)


def test_constant_roi_is_computed_with_a_warning(extractor, image):
    flat = image.with_array(np.full(image.shape, 40.0))
    result = extractor.extract_detailed(flat, _mask(flat, BOX), patient="P1")
    assert result.features["original_firstorder_Variance"] == 0
    assert any("constant intensity" in w for w in result.warnings)


def test_mask_touching_border_is_computed_with_a_warning(extractor, image):
    result = extractor.extract_detailed(image, _mask(image, np.s_[0:5, 0:8, 8:16]), patient="P1")
    assert result.ok and "original_glcm_Contrast" in result.features
    assert any("touches the volume border along z, y" in w for w in result.warnings)


def test_geometry_mismatch_keeps_shape_and_says_why(extractor, image):
    mask = _mask(image, BOX)
    moved = Volume(mask.array, spacing=mask.spacing, origin=(5.0, 0.0, 0.0))
    result = extractor.extract_detailed(image, moved, patient="P1")
    reference = extractor.extract(image, mask)
    assert result.features["original_shape_MeshVolume"] == pytest.approx(reference["original_shape_MeshVolume"])
    assert set(result.failures) == {"firstorder", "glcm"}
    assert "grids differ" in result.failures["glcm"] and "origin" in result.failures["glcm"]


def test_settings_hash_follows_the_resolved_settings():
    a = RadiomicsExtractor(FAST_PARAMS)
    b = RadiomicsExtractor({**FAST_PARAMS, "setting": {"binWidth": 25, "label": 1, "padDistance": 5}})  # the default
    c = RadiomicsExtractor({**FAST_PARAMS, "setting": {"binWidth": 10}})
    assert a.settings_hash == b.settings_hash != c.settings_hash


def test_default_params_give_the_papers_851_features(cohort):
    from esoct.io.imageio import read_image

    root = cohort.parent
    img, msk = read_image(root / "images/EP0001_pre.nii.gz"), read_image(root / "labels/EP0001_pre.nii.gz")
    features = RadiomicsExtractor().extract(img, msk, patient="EP0001")
    assert len(features) == 851
    assert sum(n.startswith("wavelet-") for n in features) == 8 * 93
    assert "wavelet-LLH_glcm_Correlation" in features


def test_invalid_parameter_file_names_the_file_and_key(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("setting:\n  binWidht: 25\n")
    with pytest.raises(ValueError, match=r"(?s)params.yaml: invalid PyRadiomics parameters.*binWidht"):
        RadiomicsExtractor(bad)
