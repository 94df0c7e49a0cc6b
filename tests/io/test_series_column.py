"""Manifest ``image_pre_series``: the named series of a DICOM folder is what every step reads.

Built from the real Siemens series of ../shared/data: one folder holds the full series (the one
esoct reads by default: most slices) and a second, shorter series of the same slices with the
values raised by 100 HU (a "venous phase"). Naming the second by UID or by SeriesNumber must give
its voxels, `esoct check` must accept a mask on its grid, and a wrong name must be reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pydicom = pytest.importorskip("pydicom")

from esoct.io.dicom import read_dicom_series  # noqa: E402
from esoct.io.imageio import read_image, write_image  # noqa: E402
from esoct.io.manifest import check_manifest, load_manifest  # noqa: E402
from esoct.io.volume import Volume  # noqa: E402

VENOUS_UID = "1.2.826.0.1.3680043.8.498.77001"


@pytest.fixture(scope="module")
def folder(tmp_path_factory, shared_data):
    from pydicom.uid import generate_uid

    files = list(read_dicom_series(shared_data / "totalsegmentator" / "example_ct_dicom").info.files)
    root = tmp_path_factory.mktemp("two_phases")
    ct = root / "patient1" / "ct"
    ct.mkdir(parents=True)
    for phase, (uid, number, keep, shift) in enumerate([(generate_uid(entropy_srcs=["native"]), 2, None, 0),
                                                        (VENOUS_UID, 5, range(5, len(files) - 5), 100)]):
        for k, f in enumerate(files):
            if keep is not None and k not in keep:
                continue
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID, ds.SeriesNumber = uid, number
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
            ds.SOPInstanceUID = generate_uid(entropy_srcs=[uid, str(k)])
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.RescaleIntercept = float(ds.RescaleIntercept) + shift
            ds.save_as(ct / f"S{phase}_{k:03d}.dcm")
    venous = read_image(ct, series_uid=VENOUS_UID)
    mask = np.zeros(venous.array.shape, np.uint8)
    z, y, x = (s // 2 for s in mask.shape)
    mask[z - 2:z + 2, y - 10:y + 10, x - 10:x + 10] = 1
    write_image(Volume(mask, venous.spacing, venous.origin, venous.direction), root / "patient1" / "mask.nii.gz")
    return root


def _manifest(root: Path, series) -> Path:
    table = pd.DataFrame({"patient_id": ["P1"], "center": ["A"], "image_pre": ["patient1/ct"],
                          "mask_pre": ["patient1/mask.nii.gz"], "image_pre_series": [series]})
    path = root / f"manifest_{series}.csv"
    table.to_csv(path, index=False)
    return path


def test_the_named_series_is_read_by_uid_or_number(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("ESOCT_CACHE", str(tmp_path / "cache"))
    default = read_image(folder / "patient1" / "ct")
    for series in (VENOUS_UID, 5):
        manifest = load_manifest(_manifest(folder, series))
        path = manifest.resolve("P1", "image_pre")
        assert path.parent == tmp_path / "cache" / "series" and len(list(path.iterdir())) == default.array.shape[0] - 10
        image = read_image(path)
        assert image.array.shape[0] == default.array.shape[0] - 10
        np.testing.assert_allclose(image.array.astype(float), default.array[5:-5].astype(float) + 100.0)
        np.testing.assert_allclose(image.origin, read_image(folder / "patient1" / "ct", series_uid=VENOUS_UID).origin)
        assert not np.allclose(image.origin, default.origin)
        report = check_manifest(manifest.path)
        assert report.ok, report.to_text()
    # without the column the folder's longest series is read, and the mask no longer fits its grid
    table = pd.read_csv(_manifest(folder, VENOUS_UID)).drop(columns="image_pre_series")
    table.to_csv(folder / "manifest_default.csv", index=False)
    assert not check_manifest(folder / "manifest_default.csv").ok


def test_an_unknown_series_is_reported_with_what_the_folder_holds(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("ESOCT_CACHE", str(tmp_path / "cache"))
    report = check_manifest(_manifest(folder, "1.2.3.4"))
    errors = [p for p in report.errors if p.column == "image_pre_series"]
    assert len(errors) == 1
    assert "no series '1.2.3.4'" in errors[0].message and VENOUS_UID in errors[0].message
    assert "(number 2, CT" in errors[0].message
