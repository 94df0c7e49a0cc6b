"""nnU-Net v2 raw-dataset export and prediction import on a phantom cohort; nnU-Net's own integrity check when installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from esoct.errors import InputError
from esoct.io.imageio import read_image, write_image
from esoct.io.nnunet import (
    NNUNET_LABELS,
    case_identifier,
    check_nnunet_dataset,
    dataset_folder_name,
    export_nnunet_dataset,
    import_nnunet_predictions,
    read_case_map,
)
from esoct.io.volume import Volume
from esoct.phantom.cohort import generate_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three phantom patients from centres C, A and B (seed 1)."""
    out = tmp_path_factory.mktemp("phantom3")
    generate_cohort(out, 3, seed=1, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def export(cohort, tmp_path_factory):
    return export_nnunet_dataset(cohort / "manifest.csv", tmp_path_factory.mktemp("raw"), 501, "EsophagusCT", progress=False)


def test_export_layout_and_dataset_json(cohort, export):
    folder = export.folder
    assert folder.name == "Dataset501_EsophagusCT" and export.ok
    patients = pd.read_csv(cohort / "manifest.csv")["patient_id"].tolist()
    assert export.train_cases == {p: p for p in patients} and export.test_cases == {}
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"{p}_0000.nii.gz" for p in patients]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"{p}.nii.gz" for p in patients]
    assert not (folder / "imagesTs").exists()
    ds = json.loads((folder / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT"}
    assert ds["labels"] == {"background": 0, "tumour": 1, "aorta": 2, "esophagus": 3, "lymph_node": 4, "pericardium": 5}
    assert ds["numTraining"] == 3 and ds["file_ending"] == ".nii.gz"
    assert read_case_map(folder) == {p: p for p in patients}


def test_export_voxels_and_geometry_equal_the_source(cohort, export):
    manifest = pd.read_csv(cohort / "manifest.csv")
    for row in manifest.itertuples():
        source_image = read_image(cohort / row.image_pre)
        source_mask = read_image(cohort / row.mask_pre)
        image = read_image(export.folder / "imagesTr" / f"{row.patient_id}_0000.nii.gz")
        label = read_image(export.folder / "labelsTr" / f"{row.patient_id}.nii.gz")
        assert image.same_geometry(source_image, atol=1e-6) and label.same_geometry(image, atol=1e-6)
        assert image.spacing == label.spacing and image.origin == label.origin
        np.testing.assert_array_equal(image.array, source_image.array)
        np.testing.assert_array_equal(label.array, source_mask.array)
        assert label.array.dtype == np.uint8
        assert set(np.unique(label.array)) <= set(NNUNET_LABELS.values())
    assert check_nnunet_dataset(export.folder) == []


NNUNET_PYTHON = Path(__file__).resolve().parents[2] / ".venv-nnunet" / "bin" / "python"
VERIFY = (
    "import sys; from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity; "
    "verify_dataset_integrity(sys.argv[1], 1)"
)


def _verify_with_nnunet(folder: Path) -> subprocess.CompletedProcess:
    """nnU-Net v2's own integrity check, in this venv if it has nnunetv2, else in ``.venv-nnunet``."""
    try:
        import nnunetv2  # noqa: F401

        python = sys.executable
    except ImportError:
        if not NNUNET_PYTHON.is_file():
            pytest.skip("nnunetv2 is not installed (make test installs it into .venv-nnunet)")
        python = str(NNUNET_PYTHON)
    return subprocess.run([python, "-c", VERIFY, str(folder)], capture_output=True, text=True, timeout=600)


def test_nnunet_v2_integrity_check_accepts_the_export(export, tmp_path):
    ok = _verify_with_nnunet(export.folder)
    assert ok.returncode == 0, ok.stderr[-2000:]
    broken = tmp_path / export.folder.name
    shutil.copytree(export.folder, broken)
    label_path = sorted((broken / "labelsTr").iterdir())[0]
    label = read_image(label_path)
    array = label.array.copy()
    array[0, 0, 0] = 9  # a label that dataset.json does not declare
    write_image(Volume(array, label.spacing, label.origin, label.direction), label_path)
    bad = _verify_with_nnunet(broken)
    assert bad.returncode != 0  # nnU-Net refuses it: the check is real


def test_own_check_finds_problems(export, tmp_path):
    broken = tmp_path / export.folder.name
    shutil.copytree(export.folder, broken)
    first = sorted((broken / "imagesTr").iterdir())[0]
    first.unlink()
    ds = json.loads((broken / "dataset.json").read_text())
    ds["numTraining"] = 4
    (broken / "dataset.json").write_text(json.dumps(ds))
    label_path = sorted((broken / "labelsTr").iterdir())[1]
    label = read_image(label_path)
    write_image(Volume(label.array, label.spacing, (0.0, 0.0, 0.0), label.direction), label_path)
    problems = check_nnunet_dataset(broken)
    assert any("numTraining is 4" in p for p in problems)
    assert any(first.name in p and "missing" in p for p in problems)
    assert any(label_path.name in p and "origin" in p for p in problems)


def test_export_test_split_and_failures(cohort, tmp_path):
    manifest = pd.read_csv(cohort / "manifest.csv")
    for col in ("image_pre", "mask_pre", "image_post", "mask_post", "mask_pre_reader2"):
        manifest[col] = [str(cohort / v) for v in manifest[col]]
    offgrid = manifest.iloc[[0]].copy()
    offgrid["patient_id"] = "EP 0099/x"  # odd characters become '-'
    offgrid["mask_pre"] = manifest.iloc[1]["mask_pre"]  # centre A's mask on a centre C image
    path = tmp_path / "manifest.csv"
    pd.concat([manifest, offgrid]).to_csv(path, index=False)
    pids = manifest["patient_id"].tolist()
    out = export_nnunet_dataset(path, tmp_path / "raw", 7, "Eso-test", test_patients=[pids[2]], progress=False)
    assert out.folder.name == "Dataset007_Eso-test"
    assert out.train_cases == {pids[0]: pids[0], pids[1]: pids[1]}
    assert out.test_cases == {pids[2]: pids[2]}
    assert list(out.failures) == ["EP 0099/x"] and "mask grid differs" in out.failures["EP 0099/x"]
    assert [p.name for p in (out.folder / "imagesTs").iterdir()] == [f"{pids[2]}_0000.nii.gz"]
    assert json.loads((out.folder / "dataset.json").read_text())["numTraining"] == 2
    assert check_nnunet_dataset(out.folder) == []
    with pytest.raises(InputError, match="exists and is not empty"):
        export_nnunet_dataset(path, tmp_path / "raw", 7, "Eso-test", progress=False)


def test_names_and_refusals(cohort, tmp_path):
    assert case_identifier("EP_0001 b") == "EP-0001-b"
    assert dataset_folder_name(12, "Eso") == "Dataset012_Eso"
    for bad in (0, 1000):
        with pytest.raises(InputError, match="1..999"):
            dataset_folder_name(bad, "Eso")
    with pytest.raises(InputError, match="letters, digits"):
        dataset_folder_name(5, "Eso CT_v2")
    manifest = cohort / "manifest.csv"
    with pytest.raises(InputError, match="not in the manifest: NOPE"):
        export_nnunet_dataset(manifest, tmp_path, 5, test_patients=["NOPE"], progress=False)
    pids = pd.read_csv(manifest)["patient_id"].tolist()
    with pytest.raises(InputError, match="both the training and the test"):
        export_nnunet_dataset(manifest, tmp_path, 5, train_patients=pids, test_patients=pids[:1], progress=False)
    table = pd.read_csv(manifest)
    table.loc[1, "patient_id"] = pids[0].replace("EP", "EP_")  # "EP_0001" vs "EP-0001" after cleaning
    table.loc[0, "patient_id"] = pids[0].replace("EP", "EP-")
    for col in ("image_pre", "mask_pre", "image_post", "mask_post", "mask_pre_reader2"):
        table[col] = [str(cohort / v) for v in table[col]]
    table.to_csv(tmp_path / "clash.csv", index=False)
    with pytest.raises(InputError, match="both map to nnU-Net case"):
        export_nnunet_dataset(tmp_path / "clash.csv", tmp_path / "clash", 5, progress=False)


def test_import_predictions_back_to_patients(cohort, export, tmp_path):
    manifest = pd.read_csv(cohort / "manifest.csv")
    preds = tmp_path / "predictions"
    preds.mkdir()
    for case in export.train_cases.values():
        shutil.copy(export.folder / "labelsTr" / f"{case}.nii.gz", preds / f"{case}.nii.gz")
    (preds / "plans.json").write_text("{}")  # nnU-Net leaves other files there
    result = import_nnunet_predictions(preds, cohort / "manifest.csv", export.folder)
    assert result.ok and sorted(result.volumes) == sorted(manifest["patient_id"])
    for row in manifest.itertuples():
        source = read_image(cohort / row.mask_pre)
        got = result.volumes[row.patient_id]
        assert got.same_geometry(read_image(cohort / row.image_pre), atol=1e-9)
        np.testing.assert_array_equal(got.array, source.array)
    written = import_nnunet_predictions(preds, cohort / "manifest.csv", out_dir=tmp_path / "by_patient")
    assert written.volumes == {} and sorted(p.name for p in written.paths.values()) == sorted(
        f"{p}.nii.gz" for p in manifest["patient_id"])

    # a prediction on the wrong grid and a case nobody owns are reported, the rest imported
    first = manifest["patient_id"][0]
    bad = read_image(preds / f"{first}.nii.gz")
    write_image(Volume(bad.array, (bad.spacing[0] * 2, *bad.spacing[1:]), bad.origin, bad.direction), preds / f"{first}.nii.gz")
    write_image(bad, preds / "EP7777.nii.gz")
    result = import_nnunet_predictions(preds, cohort / "manifest.csv", export.folder / "case_map.csv")
    assert set(result.failures) == {first, "EP7777"}
    assert "spacing" in result.failures[first] and f"{first}.nii.gz" in result.failures[first]
    assert str(cohort / manifest["image_pre"][0]) in result.failures[first]
    assert "maps to no patient" in result.failures["EP7777"]
    assert len(result.volumes) == 2
