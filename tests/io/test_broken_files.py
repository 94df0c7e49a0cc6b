"""A truncated .nii.gz and NaN/Inf voxels are refused with the file named (ITK would read zeros)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from esoct.cli import main
from esoct.errors import InputError
from esoct.io.imageio import read_image, write_image
from esoct.io.manifest import check_manifest
from esoct.io.volume import Volume


def test_a_truncated_real_nifti_is_refused(shared_data, tmp_path, capsys):
    source = (shared_data / "totalsegmentator" / "example_ct.nii.gz").read_bytes()
    cut = tmp_path / "ct_cut.nii.gz"
    cut.write_bytes(source[: len(source) // 2])
    with pytest.raises(InputError, match="truncated") as err:
        read_image(cut, patient="P7")
    assert "ct_cut.nii.gz" in str(err.value) and "patient P7" in str(err.value)
    assert main(["info", str(cut)]) == 2
    assert "truncated" in capsys.readouterr().err
    assert read_image(shared_data / "totalsegmentator" / "example_ct.nii.gz").array.shape == (112, 101, 122)


def test_nan_and_inf_voxels_are_refused_and_check_reports_them(tmp_path):
    arr = np.zeros((4, 8, 8), np.float32)
    arr[1, 2, 3], arr[2, 2, 2] = np.nan, np.inf
    write_image(Volume(arr, (2.0, 1.0, 1.0)), tmp_path / "ct.nii.gz")
    write_image(Volume(np.ones((4, 8, 8), np.uint8), (2.0, 1.0, 1.0)), tmp_path / "mask.nii.gz")
    with pytest.raises(InputError, match="2 voxel\\(s\\) are NaN or infinite"):
        read_image(tmp_path / "ct.nii.gz")
    pd.DataFrame({"patient_id": ["P1"], "center": ["A"], "image_pre": ["ct.nii.gz"],
                  "mask_pre": ["mask.nii.gz"]}).to_csv(tmp_path / "m.csv", index=False)
    report = check_manifest(tmp_path / "m.csv")
    assert not report.ok and any("NaN or infinite" in p.message for p in report.errors)
