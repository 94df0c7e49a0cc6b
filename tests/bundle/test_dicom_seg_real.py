"""DICOM SEG on the real Siemens series as shipped: its SOPClassUID and SOPInstanceUID are blank in the
data sets (kept only in the file meta); esoct falls back to the file meta and the SEG round-trips."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("highdicom")

from esoct.bundle.dicom_seg import read_dicom_seg_labels, sop_uids_from_file_meta, write_dicom_seg  # noqa: E402
from esoct.errors import InputError  # noqa: E402
from esoct.io.dicom import read_dicom_series  # noqa: E402
from esoct.io.volume import Volume  # noqa: E402


def test_seg_of_the_untouched_siemens_series_round_trips(shared_data, tmp_path):
    import pydicom

    series = read_dicom_series(shared_data / "totalsegmentator" / "example_ct_dicom")
    files = list(series.info.files)
    assert str(pydicom.dcmread(files[0], stop_before_pixels=True).SOPInstanceUID) == ""  # the oddity under test
    labels = np.zeros(series.volume.array.shape, np.uint8)
    labels[5:12, 200:260, 220:300] = 1
    labels[8:15, 300:330, 240:270] = 4
    info = write_dicom_seg(Volume(labels, series.volume.spacing, series.volume.origin, series.volume.direction),
                           files, tmp_path / "seg.dcm", case_id="P1")
    assert info["segments"] == {1: 1, 4: 2} and info["frames"] == 7 + 7
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    referenced = {str(i.ReferencedSOPInstanceUID) for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    meta = {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID) for f in files}
    assert referenced == meta
    np.testing.assert_array_equal(read_dicom_seg_labels(tmp_path / "seg.dcm", files), labels)


def test_a_slice_without_any_sop_uid_is_named(shared_data, tmp_path):
    import pydicom

    f = sorted((shared_data / "totalsegmentator" / "example_ct_dicom").iterdir())[0]
    ds = pydicom.dcmread(f, stop_before_pixels=True)
    ds.file_meta.MediaStorageSOPInstanceUID = ""
    with pytest.raises(InputError, match="SOPInstanceUID is empty") as err:
        sop_uids_from_file_meta(ds, f)
    assert f.name in str(err.value)
