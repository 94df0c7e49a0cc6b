"""DICOM CT series reading and writing, on the real Siemens series and on synthetic edge cases."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from esoct.errors import InputError
from esoct.io import Volume, read_image
from esoct.io.dicom import list_series, read_dicom_series, write_dicom_series
from esoct.io.inspect import describe_scan
from esoct.preprocess import resample_like


def _sitk_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.fixture(scope="module")
def real(shared_data):
    folder = shared_data / "totalsegmentator" / "example_ct_dicom"
    return folder, read_dicom_series(folder)


def test_real_series_equals_simpleitk(real):
    """The real series has an empty SeriesInstanceUID; it must still be read, as GDCM reads it."""
    folder, series = real
    ref = _sitk_series(folder)
    vol = series.volume
    assert vol.size_xyz == ref.GetSize() == (512, 512, 20)
    assert vol.spacing_xyz == pytest.approx(ref.GetSpacing(), abs=1e-6)
    assert vol.spacing_xyz == pytest.approx((0.9765625, 0.9765625, 2.0))
    assert vol.origin == pytest.approx(ref.GetOrigin(), abs=1e-4)
    assert vol.origin == pytest.approx((-249.51, -437.51, -804.5), abs=0.01)
    assert np.allclose(vol.direction.ravel(), ref.GetDirection())
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(ref))
    assert (vol.array.min(), vol.array.max()) == (-1024, 1839)
    assert series.info.series_uid == "" and series.info.n_slices == 20
    assert series.info.series_description == "CT Body 3.0" and series.info.modality == "CT"
    assert series.problems == []


def test_flipped_label_map_lands_on_the_right_voxels(real, shared_data):
    """example_seg_dicom.nii.gz is stored with direction diag(1,-1,1): align it in physical space."""
    _, series = real
    ct = series.volume
    seg = read_image(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz")
    assert np.allclose(seg.direction, np.diag([1.0, -1.0, 1.0]))
    on_ct = resample_like(seg, ct, is_label=True)
    # every labelled voxel of the seg maps, through physical space, onto the same label on the CT grid
    idx = np.argwhere(seg.array > 0)[:: max(1, int((seg.array > 0).sum()) // 400)]
    ct_idx = np.rint(ct.physical_to_index(seg.index_to_physical(idx))).astype(int)
    assert np.array_equal(on_ct.array[tuple(ct_idx.T)], seg.array[tuple(idx.T)])
    # the y flip: seg row j is CT row 511 - j
    assert np.array_equal(on_ct.array, seg.array[:, ::-1, :])
    assert not np.array_equal(on_ct.array, seg.array)  # a naive index overlay would be wrong
    # the aorta (TotalSegmentator id 52) holds contrast-enhanced blood in physical alignment, not in a naive overlay
    aorta = on_ct.array == 52
    assert aorta.sum() > 1000
    assert 100 < ct.array[aorta].mean() < 400
    assert ct.array[seg.array == 52].mean() < 50


def _synthetic(shape=(6, 10, 12), spacing=(2.5, 0.8, 0.8)) -> Volume:
    rng = np.random.default_rng(1)
    arr = rng.integers(-1024, 1500, size=shape).astype(np.int16)
    return Volume(arr, spacing=spacing, origin=(-50.0, -40.0, -300.0))


def test_write_read_round_trip_with_shuffled_names(tmp_path):
    vol = _synthetic()
    files = write_dicom_series(vol, tmp_path / "s", patient_id="P001", uid_seed="x")
    for i, f in enumerate(reversed(files)):  # file names no longer follow z
        f.rename(f.with_name(f"img_{i:03d}.dcm"))
    series = read_dicom_series(tmp_path / "s")
    assert series.volume.same_geometry(vol, atol=1e-4)
    np.testing.assert_array_equal(series.volume.array, vol.array)
    ref = _sitk_series(tmp_path / "s")
    assert ref.GetOrigin() == pytest.approx(vol.origin, abs=1e-4)
    assert ref.GetSpacing() == pytest.approx(vol.spacing_xyz, abs=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ref), vol.array)
    ds = pydicom.dcmread(sorted((tmp_path / "s").iterdir())[0])
    assert float(ds.RescaleIntercept) == -1024 and ds.pixel_array.min() >= 0  # the reader applied the rescale


def test_writing_is_deterministic_and_free_of_identifying_fields(tmp_path):
    vol = _synthetic()
    a = write_dicom_series(vol, tmp_path / "a", patient_id="P001", uid_seed="seed")
    b = write_dicom_series(vol, tmp_path / "b", patient_id="P001", uid_seed="seed")
    assert all(filecmp.cmp(x, y, shallow=False) for x, y in zip(a, b))
    ds = pydicom.dcmread(a[0])
    assert str(ds.PatientName) == "P001" and "PatientBirthDate" not in ds and "InstitutionName" not in ds


def test_two_series_default_largest_or_by_uid(tmp_path):
    write_dicom_series(_synthetic((6, 10, 12)), tmp_path / "f" / "big", patient_id="P", uid_seed="big")
    write_dicom_series(_synthetic((3, 8, 8)), tmp_path / "f" / "small", patient_id="P", uid_seed="small")
    infos = list_series(tmp_path / "f")
    assert [i.n_slices for i in infos] == [6, 3]
    assert read_dicom_series(tmp_path / "f").volume.shape == (6, 10, 12)
    assert read_dicom_series(tmp_path / "f", series_uid=infos[1].series_uid).volume.shape == (3, 8, 8)
    with pytest.raises(InputError, match="no series with SeriesInstanceUID"):
        read_dicom_series(tmp_path / "f", series_uid="1.2.3")
    desc = describe_scan(tmp_path / "f")
    assert desc["n_series"] == 2 and any("2 series" in p for p in desc["problems"])


def test_missing_slice_is_reported(tmp_path):
    files = write_dicom_series(_synthetic((8, 6, 6)), tmp_path / "s", patient_id="P", uid_seed="m")
    files[4].unlink()
    series = read_dicom_series(tmp_path / "s")
    assert series.volume.shape[0] == 7
    assert any("1 missing slice" in p for p in series.problems)


def test_non_uniform_spacing_is_reported(tmp_path):
    files = write_dicom_series(_synthetic((6, 6, 6)), tmp_path / "s", patient_id="P", uid_seed="n")
    ds = pydicom.dcmread(files[-1])
    ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 1.0
    ds.save_as(files[-1])
    series = read_dicom_series(tmp_path / "s")
    assert any("non-uniform slice spacing" in p for p in series.problems)


def test_folder_without_ct_and_corrupt_file(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="no CT series") as exc:
        read_dicom_series(tmp_path / "empty", patient="P9")
    assert "P9" in str(exc.value) and "empty" in str(exc.value)
    files = write_dicom_series(_synthetic((3, 6, 6)), tmp_path / "bad", patient_id="P", uid_seed="c")
    raw = files[1].read_bytes()
    files[1].write_bytes(raw[: len(raw) - 40])  # truncated pixel data
    with pytest.raises(InputError, match="pixel data") as exc:
        read_dicom_series(tmp_path / "bad", patient="P9")
    assert files[1].name in str(exc.value)


def test_describe_scan_on_real_files(real, shared_data):
    folder, _ = real
    desc = describe_scan(folder)
    text = json.dumps(desc)
    assert desc["size"] == [512, 512, 20] and desc["format"] == "dicom"
    assert desc["hu"]["min"] == -1024 and desc["hu"]["max"] == 1839
    assert desc["series_description"] == "CT Body 3.0" and desc["problems"] == []
    for field in ("PatientName", "PatientID", "BirthDate", "AccessionNumber"):
        assert field not in text
    lung = describe_scan(shared_data / "pyradiomics" / "lung1_image.nrrd")
    assert lung["size"] == [512, 512, 48] and lung["spacing_mm"][2] == pytest.approx(5.0)
    assert lung["hu"]["min"] == -1024
    flipped = describe_scan(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz")
    assert any("flipped y axis" in p for p in flipped["problems"])
