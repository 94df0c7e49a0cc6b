"""Cohort manifest: loading, path resolution and the whole-cohort check (``esoct check``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import esoct.io.manifest as manifest_module
from esoct.errors import InputError
from esoct.io import Volume, write_image
from esoct.io.manifest import (
    CheckReport,
    Problem,
    check_manifest,
    image_column_for,
    load_manifest,
    normalise_t_stage,
)

SHAPE = (8, 16, 16)  # (z, y, x)
SPACING = (2.5, 0.8, 0.8)  # (z, y, x) mm
ORIGIN = (-10.0, -20.0, 30.0)  # (x, y, z) mm

CLINICAL = {
    "age": 63,
    "sex": "M",
    "location": "middle",
    "cT": "T3",
    "pT": "T3",
    "lnm": 1,
    "os_months": 24.5,
    "os_event": 0,
}


def _image(seed: int = 0, spacing=SPACING, origin=ORIGIN) -> Volume:
    rng = np.random.default_rng(seed)
    return Volume(rng.integers(-1000, 400, SHAPE).astype(np.int16), spacing=spacing, origin=origin)


def _mask(labels=(1, 3), spacing=SPACING, origin=ORIGIN, dtype=np.uint8) -> Volume:
    array = np.zeros(SHAPE, dtype=dtype)
    for i, label in enumerate(labels):
        array[2 + i, 4:8, 4:8] = label
    return Volume(array, spacing=spacing, origin=origin)


def _patient(root: Path, pid: str, mask: Volume | None = None, **cells) -> dict:
    """Write one patient's image and mask under ``root`` and return its manifest row."""
    write_image(_image(seed=len(pid)), root / "images" / f"{pid}.nii.gz")
    write_image(mask if mask is not None else _mask(), root / "masks" / f"{pid}.nii.gz")
    row = {
        "patient_id": pid,
        "center": "A",
        "image_pre": f"images/{pid}.nii.gz",
        "mask_pre": f"masks/{pid}.nii.gz",
        **CLINICAL,
    }
    row.update(cells)
    return row


def _write_csv(root: Path, rows: list[dict], name: str = "cohort.csv") -> Path:
    path = root / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _keys(report: CheckReport) -> list[tuple]:
    """(row, patient, column, file name, severity) of every problem, in report order."""
    return [(p.row, p.patient, p.column, p.file and Path(p.file).name, p.severity) for p in report.problems]


@pytest.fixture
def clean_cohort(tmp_path) -> Path:
    root = tmp_path / "cohort"
    rows = [_patient(root, "P01"), _patient(root, "P02", sex="F", pT="T1b"), _patient(root, "P03", pT=2)]
    write_image(_image(seed=9), root / "images" / "P03_post.nii.gz")
    write_image(_mask(), root / "masks" / "P03_post.nii.gz")
    rows[2].update(image_post="images/P03_post.nii.gz", mask_post="masks/P03_post.nii.gz")
    return _write_csv(root, rows)


# -- loading --------------------------------------------------------------------------


def test_load_manifest_keeps_ids_as_text_and_extra_columns(tmp_path):
    root = tmp_path / "c"
    rows = [_patient(root, "007", extra_score=1.5), _patient(root, "010", extra_score=2.0)]
    manifest = load_manifest(_write_csv(root, rows))
    assert manifest.patients == ["007", "010"]
    assert manifest.table["extra_score"].tolist() == [1.5, 2.0]
    assert manifest.root == root.resolve()
    assert list(manifest.table.index) == [2, 3]  # spreadsheet line numbers
    assert manifest.path == (root / "cohort.csv").resolve()


def test_resolve_is_relative_to_manifest_folder_not_cwd(clean_cohort, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    manifest = load_manifest(Path("..") / "cohort" / "cohort.csv")
    root = clean_cohort.parent.resolve()
    assert manifest.resolve("P01", "image_pre") == root / "images" / "P01.nii.gz"
    assert manifest.resolve(manifest.table.iloc[2], "mask_post") == root / "masks" / "P03_post.nii.gz"
    assert manifest.resolve("P01", "image_post") is None  # empty cell
    assert check_manifest(Path("..") / "cohort" / "cohort.csv").problems == []


def test_resolve_keeps_absolute_paths_and_handles_absent_columns(tmp_path):
    root = tmp_path / "c"
    row = _patient(root, "P1")
    row["image_pre"] = str((root / "images" / "P1.nii.gz").resolve())
    manifest = load_manifest(_write_csv(tmp_path, [row]))  # manifest one folder above the images
    assert manifest.resolve("P1", "image_pre") == (root / "images" / "P1.nii.gz").resolve()
    assert manifest.resolve("P1", "mask_pre") == tmp_path.resolve() / "masks" / "P1.nii.gz"
    assert manifest.resolve("P1", "mask_pre_reader2") is None  # column not in the file
    with pytest.raises(KeyError):
        manifest.resolve("P1", "not_a_column")
    with pytest.raises(InputError, match="not in the manifest"):
        manifest.resolve("P9", "image_pre")


def test_load_manifest_missing_required_column_names_file_and_column(tmp_path):
    root = tmp_path / "c"
    row = _patient(root, "P1")
    del row["center"]
    path = _write_csv(root, [row])
    with pytest.raises(InputError) as info:
        load_manifest(path)
    assert "center" in str(info.value)
    assert info.value.path == str(path.resolve())


def test_load_manifest_rejects_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_manifest(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    "value, expected",
    [("T1", "T1"), ("T1a", "T1"), ("t1b", "T1"), ("T2", "T2"), (" T3 ", "T3"), ("T4a", "T4"), ("T4b", "T4"),
     ("1", "T1"), (4, "T4"), (3.0, "T3")],
)
def test_normalise_t_stage_accepts_common_spellings(value, expected):
    assert normalise_t_stage(value) == expected


@pytest.mark.parametrize("value", ["T5", "T0", "Tis", "TX", "", "5", "T2c", 2.5])
def test_normalise_t_stage_rejects_others(value):
    with pytest.raises(ValueError, match="unknown T stage"):
        normalise_t_stage(value)


def test_image_column_for_masks():
    assert image_column_for("mask_pre") == "image_pre"
    assert image_column_for("mask_post") == "image_post"
    assert image_column_for("mask_pre_reader2") == "image_pre"


# -- checking -----------------------------------------------------------------------------


def test_clean_cohort_has_no_problem(clean_cohort):
    report = check_manifest(clean_cohort)
    assert report.problems == []
    assert report.ok
    assert report.n_patients == 3
    assert report.to_text() == "cohort is clean: 3 patients"


def test_dirty_cohort_reports_every_problem_once(tmp_path):
    root = tmp_path / "cohort"
    rows = [
        _patient(root, "P01"),  # row 2: clean
        _patient(root, "P02", image_pre="images/P02_missing.nii.gz"),  # row 3
        _patient(root, "P01"),  # row 4: duplicate id (same files, read once)
        _patient(root, "P04", os_months=-3),  # row 5
        _patient(root, "P05", os_event=2),  # row 6
        _patient(root, "P06", mask=_mask(spacing=(2.5, 0.8, 1.0))),  # row 7: x spacing differs
        _patient(root, "P07", mask=_mask(origin=(-10.0, -20.0, 35.0))),  # row 8: z origin differs
        _patient(root, "P08", mask=_mask(labels=())),  # row 9: empty mask
        _patient(root, "P09", pT="T5"),  # row 10
        _patient(root, "P10", lnm="yes"),  # row 11
    ]
    report = check_manifest(_write_csv(root, rows))

    assert _keys(report) == [
        (3, "P02", "image_pre", "P02_missing.nii.gz", "error"),
        (4, "P01", "patient_id", None, "error"),
        (5, "P04", "os_months", None, "error"),
        (6, "P05", "os_event", None, "error"),
        (7, "P06", "mask_pre", "P06.nii.gz", "error"),
        (8, "P07", "mask_pre", "P07.nii.gz", "error"),
        (9, "P08", "mask_pre", "P08.nii.gz", "error"),
        (10, "P09", "pT", None, "error"),
        (11, "P10", "lnm", None, "error"),
    ]
    assert not report.ok
    assert report.n_patients == 10
    messages = {p.row: p.message for p in report.problems}
    root_abs = root.resolve()
    assert "'images/P02_missing.nii.gz'" in messages[3] and str(root_abs / "images" / "P02_missing.nii.gz") in messages[3]
    assert report.problems[0].file == str(root_abs / "images" / "P02_missing.nii.gz")
    assert "duplicate" in messages[4] and "row 2" in messages[4]
    assert "-3" in messages[5]
    assert "0 or 1" in messages[6] and "2" in messages[6]
    assert "spacing (x, y, z) (1, 0.8, 2.5) vs (0.8, 0.8, 2.5) mm" in messages[7] and "size" not in messages[7]
    assert "origin (-10, -20, 35) vs (-10, -20, 30) mm" in messages[8] and "spacing" not in messages[8]
    assert "empty" in messages[9]
    assert "T5" in messages[10]
    assert "'yes'" in messages[11]

    text = report.to_text().splitlines()
    assert len(text) == 10
    for line, problem in zip(text, report.problems):
        assert line.startswith(f"error: row {problem.row}, patient {problem.patient}, {problem.column}: ")
        assert problem.message in line
    assert text[-1] == "9 problems in 9 patients (9 errors, 0 warnings)"


def test_report_to_dict_is_json(tmp_path):
    root = tmp_path / "c"
    path = _write_csv(root, [_patient(root, "P1", os_event=2), _patient(root, "P2")])
    data = json.loads(json.dumps(check_manifest(path).to_dict()))
    assert data["ok"] is False and data["n_patients"] == 2 and data["n_errors"] == 1
    assert data["problems"] == [
        {"row": 2, "patient": "P1", "column": "os_event", "file": None,
         "message": "os_event must be 0 or 1, got 2", "severity": "error"}
    ]


def test_each_file_is_read_once(tmp_path, monkeypatch):
    root = tmp_path / "c"
    rows = [_patient(root, "P1"), _patient(root, "P2")]
    rows[1]["image_pre"] = rows[0]["image_pre"]  # two patients share one scan
    rows[1]["mask_pre_reader2"] = rows[0]["mask_pre"]
    calls = []
    real = manifest_module.read_image
    monkeypatch.setattr(manifest_module, "read_image", lambda p, **kw: calls.append(Path(p).name) or real(p, **kw))
    report = check_manifest(_write_csv(root, rows))
    assert report.problems == []
    assert sorted(calls) == ["P1.nii.gz", "P1.nii.gz", "P2.nii.gz"]  # images/P1, masks/P1, masks/P2
    calls.clear()
    assert check_manifest(_write_csv(root, rows), check_images=False).problems == []
    assert calls == []


def test_missing_required_column_is_reported_and_rows_still_checked(tmp_path):
    root = tmp_path / "c"
    rows = [_patient(root, "P1", age=130), _patient(root, "P2")]
    for row in rows:
        del row["mask_pre"]
    report = check_manifest(_write_csv(root, rows))
    assert _keys(report) == [(None, None, "mask_pre", "cohort.csv", "error"), (2, "P1", "age", None, "error")]
    assert "mask_pre" in report.problems[0].message and "missing" in report.problems[0].message
    assert report.to_text().splitlines()[0].startswith("error: manifest, mask_pre: required column")


def test_clinical_values_and_empty_cells(tmp_path):
    root = tmp_path / "c"
    rows = [
        _patient(root, "P1", age="sixty", sex="male", location="cervical", cT="T1a"),  # row 2
        _patient(root, "P2", center="", os_months=None, lnm=None, pT=None),  # row 3
        _patient(root, "P3", patient_id="", age=-1, sex="f", location="Lower"),  # row 4
        _patient(root, "P4", os_months="12 months", cT="cT3"),  # row 5
    ]
    report = check_manifest(_write_csv(root, rows))
    assert [(p.row, p.column) for p in report.problems] == [
        (2, "age"), (2, "sex"), (2, "location"),
        (3, "center"), (3, "os_months"),
        (4, "patient_id"), (4, "age"),
        (5, "cT"), (5, "os_months"),
    ]
    messages = [p.message for p in report.problems]
    assert "'sixty'" in messages[0] and "M/F" in messages[1] and "upper/middle/lower" in messages[2]
    assert "survival needs both" in messages[4]
    assert report.problems[5].patient is None
    assert report.to_text().splitlines()[-1] == "9 problems in 4 patients (9 errors, 0 warnings)"


def test_mask_label_problems_and_warnings(tmp_path):
    root = tmp_path / "c"
    float_mask = _mask(dtype=np.float32).with_array(_mask(dtype=np.float32).array * 0.5)
    negative = _mask(labels=(1, -1), dtype=np.int16)
    rows = [
        _patient(root, "P1", mask=float_mask),  # row 2: values 0.5, 1.5
        _patient(root, "P2", mask=negative),  # row 3
        _patient(root, "P3", mask=_mask(labels=(3, 4))),  # row 4: no tumour -> warning
        _patient(root, "P4", image_post="images/P4.nii.gz"),  # row 5: no mask_post -> warning
        _patient(root, "P5", mask_post="masks/P5.nii.gz"),  # row 6: mask without image
    ]
    report = check_manifest(_write_csv(root, rows))
    assert [(p.row, p.column, p.severity) for p in report.problems] == [
        (2, "mask_pre", "error"),
        (2, "mask_pre", "warning"),  # labels 0.5, 1.5: no label 1 either
        (3, "mask_pre", "error"),
        (4, "mask_pre", "warning"),
        (5, "mask_post", "warning"),
        (6, "mask_post", "error"),
    ]
    messages = [p.message for p in report.problems]
    assert "not integers" in messages[0]
    assert "labels present: 0.5, 1.5" in messages[1]
    assert "negative" in messages[2]
    assert "labels present: 3, 4" in messages[3]
    assert "image_post is given but mask_post is empty" == messages[4]
    assert "mask_post is given but image_post is empty" == messages[5]
    assert not report.ok


def test_warnings_alone_leave_cohort_ok(tmp_path):
    root = tmp_path / "c"
    report = check_manifest(_write_csv(root, [_patient(root, "P1", mask=_mask(labels=(4,)))]))
    assert report.ok
    assert [p.severity for p in report.problems] == ["warning"]
    assert report.to_text().splitlines()[-1] == "1 problem in 1 patient (0 errors, 1 warning)"


def test_unreadable_image_is_reported(tmp_path):
    root = tmp_path / "c"
    row = _patient(root, "P1")
    (root / "images" / "P1.nii.gz").write_bytes(b"not a nifti file at all")
    report = check_manifest(_write_csv(root, [row]))
    assert _keys(report) == [(2, "P1", "image_pre", "P1.nii.gz", "error")]
    assert report.problems[0].message.startswith("cannot read 'images/P1.nii.gz': ")


def test_row_numbers_count_blank_lines(tmp_path):
    root = tmp_path / "c"
    path = _write_csv(root, [_patient(root, "P1"), _patient(root, "P2", os_event=3)])
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1], "", lines[2]]) + "\n")  # P2 is now on line 4
    report = check_manifest(path)
    assert [(p.row, p.patient) for p in report.problems] == [(4, "P2")]
    assert load_manifest(path).patients == ["P1", "P2"]


def test_spreadsheet_bom_and_spaces_after_commas(tmp_path):
    root = tmp_path / "c"
    _patient(root, "P1")
    path = root / "cohort.csv"
    path.write_text(
        "\ufeffpatient_id, center, image_pre, mask_pre, os_event\n 012, A, images/P1.nii.gz, masks/P1.nii.gz, 1\n",
        encoding="utf-8",
    )
    manifest = load_manifest(path)
    assert manifest.patients == ["012"]
    assert manifest.resolve("012", "mask_pre") == root.resolve() / "masks" / "P1.nii.gz"
    report = check_manifest(path)
    assert [(p.column, p.message) for p in report.problems] == [
        ("os_months", "os_months is empty but os_event is given: survival needs both")
    ]


def test_progress_bar(clean_cohort, capsys):
    assert check_manifest(clean_cohort, progress=True).ok
    assert "3/3" in capsys.readouterr().err


def test_problem_text_without_patient():
    problem = Problem(row=5, patient=None, column="patient_id", file=None, message="patient_id is empty")
    assert problem.to_text() == "error: row 5, patient_id: patient_id is empty"


# -- real data -----------------------------------------------------------------------------


def _real_cohort(tmp_path: Path, data: Path, image: str, mask: str) -> Path:
    row = {"patient_id": "L1", "center": "pyradiomics", "image_pre": str(data / image), "mask_pre": str(data / mask)}
    return _write_csv(tmp_path, [row])


def test_real_lung_pair_is_clean(tmp_path, shared_data):
    data = shared_data / "pyradiomics"
    report = check_manifest(_real_cohort(tmp_path, data, "lung1_image.nrrd", "lung1_label.nrrd"))
    assert report.problems == []
    assert report.to_text() == "cohort is clean: 1 patient"


def test_real_mismatched_lung_label_is_a_geometry_error(tmp_path, shared_data):
    data = shared_data / "pyradiomics"
    report = check_manifest(_real_cohort(tmp_path, data, "lung1_image.nrrd", "lung2_label.nrrd"))
    assert _keys(report) == [(2, "L1", "mask_pre", "lung2_label.nrrd", "error")]
    message = report.problems[0].message
    assert "size (x, y, z) (512, 512, 61) vs (512, 512, 48)" in message
    assert "spacing" in message and "origin" in message  # lung2 also has another pixel size and position


def test_every_endpoint_pair_is_checked(tmp_path):
    """dfs_months / dfs_event (and any <name>_months / <name>_event) are checked like os_*."""
    root = tmp_path
    rows = [_patient(root, "P1", dfs_months=-3, dfs_event=1), _patient(root, "P2", dfs_months=5, dfs_event="")]
    report = check_manifest(_write_csv(root, rows))
    problems = [(p.row, p.column, p.message) for p in report.problems]
    assert any(r == 2 and c == "dfs_months" and m.startswith("dfs_months must be a time >= 0 in months, got")
               for r, c, m in problems), problems
    assert (3, "dfs_event", "dfs_event is empty but dfs_months is given: survival needs both") in problems
