"""The esoct command line: help everywhere, exit codes, clear errors, cohort runs that survive bad patients."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from esoct.cli import build_parser, main
from esoct.io.imageio import read_image, write_image

COMMANDS = ("info", "check", "phantom", "roi", "demo")


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_cohort")
    assert main(["phantom", "--patients", "4", "--seed", "7", "--out", str(out), "--workers", "1", "-q"]) == 0
    return out


def test_help_for_every_subcommand(capsys):
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([cmd, "--help"])
        assert exc.value.code == 0
        assert f"usage: esoct {cmd}" in capsys.readouterr().out


def test_console_script_runs():
    exe = shutil.which("esoct", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "the esoct console script is installed in the venv"
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "phantom" in res.stdout and "check" in res.stdout


def test_import_esoct_stays_light():
    code = "import sys, esoct; bad = [m for m in ('torch', 'monai', 'radiomics') if m in sys.modules]; print(bad)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_phantom_then_check_is_clean(small_cohort, capsys):
    assert (small_cohort / "truth.json").is_file()
    assert main(["check", str(small_cohort / "manifest.csv"), "-q"]) == 0
    assert "clean" in capsys.readouterr().out


def test_check_reports_every_problem_and_exits_1(small_cohort, tmp_path, capsys):
    table = pd.read_csv(small_cohort / "manifest.csv", dtype={"patient_id": str})
    for col in ("image_pre", "mask_pre", "image_post", "mask_post", "mask_pre_reader2"):
        table[col] = [str(small_cohort / p) for p in table[col]]
    table.loc[0, "os_months"] = -3
    table.loc[1, "image_pre"] = str(tmp_path / "missing.nii.gz")
    table.loc[2, "patient_id"] = table.loc[3, "patient_id"]
    table.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["check", str(tmp_path / "bad.csv"), "--json", "-q"]) == 1
    report = json.loads(capsys.readouterr().out)
    text = json.dumps(report)
    assert "missing.nii.gz" in text and "os_months" in text and "EP0004" in text


def test_info_json_without_patient_fields(small_cohort, capsys):
    assert main(["info", str(small_cohort / "images" / "EP0001_pre.nii.gz"), "--json"]) == 0
    desc = json.loads(capsys.readouterr().out)
    text = json.dumps(desc).lower()
    assert "patientname" not in text and "birth" not in text
    image = read_image(small_cohort / "images" / "EP0001_pre.nii.gz")
    assert list(desc["size"]) == list(image.size_xyz)


def test_info_on_missing_file_names_it_and_exits_2(tmp_path, capsys):
    missing = tmp_path / "nope.nii.gz"
    assert main(["info", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "nope.nii.gz" in err and "does not exist" in err


def test_info_on_folder_without_ct_exits_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a scan")
    assert main(["info", str(tmp_path)]) == 2
    assert "no CT series" in capsys.readouterr().err


def test_roi_cohort_survives_bad_patients_and_resumes(small_cohort, tmp_path, capsys):
    table = pd.read_csv(small_cohort / "manifest.csv", dtype={"patient_id": str})
    for col in ("image_pre", "mask_pre", "image_post", "mask_post", "mask_pre_reader2"):
        table[col] = [str(small_cohort / p) for p in table[col]]
    empty = read_image(table.loc[1, "mask_pre"])
    write_image(empty.with_array(np.zeros_like(empty.array)), tmp_path / "empty_mask.nii.gz")
    table.loc[1, "mask_pre"] = str(tmp_path / "empty_mask.nii.gz")
    table.loc[2, "image_pre"] = str(tmp_path / "gone.nii.gz")
    table.to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "roi"
    assert main(["roi", str(tmp_path / "m.csv"), "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert "EP0002" in err and "empty_mask.nii.gz" in err
    assert "EP0003" in err and "gone.nii.gz" in err
    failures = pd.read_csv(out / "failures.csv")
    assert sorted(failures["patient_id"]) == ["EP0002", "EP0003"]
    summary = pd.read_csv(out / "roi_summary.csv", dtype={"patient_id": str})
    assert sorted(summary["patient_id"]) == ["EP0001", "EP0004"]
    seq = np.load(out / "EP0001_pre_slices.npz")
    assert seq["images"].shape[1:] == (224, 224) and 0.0 <= seq["images"].min() and seq["images"].max() <= 1.0
    box = read_image(out / "EP0001_pre_krt_image.nii.gz")
    assert box.shape == (128, 64, 64) and box.spacing == pytest.approx((1.0, 1.0, 1.0))
    # a second run resumes: finished patients are skipped, failed ones retried (and fail again)
    assert main(["roi", str(tmp_path / "m.csv"), "--out", str(out), "-q"]) == 1
    assert "2 already done" in capsys.readouterr().out


def test_demo_refuses_a_cohort_too_small_for_its_folds(tmp_path, capsys):
    # the demo's study has 3 folds per task: 6 patients cannot give every T stage and LNM class a patient per fold
    assert main(["demo", "--out", str(tmp_path / "d"), "--patients", "6", "--seed", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert "folds need at least 3 patients" in err and "study.yaml" in err
    assert (tmp_path / "d" / "cohort" / "manifest.csv").is_file()  # what was made is kept
