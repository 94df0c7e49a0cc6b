"""describe_scan / format_description: the summary behind ``esoct info``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from esoct.errors import InputError
from esoct.io import Volume, write_image
from esoct.io.dicom import write_dicom_series
from esoct.io.inspect import describe_scan, format_description

FORBIDDEN = ("patientname", "patientid", "birthdate", "accession", "basel", "petersgraben", "petct2")


def _all_text(desc: dict) -> str:
    return json.dumps(desc).lower()


def test_dicom_folder(shared_data):
    folder = shared_data / "totalsegmentator" / "example_ct_dicom"
    desc = describe_scan(folder)
    reader = sitk.ImageSeriesReader()
    ref = sitk.GetArrayFromImage(sitk.ReadImage(reader.GetGDCMSeriesFileNames(str(folder))))
    assert desc["format"] == "dicom" and desc["path"] == "example_ct_dicom"
    assert desc["size"] == [512, 512, 20]
    assert desc["spacing_mm"] == pytest.approx([0.9765625, 0.9765625, 2.0])
    assert desc["origin_mm"] == pytest.approx([-249.5117, -437.5117, -804.5], abs=1e-4)
    assert desc["direction"] == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert desc["extent_mm"] == pytest.approx([500.0, 500.0, 40.0])
    assert desc["dtype"] == "int16"
    assert (desc["hu"]["min"], desc["hu"]["max"]) == (float(ref.min()), float(ref.max())) == (-1024.0, 1839.0)
    assert desc["hu"]["p50"] == pytest.approx(float(np.percentile(ref, 50)))
    assert desc["hu"]["p1"] <= desc["hu"]["p50"] <= desc["hu"]["p99"]
    assert (desc["series_description"], desc["modality"], desc["manufacturer"]) == ("CT Body 3.0", "CT", "SIEMENS")
    assert desc["n_series"] == 1 and desc["series_uid"] == "" and desc["slice_thickness_mm"] == 3.0
    assert desc["problems"] == []
    text = _all_text(desc)
    assert not [w for w in FORBIDDEN if w in text]
    out = format_description(desc)
    assert "512 x 512 x 20" in out and "CT Body 3.0" in out and "none found" in out and "-1024" in out


def test_nrrd_chest_ct(shared_data):
    desc = describe_scan(shared_data / "pyradiomics" / "lung1_image.nrrd")
    json.dumps(desc)
    assert desc["format"] == "nrrd" and desc["size"] == [512, 512, 48]
    assert desc["spacing_mm"] == pytest.approx([0.5703, 0.5703, 5.0], abs=1e-4)
    assert desc["hu"]["min"] == pytest.approx(-1024, abs=1) and desc["hu"]["max"] == pytest.approx(3071, abs=1)
    assert desc["n_series"] is None and desc["modality"] is None
    assert any("anisotropic spacing: ratio 8.8" in p for p in desc["problems"]), desc["problems"]
    assert not any("raw stored" in p for p in desc["problems"])
    assert not [w for w in FORBIDDEN if w in _all_text(desc)]


def test_flipped_label_map_is_flagged(shared_data):
    desc = describe_scan(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz")
    assert desc["direction"] == [1, 0, 0, 0, -1, 0, 0, 0, 1]
    assert any("flipped y axis" in p for p in desc["problems"])
    assert any("label map" in p for p in desc["problems"])
    assert "flipped y axis" in format_description(desc)


def _ct(shape=(4, 20, 20)) -> np.ndarray:
    arr = np.full(shape, -1000, np.int16)
    arr[:, 5:15, 5:15] = 40
    return arr


def test_raw_stored_values_and_oblique_direction(tmp_path):
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    vol = Volume((_ct() + 1024).astype(np.int16), spacing=(3.0, 0.7, 0.7), direction=rot)
    desc = describe_scan(write_image(vol, tmp_path / "raw.nii.gz"))
    assert any("raw stored values, not HU (min >= 0" in p for p in desc["problems"]), desc["problems"]
    assert any("oblique direction" in p for p in desc["problems"])
    assert not any("anisotropic" in p for p in desc["problems"])  # 3 / 0.7 < 5
    clean = describe_scan(write_image(Volume(_ct(), spacing=(3.0, 0.7, 0.7)), tmp_path / "hu.nii.gz"))
    assert clean["problems"] == [] and clean["hu"]["min"] == -1000 and clean["hu"]["max"] == 40


def test_non_orthogonal_direction_is_flagged(tmp_path):
    shear = np.array([[1.0, 0.3, 0], [0, 1.0, 0], [0, 0, 1.0]])
    desc = describe_scan(write_image(Volume(_ct(), direction=shear), tmp_path / "shear.nrrd"))
    assert any("not orthonormal" in p for p in desc["problems"]), desc["problems"]


def test_dicom_folder_with_two_series_and_problems(tmp_path):
    files = write_dicom_series(Volume(_ct((6, 20, 20)), spacing=(2.0, 0.8, 0.8)), tmp_path / "f" / "a",
                               patient_id="EP0042", uid_seed="a")
    write_dicom_series(Volume(_ct((3, 10, 10))), tmp_path / "f" / "b", patient_id="EP0042", uid_seed="b")
    files[3].unlink()
    desc = describe_scan(tmp_path / "f")
    json.dumps(desc)
    assert desc["n_series"] == 2 and [s["n_slices"] for s in desc["series"]] == [5, 3]
    assert desc["size"] == [20, 20, 5] and desc["manufacturer"] == "esoct"
    assert any("folder holds 2 series" in p for p in desc["problems"])
    assert any("missing slice" in p for p in desc["problems"])
    assert "EP0042" not in json.dumps(desc)  # not even the pseudonymous id
    other = describe_scan(tmp_path / "f", series_uid=desc["series"][1]["series_uid"])
    assert other["size"] == [10, 10, 3]


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        describe_scan(tmp_path / "nope.nii.gz")
    (tmp_path / "notes.txt").write_text("not a scan")
    with pytest.raises(InputError, match="no CT series"):
        describe_scan(tmp_path)
