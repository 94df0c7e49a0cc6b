"""`esoct import` on a DICOM tree built from the real Siemens series of ../shared/data.

RTSTRUCTs are written by rt-utils (a real writer) from TotalSegmentator's reference label map of
that series, DICOM SEG by highdicom; the import must give the label map back (Dice >= 0.95),
report every oddity of the tree (a contour on a deleted slice, an unknown ROI name, two CT series
in one study, an MR series, non-DICOM files) and write nothing identifying outside the key file.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("rt_utils")

from esoct.cli import main  # noqa: E402
from esoct.io.dicom import read_dicom_series  # noqa: E402
from esoct.io.dicom_import import SeriesRule, import_dicom_tree, pseudonyms  # noqa: E402
from esoct.io.manifest import check_manifest  # noqa: E402
from esoct.io.roi_map import RoiMap  # noqa: E402

# TotalSegmentator v2 class id -> the ROI name written into the RTSTRUCT (and the esoct label expected)
ROIS = {52: ("Aorta", 2), 6: ("GTV_primary", 1), 8: ("LN 2R", 4), 1: ("Spinal Cord", None)}
NAMES = {"P-A": "DOE^JANE", "P-B": "ROE^RICHARD", "P-C": "POE^EDGAR", "P-D": "LOE^LISA"}


def _copy_series(src_files, dst: Path, *, patient_id: str, study_uid: str, study_date: str, series_uid: str | None,
                 keep=None, modality: str | None = None, description: str | None = None, number: int | None = None):
    """Copy a series with new patient/study fields; new SOP UIDs unless ``series_uid`` is None (the original)."""
    from pydicom.uid import generate_uid

    dst.mkdir(parents=True, exist_ok=True)
    for k, f in enumerate(src_files):
        if keep is not None and k not in keep:
            continue
        ds = pydicom.dcmread(f)
        ds.PatientID, ds.PatientName = patient_id, NAMES[patient_id]
        ds.StudyInstanceUID, ds.StudyDate = study_uid, study_date
        ds.InstitutionName = "Hospital One"
        if series_uid is not None:
            ds.SeriesInstanceUID = series_uid
        # the source export blanked SOPInstanceUID and SOPClassUID; a contour needs them to reference a slice
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[patient_id, study_uid, str(series_uid), str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if modality:
            ds.Modality = modality
            if modality == "MR":
                ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        if description:
            ds.SeriesDescription = description
        if number is not None:
            ds.SeriesNumber = number
        ds.save_as(dst / f"IM{k:03d}.dcm")
    return sorted(dst.glob("IM*.dcm"))


def _write_rtstruct(series_dir: Path, reference: np.ndarray, path: Path):
    """RTSTRUCT by rt-utils of the ROIS classes of ``reference`` (z, y, x) on ``series_dir``."""
    from rt_utils import RTStructBuilder

    rt = RTStructBuilder.create_new(str(series_dir))
    for ts_id, (name, _) in ROIS.items():
        rt.add_roi(mask=np.transpose(reference == ts_id, (1, 2, 0)), name=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    rt.save(str(path))
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory, shared_data):
    import SimpleITK as sitk
    from pydicom.uid import generate_uid

    from esoct.bundle.dicom_seg import write_dicom_seg
    from esoct.io.volume import Volume

    src_dir = shared_data / "totalsegmentator" / "example_ct_dicom"
    source = read_dicom_series(src_dir)
    files = list(source.info.files)
    label = sitk.ReadImage(str(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz"))
    reference = sitk.GetArrayFromImage(sitk.Resample(label, source.volume.to_sitk(), sitk.Transform(),
                                                     sitk.sitkNearestNeighbor, 0))
    root = tmp_path_factory.mktemp("pacs")
    # P-A: pre CT with the original (empty) SeriesInstanceUID + RTSTRUCT, and a later post-treatment study
    ct_a = _copy_series(files, root / "DOE_JANE" / "2024" / "ct", patient_id="P-A", study_uid=generate_uid(),
                        study_date="20240110", series_uid=None)
    _write_rtstruct(ct_a[0].parent, reference, root / "DOE_JANE" / "2024" / "rt" / "RS.dcm")
    _copy_series(files, root / "DOE_JANE" / "2024-06" / "ct", patient_id="P-A", study_uid=generate_uid(),
                 study_date="20240612", series_uid=generate_uid())
    # P-B: an RTSTRUCT whose GTV is drawn on a slice that was deleted from the export
    ct_b = _copy_series(files, root / "ROE" / "ct", patient_id="P-B", study_uid=generate_uid(),
                        study_date="20240201", series_uid=generate_uid())
    _write_rtstruct(ct_b[0].parent, reference, root / "ROE" / "RS_B.dcm")
    gtv_slices = np.flatnonzero((reference == 6).any(axis=(1, 2)))
    deleted = int(gtv_slices[len(gtv_slices) // 2])
    ct_b[deleted].unlink()
    # P-C: two CT series in one study (the full one with the RTSTRUCT, a 10-slice "venous" one), an MR series
    study_c = generate_uid()
    ct_c = _copy_series(files, root / "POE" / "s1", patient_id="P-C", study_uid=study_c, study_date="20240301",
                        series_uid=generate_uid(), description="CT Body 3.0", number=2)
    _write_rtstruct(ct_c[0].parent, reference, root / "POE" / "rt.dcm")
    _copy_series(files, root / "POE" / "s2", patient_id="P-C", study_uid=study_c, study_date="20240301",
                 series_uid=generate_uid(), keep=set(range(5, 15)), description="CT venous 1.5", number=3)
    _copy_series(files, root / "POE" / "mr", patient_id="P-C", study_uid=study_c, study_date="20240301",
                 series_uid=generate_uid(), keep=set(range(6)), modality="MR", description="T2 ax", number=4)
    # P-D: a DICOM SEG (highdicom) instead of an RTSTRUCT
    ct_d = _copy_series(files, root / "LOE" / "ct", patient_id="P-D", study_uid=generate_uid(),
                        study_date="20240401", series_uid=generate_uid())
    seg_labels = np.where(reference == 52, 2, np.where(reference == 6, 1, 0)).astype(np.uint8)
    write_dicom_seg(Volume(seg_labels, source.volume.spacing, source.volume.origin, source.volume.direction),
                    ct_d, root / "LOE" / "seg" / "SEG.dcm", case_id="x", keep_phi=True)
    # files that are not DICOM, and a broken one
    (root / "README.txt").write_text("export of 2024\n")
    (root / "DOE_JANE" / "thumb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    (root / "LOE" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10")
    clinical = root.parent / "clinical.csv"
    pd.DataFrame({"patient_id": ["P-A", "P-B", "P-C", "P-D", "P-Z"], "PatientName": list(NAMES.values()) + ["X^Y"],
                  "center": ["A", "A", "B", "B", "B"], "age": [61, 70, 58, 66, 50],
                  "os_months": [12.5, 30.0, 8.0, 22.0, 5.0], "os_event": [1, 0, 1, 0, 1],
                  "dfs_months": [6.0, 30.0, 4.0, 15.0, 2.0], "dfs_event": [1, 0, 1, 1, 1]}).to_csv(clinical, index=False)
    out = root.parent / "cohort"
    report = import_dicom_tree(root, out, clinical=clinical)
    names = pseudonyms(list(NAMES))
    return {"root": root, "out": out, "report": report, "names": names, "reference": reference,
            "deleted": deleted, "clinical": clinical}


def _patient(tree, original):
    pid = tree["names"][original]
    return next(p for p in tree["report"].patients if p.patient_id == pid)


def _labels(tree, original, tp="pre"):
    from esoct.io.imageio import read_image

    return read_image(tree["out"] / "labels" / f"{tree['names'][original]}_{tp}.nii.gz").array


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_rtstruct_round_trip_dice(tree):
    labels = _labels(tree, "P-A")
    for ts_id, (name, esoct_label) in ROIS.items():
        if esoct_label is None:
            continue
        d = _dice(labels == esoct_label, tree["reference"] == ts_id)
        assert d >= 0.95, (name, d)
    assert set(np.unique(labels)) == {0, 1, 2, 4}  # the unmapped Spinal Cord left out


def test_unknown_roi_reported(tree):
    p = _patient(tree, "P-A")
    assert any("'Spinal Cord'" in s and "matches no class" in s for s in p.problems)
    assert p.timepoints["pre"]["rois"]["Spinal Cord"] == "unmapped"
    assert p.timepoints["pre"]["rois"]["LN 2R"] == "lymph node"


def test_time_points_by_study_date(tree):
    p = _patient(tree, "P-A")
    assert set(p.timepoints) == {"pre", "post"}
    assert "mask" not in p.timepoints["post"]
    assert any(s.startswith("post CT") and "no RTSTRUCT or SEG" in s for s in p.problems)
    row = pd.read_csv(tree["out"] / "manifest.csv").set_index("patient_id").loc[tree["names"]["P-A"]]
    assert row["image_post"].endswith("_post.nii.gz") and pd.isna(row["mask_post"])


def test_missing_referenced_slice_reported_and_rest_kept(tree):
    p = _patient(tree, "P-B")
    hits = [s for s in p.problems if "'GTV_primary'" in s and "not in the CT series" in s]
    assert len(hits) == 1 and "reference 1 slice(s)" in hits[0]
    assert any("missing" in s or "gap" in s or "spacing" in s for s in p.problems), p.problems
    labels = _labels(tree, "P-B")
    assert labels.shape[0] == 19
    ref = np.delete(tree["reference"], tree["deleted"], axis=0)
    assert _dice(labels == 2, ref == 52) >= 0.95  # the aorta, not on the deleted slice, is intact


def test_two_ct_series_and_mr(tree):
    p = _patient(tree, "P-C")
    assert '"CT Body 3.0"' in p.timepoints["pre"]["series"]
    assert any('"CT venous 1.5"' in s and "not chosen by the series rule most-slices" in s for s in p.skipped_series)
    assert any('"T2 ax"' in s and "modality MR" in s for s in p.skipped_series)
    assert "post" not in p.timepoints


def test_series_rule_description(tree, tmp_path):
    report = import_dicom_tree(tree["root"] / "POE", tmp_path / "c", series_rule="description:venous")
    (p,) = report.patients
    assert '"CT venous 1.5"' in p.timepoints["pre"]["series"] and p.timepoints["pre"]["slices"] == 10
    assert any("no RTSTRUCT or SEG references it" in s for s in p.problems)
    with pytest.raises(Exception, match="unknown series rule"):
        SeriesRule.parse("largest")


def test_dicom_seg_read(tree):
    labels = _labels(tree, "P-D")
    assert _dice(labels == 1, tree["reference"] == 6) >= 0.99
    assert _dice(labels == 2, tree["reference"] == 52) >= 0.99


def test_skipped_files_listed(tree):
    reasons = {s.path: s.reason for s in tree["report"].skipped_files}
    assert reasons["README.txt"] == "not a DICOM file"
    assert reasons[str(Path("DOE_JANE") / "thumb.png")] == "not a DICOM file"
    assert "unreadable" in reasons[str(Path("LOE") / "broken.dcm")] or "not a DICOM" in reasons[str(Path("LOE") / "broken.dcm")]
    text = tree["report"].to_text()
    assert "skipped file README.txt: not a DICOM file" in text


def test_manifest_clinical_and_check(tree):
    m = pd.read_csv(tree["out"] / "manifest.csv")
    assert sorted(m["patient_id"]) == sorted(tree["names"].values())
    row = m.set_index("patient_id").loc[tree["names"]["P-C"]]
    assert row["center"] == "B" and row["os_months"] == 8.0 and row["dfs_event"] == 1
    assert "PatientName" not in m.columns
    problems = tree["report"].clinical_problems
    assert any("PatientName" in c and "identifying" in c for c in problems)
    assert any("1 clinical row(s) have no DICOM patient" in c for c in problems)
    report = check_manifest(tree["out"] / "manifest.csv")
    assert not report.errors, report.to_text()


def test_nothing_identifying_outside_the_key(tree):
    secrets = [*NAMES, *NAMES.values(), "DOE_JANE", "Hospital One"]
    for f in tree["out"].rglob("*"):
        if not f.is_file() or f.name == "key.csv":
            continue
        data = f.read_bytes()
        if f.name.endswith(".gz"):
            data = gzip.decompress(data)
        for s in secrets:
            assert s.encode() not in data, (f.name, s)
    key = pd.read_csv(tree["out"] / "key.csv")
    assert dict(zip(key["original_patient_id"], key["patient_id"])) == tree["names"]


def test_roi_map_yaml(tmp_path):
    f = tmp_path / "map.yaml"
    f.write_text("tumor: ['tu*']\nnode: ['ln*']\n")
    m = RoiMap.from_yaml(f)
    assert m.classify("TU_1") == "tumour" and m.classify("LN2") == "lymph node" and m.classify("GTV") is None
    f.write_text("tumour: ['x']\nliver: ['y']\n")
    with pytest.raises(Exception, match="unknown class 'liver'"):
        RoiMap.from_yaml(f)


def test_cli_import(tree, tmp_path, capsys):
    code = main(["import", str(tree["root"] / "ROE"), "--out", str(tmp_path / "c"), "-q"])
    out = capsys.readouterr().out
    assert code == 1  # the deleted slice is a problem
    assert "1 of 1 patients imported" in out and "not in the CT series" in out
    m = pd.read_csv(tmp_path / "c" / "manifest.csv")
    assert list(m["center"]) == ["A"]  # no clinical table: one centre letter per InstitutionName
    assert pd.read_csv(tmp_path / "c" / "key.csv")["institution"].tolist() == ["Hospital One"]
    shutil.rmtree(tmp_path / "c")
