"""Volume geometry and NIfTI/NRRD reading and writing, on synthetic and real CT."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from esoct.errors import InputError
from esoct.io import Volume, read_image, write_image


def _oblique() -> np.ndarray:
    a = np.deg2rad(20)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def test_index_physical_round_trip_matches_simpleitk():
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    vol = Volume(arr, spacing=(2.5, 0.8, 0.7), origin=(-10.0, 20.0, -300.0), direction=_oblique())
    img = vol.to_sitk()
    for idx_zyx in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        expected = img.TransformIndexToPhysicalPoint(tuple(int(i) for i in idx_zyx[::-1]))
        assert np.allclose(vol.index_to_physical(idx_zyx), expected)
        assert np.allclose(vol.physical_to_index(expected), idx_zyx)
    assert vol.spacing_xyz == (0.7, 0.8, 2.5)
    assert vol.voxel_volume_mm3 == pytest.approx(2.5 * 0.8 * 0.7)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_write_read_round_trip_keeps_geometry_exactly(tmp_path, suffix):
    rng = np.random.default_rng(0)
    arr = rng.integers(-1024, 2000, size=(7, 9, 11)).astype(np.int16)
    vol = Volume(arr, spacing=(5.0, 0.703125, 0.703125), origin=(-180.5, -170.25, -612.0), direction=_oblique())
    back = read_image(write_image(vol, tmp_path / f"v{suffix}"))
    assert back.same_geometry(vol, atol=1e-5)
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, arr)


def test_crop_keeps_physical_positions_and_pads():
    arr = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    vol = Volume(arr, spacing=(3.0, 1.0, 2.0), origin=(1.0, 2.0, 3.0))
    box = vol.crop((-1, 2, 3), (3, 3, 6), fill=-1024)
    assert box.shape == (3, 3, 6)
    assert np.allclose(box.origin, vol.index_to_physical((-1, 2, 3)))
    assert (box.array[0] == -1024).all()  # slice z=-1 lies outside
    assert box.array[1, 0, 0] == arr[0, 2, 3]
    assert (box.array[:, :, 4:] == -1024).all()  # x = 7, 8 lie outside


def test_geometry_differences_are_described():
    a = Volume(np.zeros((2, 3, 4)), spacing=(5, 1, 1))
    b = Volume(np.zeros((2, 3, 4)), spacing=(2.5, 1, 1), origin=(0, 0, 10))
    diffs = " ".join(a.geometry_differences(b))
    assert "spacing" in diffs and "origin" in diffs and "size" not in diffs


def test_volume_rejects_bad_input():
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="spacing"):
        Volume(np.zeros((2, 2, 2)), spacing=(1, 0, 1))


def test_read_missing_and_unknown_files(tmp_path):
    with pytest.raises(InputError, match="does not exist") as exc:
        read_image(tmp_path / "x.nii.gz", patient="P7")
    assert "P7" in str(exc.value) and "x.nii.gz" in str(exc.value)
    (tmp_path / "scan.xyz").write_text("hello")
    with pytest.raises(InputError, match="unknown image format"):
        read_image(tmp_path / "scan.xyz")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(InputError, match="cannot read"):
        read_image(tmp_path / "broken.nii.gz")


def test_real_chest_ct_nrrd(shared_data):
    """lung1: 512 x 512 x 48, 0.5703 x 0.5703 x 5.0 mm, HU from -1024 (PyRadiomics' test case)."""
    path = shared_data / "pyradiomics" / "lung1_image.nrrd"
    vol = read_image(path)
    ref = sitk.ReadImage(str(path))
    assert vol.size_xyz == ref.GetSize() == (512, 512, 48)
    assert vol.spacing_xyz == pytest.approx(ref.GetSpacing())
    assert vol.spacing_xyz[0] == pytest.approx(0.5703, abs=1e-4) and vol.spacing[0] == pytest.approx(5.0)
    assert vol.origin == pytest.approx(ref.GetOrigin())
    assert vol.array.min() == sitk.GetArrayViewFromImage(ref).min() <= -1000
    label = read_image(shared_data / "pyradiomics" / "lung1_label.nrrd")
    assert label.same_geometry(vol)
    assert int((label.array == 1).sum()) == 837
