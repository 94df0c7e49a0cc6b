"""DICOM CT series reading and writing, on the real Siemens series and on synthetic edge cases."""

from __future__ import annotations

import filecmp

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from esoct.errors import InputError
from esoct.io import Volume, read_image
from esoct.io.dicom import list_series, read_dicom_series, write_dicom_series

PHI_KEYWORDS = ("PatientBirthDate", "PatientSex", "PatientAge", "OtherPatientIDs", "AccessionNumber", "InstitutionName",
                "InstitutionAddress", "ReferringPhysicianName", "StationName", "DeviceSerialNumber",
                "PerformingPhysicianName", "OperatorsName")


def _sitk_series(folder) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.fixture(scope="module")
def real(shared_data):
    folder = shared_data / "totalsegmentator" / "example_ct_dicom"
    return folder, read_dicom_series(folder), _sitk_series(folder)


# -- the real series -----------------------------------------------------------------
def test_real_series_equals_simpleitk(real):
    """The real series has an empty SeriesInstanceUID; it must still be read, exactly as GDCM reads it."""
    _folder, series, ref = real
    vol = series.volume
    assert vol.size_xyz == ref.GetSize() == (512, 512, 20)
    assert vol.spacing_xyz == pytest.approx(ref.GetSpacing(), abs=1e-6)
    assert vol.spacing_xyz == pytest.approx((0.9765625, 0.9765625, 2.0), abs=1e-9)
    assert vol.origin == pytest.approx(ref.GetOrigin(), abs=1e-6)
    assert vol.origin == pytest.approx((-249.51171875, -437.51171875, -804.5), abs=1e-6)
    np.testing.assert_allclose(vol.direction.ravel(), ref.GetDirection(), atol=1e-9)
    ref_array = sitk.GetArrayFromImage(ref)
    np.testing.assert_array_equal(vol.array, ref_array)
    assert vol.array.dtype == np.int16
    assert (int(vol.array.min()), int(vol.array.max())) == (int(ref_array.min()), int(ref_array.max())) == (-1024, 1839)
    assert series.problems == []


def test_real_series_is_sorted_along_the_normal_not_by_instance_number(real):
    """InstanceNumber runs head to feet in this export (267 at z=-766.5): sorting by it would flip z."""
    _, series, _ = real
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in series.info.files]
    z = [float(h.ImagePositionPatient[2]) for h in headers]
    assert z == sorted(z) and z[0] == -804.5 and z[-1] == -766.5
    assert [int(h.InstanceNumber) for h in headers] == list(range(286, 266, -1))
    assert series.volume.index_to_physical((19, 0, 0))[2] == pytest.approx(-766.5)


def test_real_series_info_has_no_patient_fields(real):
    folder, series, _ = real
    info = series.info
    assert info.series_uid == "" and info.n_slices == 20 and (info.rows, info.columns) == (512, 512)
    assert (info.series_description, info.modality, info.manufacturer) == ("CT Body 3.0", "CT", "SIEMENS")
    assert info.slice_thickness == 3.0  # thicker than the 2 mm spacing: overlapping reconstruction
    assert series.volume.meta["series_description"] == "CT Body 3.0" and series.volume.meta["modality"] == "CT"
    listed = list_series(folder)
    assert len(listed) == 1 and listed[0].files == info.files
    text = repr(info.to_dict()) + repr(series.volume.meta)
    for leak in ("Basel", "Petersgraben", "PETCT2", "60064 ", "Patient"):  # institution address, station name...
        assert leak not in text


def _resample_nearest(moving: Volume, reference: Volume) -> np.ndarray:
    image = moving.to_sitk()
    out = sitk.Resample(image, reference.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID())
    return sitk.GetArrayFromImage(out)


def test_flipped_label_map_lands_on_the_right_voxels(real, shared_data):
    """example_seg_dicom.nii.gz is stored with direction diag(1,-1,1): it aligns with the CT only in physical space."""
    _, series, _ = real
    ct = series.volume
    seg = read_image(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz")
    assert np.allclose(seg.direction, np.diag([1.0, -1.0, 1.0]))
    assert seg.origin == pytest.approx((-249.51171875, 61.51171875, -804.5), abs=1e-4)
    on_ct = _resample_nearest(seg, ct)
    # labelled seg voxels -> physical point -> CT index: the resampled label there is the same label
    labelled = np.argwhere(seg.array > 0)
    idx = labelled[np.random.default_rng(0).choice(len(labelled), 500, replace=False)]
    ct_idx = ct.physical_to_index(seg.index_to_physical(idx))
    np.testing.assert_allclose(ct_idx, np.rint(ct_idx), atol=1e-3)  # same grid, flipped: lands on voxel centres
    ct_idx = np.rint(ct_idx).astype(int)
    assert np.array_equal(on_ct[tuple(ct_idx.T)], seg.array[tuple(idx.T)])
    assert np.array_equal(ct_idx[:, 1], 511 - idx[:, 1]) and np.array_equal(ct_idx[:, [0, 2]], idx[:, [0, 2]])
    # a naive index overlay (no flip) is wrong
    assert not np.array_equal(on_ct, seg.array)
    assert np.array_equal(on_ct, seg.array[:, ::-1, :])


def test_organ_hu_is_plausible_only_in_physical_alignment(real, shared_data):
    _, series, _ = real
    ct = series.volume
    seg = read_image(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz")
    on_ct = _resample_nearest(seg, ct)
    aorta, liver = on_ct == 52, on_ct == 5  # TotalSegmentator ids: 52 aorta, 5 liver
    assert aorta.sum() == (seg.array == 52).sum() == 11723
    assert 100 < ct.array[aorta].mean() < 300  # contrast-enhanced blood ("Contrast/Bolus Agent: APPLIED")
    assert 40 < ct.array[liver].mean() < 150
    naive_aorta = ct.array[seg.array == 52].mean()
    naive_liver = ct.array[seg.array == 5].mean()
    assert naive_aorta < 0 and naive_liver < 0  # overlay by index lands largely in air / lung / fat
    assert ct.array[aorta].mean() - naive_aorta > 200


# -- synthetic series ----------------------------------------------------------------
def _synthetic(shape=(6, 10, 12), spacing=(2.5, 0.8, 0.7), direction=None, seed=1) -> Volume:
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1024, 1500, size=shape).astype(np.int16)
    return Volume(arr, spacing=spacing, origin=(-50.25, -40.5, -300.125),
                  direction=np.eye(3) if direction is None else direction)


def _rotation_z(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("direction", [np.eye(3), _rotation_z(30.0)], ids=["axial", "oblique"])
def test_write_read_round_trip_with_shuffled_names(tmp_path, direction):
    vol = _synthetic(direction=direction)
    files = write_dicom_series(vol, tmp_path / "s", patient_id="P001", uid_seed="x")
    assert len(files) == 6
    order = np.random.default_rng(3).permutation(len(files))
    for f, i in zip(files, order):  # file names no longer follow z
        f.rename(f.with_name(f"img_{i:03d}.dcm"))
    series = read_dicom_series(tmp_path / "s")
    assert series.volume.same_geometry(vol, atol=1e-5), series.volume.geometry_differences(vol)
    np.testing.assert_array_equal(series.volume.array, vol.array)
    assert series.volume.array.dtype == np.int16 and series.problems == []
    ref = _sitk_series(tmp_path / "s")
    assert ref.GetOrigin() == pytest.approx(vol.origin, abs=1e-4)
    assert ref.GetSpacing() == pytest.approx(vol.spacing_xyz, abs=1e-4)
    np.testing.assert_allclose(ref.GetDirection(), vol.direction.ravel(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ref), vol.array)


def test_written_files_are_valid_ct_with_stored_values_rescaled(tmp_path):
    vol = _synthetic()
    files = write_dicom_series(vol, tmp_path / "s", patient_id="P001", window=(50, 350))
    ds = pydicom.dcmread(files[2])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.Modality == "CT" and ds.InstanceNumber == 3 and ds.BitsAllocated == 16
    assert (float(ds.RescaleIntercept), float(ds.RescaleSlope)) == (-1024.0, 1.0)
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (50.0, 350.0)
    assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == 2.5
    assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx([-50.25, -40.5, -300.125 + 2 * 2.5])
    assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.7]  # rows (y), columns (x)
    raw = ds.pixel_array
    assert raw.dtype == np.uint16 and raw.min() >= 0
    np.testing.assert_array_equal(raw.astype(int) - 1024, vol.array[2])
    uids = {pydicom.dcmread(f).SOPInstanceUID for f in files}
    assert len(uids) == len(files)
    assert len({pydicom.dcmread(f).SeriesInstanceUID for f in files}) == 1


def test_values_below_minus_1024_use_signed_pixels(tmp_path):
    vol = _synthetic()
    arr = vol.array.copy()
    arr[0, 0, :3] = (-3024, -2048, -1025)  # padding outside the field of view
    vol = vol.with_array(arr)
    files = write_dicom_series(vol, tmp_path / "s", patient_id="P")
    assert pydicom.dcmread(files[0]).PixelRepresentation == 1
    np.testing.assert_array_equal(read_dicom_series(tmp_path / "s").volume.array, arr)


def test_left_handed_volume_is_written_as_the_same_physical_image(tmp_path):
    vol = _synthetic(direction=np.diag([1.0, 1.0, -1.0]))
    write_dicom_series(vol, tmp_path / "s", patient_id="P")
    back = read_dicom_series(tmp_path / "s").volume
    np.testing.assert_array_equal(back.array, vol.array[::-1])
    np.testing.assert_allclose(back.direction, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(back.index_to_physical((0, 3, 4)), vol.index_to_physical((5, 3, 4)), atol=1e-4)


def test_writing_is_deterministic_and_free_of_identifying_fields(tmp_path):
    vol = _synthetic()
    a = write_dicom_series(vol, tmp_path / "a", patient_id="P001", uid_seed="seed")
    b = write_dicom_series(vol, tmp_path / "b", patient_id="P001", uid_seed="seed")
    assert [x.name for x in a] == [y.name for y in b]
    assert all(filecmp.cmp(x, y, shallow=False) for x, y in zip(a, b))
    c = write_dicom_series(vol, tmp_path / "c", patient_id="P001", uid_seed="other")
    assert pydicom.dcmread(c[0]).SeriesInstanceUID != pydicom.dcmread(a[0]).SeriesInstanceUID
    d = write_dicom_series(vol, tmp_path / "d", patient_id="P002", uid_seed="seed")
    assert pydicom.dcmread(d[0]).StudyInstanceUID != pydicom.dcmread(a[0]).StudyInstanceUID
    ds = pydicom.dcmread(a[0])
    assert str(ds.PatientName) == str(ds.PatientID) == "P001"
    for keyword in PHI_KEYWORDS:
        assert keyword not in ds or ds[keyword].is_empty, keyword
    for element in ds.iterall():
        if element.VR == "PN" and not element.is_empty:
            assert str(element.value) == "P001", element
    assert {ds.StudyDate, ds.SeriesDate, ds.ContentDate} == {"20200101"}


def test_explicit_uids_are_used(tmp_path):
    files = write_dicom_series(_synthetic(), tmp_path / "s", patient_id="P", study_uid="1.2.3.4", series_uid="1.2.3.4.5")
    ds = pydicom.dcmread(files[0])
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == ("1.2.3.4", "1.2.3.4.5")
    assert read_dicom_series(tmp_path / "s", series_uid="1.2.3.4.5").info.series_uid == "1.2.3.4.5"


def test_rewriting_a_shorter_series_removes_stale_slices(tmp_path):
    write_dicom_series(_synthetic((6, 8, 8)), tmp_path / "s", patient_id="P")
    write_dicom_series(_synthetic((4, 8, 8)), tmp_path / "s", patient_id="P")
    assert len(list((tmp_path / "s").iterdir())) == 4
    assert read_dicom_series(tmp_path / "s").volume.shape == (4, 8, 8)


def test_two_series_default_largest_or_by_uid(tmp_path):
    write_dicom_series(_synthetic((6, 10, 12)), tmp_path / "f" / "big", patient_id="P", uid_seed="big")
    write_dicom_series(_synthetic((3, 8, 8)), tmp_path / "f" / "sub" / "small", patient_id="P", uid_seed="small")
    infos = list_series(tmp_path / "f")
    assert [i.n_slices for i in infos] == [6, 3] and infos[0].series_uid != infos[1].series_uid
    default = read_dicom_series(tmp_path / "f")
    assert default.volume.shape == (6, 10, 12) and len(default.all_series) == 2
    assert read_dicom_series(tmp_path / "f", series_uid=infos[1].series_uid).volume.shape == (3, 8, 8)
    with pytest.raises(InputError, match="no series with SeriesInstanceUID") as exc:
        read_dicom_series(tmp_path / "f", series_uid="1.2.3", patient="P7")
    assert infos[0].series_uid in str(exc.value) and infos[1].series_uid in str(exc.value) and "P7" in str(exc.value)


def test_ct_is_preferred_over_a_larger_other_modality(tmp_path):
    files = write_dicom_series(_synthetic((8, 6, 6)), tmp_path / "f" / "pet", patient_id="P", uid_seed="pet")
    for f in files:
        ds = pydicom.dcmread(f)
        ds.Modality = "PT"
        ds.save_as(f)
    write_dicom_series(_synthetic((4, 6, 6)), tmp_path / "f" / "ct", patient_id="P", uid_seed="ct")
    assert [i.modality for i in list_series(tmp_path / "f")] == ["CT", "PT"]
    assert read_dicom_series(tmp_path / "f").volume.shape == (4, 6, 6)


def test_missing_slice_is_reported(tmp_path):
    files = write_dicom_series(_synthetic((8, 6, 6)), tmp_path / "s", patient_id="P", uid_seed="m")
    files[4].unlink()
    series = read_dicom_series(tmp_path / "s")
    assert series.volume.shape[0] == 7 and series.volume.spacing[0] == pytest.approx(2.5)
    assert any("1 missing slice" in p and "after slice 3" in p for p in series.problems), series.problems


def test_non_uniform_spacing_is_reported_with_min_and_max_gap(tmp_path):
    files = write_dicom_series(_synthetic((6, 6, 6)), tmp_path / "s", patient_id="P", uid_seed="n")
    ds = pydicom.dcmread(files[-1])
    ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 1.0
    ds.save_as(files[-1])
    problems = read_dicom_series(tmp_path / "s").problems
    assert any("non-uniform slice spacing" in p and "2.5 to 3.5 mm" in p for p in problems), problems


def test_duplicate_positions_are_dropped_and_reported(tmp_path):
    vol = _synthetic((5, 6, 6))
    files = write_dicom_series(vol, tmp_path / "s", patient_id="P")
    ds = pydicom.dcmread(files[2])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.9"
    ds.save_as(tmp_path / "s" / "copy.dcm")
    series = read_dicom_series(tmp_path / "s")
    assert series.volume.shape == (5, 6, 6)
    np.testing.assert_array_equal(series.volume.array, vol.array)
    assert any("1 duplicate slice position" in p for p in series.problems), series.problems


def test_mixed_orientation_slice_is_left_out_and_reported(tmp_path):
    files = write_dicom_series(_synthetic((5, 6, 6)), tmp_path / "s", patient_id="P")
    ds = pydicom.dcmread(files[4])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # a coronal localizer in the same series
    ds.save_as(files[4])
    series = read_dicom_series(tmp_path / "s")
    assert series.volume.shape == (4, 6, 6)
    assert any("mixed slice orientations" in p for p in series.problems), series.problems


def test_inconsistent_rows_and_columns_is_an_error(tmp_path):
    files = write_dicom_series(_synthetic((4, 6, 6)), tmp_path / "s", patient_id="P")
    ds = pydicom.dcmread(files[1])
    ds.Rows = ds.Columns = 4
    ds.PixelData = np.zeros((4, 4), np.uint16).tobytes()
    ds.save_as(files[1])
    with pytest.raises(InputError, match="different sizes") as exc:
        read_dicom_series(tmp_path / "s", patient="P3")
    assert "4 x 4" in str(exc.value) and "6 x 6" in str(exc.value) and files[1].name in str(exc.value)


def test_folder_without_ct_names_folder_and_patient(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="no CT series") as exc:
        read_dicom_series(tmp_path / "empty", patient="P9")
    assert "P9" in str(exc.value) and "empty" in str(exc.value)
    with pytest.raises(InputError, match="does not exist"):
        read_dicom_series(tmp_path / "nowhere", patient="P9")


def test_corrupt_pixel_data_names_the_file(tmp_path):
    files = write_dicom_series(_synthetic((3, 6, 6)), tmp_path / "bad", patient_id="P", uid_seed="c")
    raw = files[1].read_bytes()
    files[1].write_bytes(raw[: len(raw) - 40])  # truncated pixel data
    with pytest.raises(InputError, match="pixel data") as exc:
        read_dicom_series(tmp_path / "bad", patient="P9")
    assert files[1].name in str(exc.value) and "P9" in str(exc.value)


def test_other_files_are_skipped_and_broken_dicom_counted(tmp_path):
    vol = _synthetic((4, 6, 6))
    write_dicom_series(vol, tmp_path / "s", patient_id="P")
    (tmp_path / "s" / "notes.txt").write_text("a text file")
    (tmp_path / "s" / "DICOMDIR.json").write_bytes(b"{}")
    (tmp_path / "s" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 10)
    series = read_dicom_series(tmp_path / "s")
    np.testing.assert_array_equal(series.volume.array, vol.array)
    assert any("1 DICOM file(s) could not be read" in p and "broken.dcm" in p for p in series.problems)


def test_files_without_part10_header_are_read(tmp_path):
    """Old exports may hold bare data sets: no 128-byte preamble, no 'DICM', no file meta."""
    vol = _synthetic((3, 6, 6))
    files = write_dicom_series(vol, tmp_path / "s", patient_id="P")
    for f in files:
        bare = pydicom.Dataset()
        bare.update(pydicom.dcmread(f))
        pydicom.dcmwrite(f, bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert files[0].read_bytes()[:2] == b"\x08\x00" and b"DICM" not in files[0].read_bytes()[:200]
    series = read_dicom_series(tmp_path / "s")
    assert series.volume.same_geometry(vol, atol=1e-5) and series.problems == []
    np.testing.assert_array_equal(series.volume.array, vol.array)
