"""Issue 17.2: ROI and KRT crop caches are keyed by their inputs, so a manifest edit is extracted again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from esoct.io.imageio import read_image, write_image
from esoct.io.manifest import load_manifest
from esoct.study.roi_extraction import extract_cohort_rois
from esoct.study.tstage4 import krt_inputs


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from esoct.phantom.cohort import generate_cohort

    root = tmp_path_factory.mktemp("cache_keys")
    generate_cohort(root / "cohort", 3, seed=5, workers=1, progress=False)
    return root / "cohort" / "manifest.csv"


def _edit_mask(manifest_csv, out_csv, pid):
    """A copy of the manifest whose ``pid`` mask has the upper half of its tumour relabelled esophagus."""
    table = pd.read_csv(manifest_csv, dtype={"patient_id": str})
    manifest = load_manifest(manifest_csv)
    mask = read_image(manifest.resolve(pid, "mask_pre"))
    arr = mask.array.copy()
    z = np.nonzero((arr == 1).any(axis=(1, 2)))[0]
    upper = arr[: z[len(z) // 2]]
    upper[upper == 1] = 3
    edited = out_csv.parent / f"{pid}_mask_edited.nii.gz"
    write_image(mask.with_array(arr), edited)
    for column in ("image_pre", "mask_pre"):  # the copy lives elsewhere: absolute paths
        table[column] = [str(manifest.resolve(p, column)) for p in table["patient_id"]]
    table.loc[table["patient_id"] == pid, "mask_pre"] = str(edited)
    table.to_csv(out_csv, index=False)
    return out_csv


def test_roi_files_follow_a_manifest_edit(cohort, tmp_path):
    out = tmp_path / "rois"
    first = extract_cohort_rois(cohort, out, kinds=("slices",), progress=False)
    pid, other = sorted(first.results)[:2]
    before = np.load(out / f"{pid}_pre_slices.npz")["masks"]
    assert extract_cohort_rois(cohort, out, kinds=("slices",), progress=False).skipped == sorted(first.results)
    edited = _edit_mask(cohort, tmp_path / "edited.csv", pid)
    again = extract_cohort_rois(edited, out, kinds=("slices",), progress=False)
    assert list(again.results) == [pid] and other in again.skipped  # only the edited patient is cut again
    after = np.load(out / f"{pid}_pre_slices.npz")["masks"]
    assert (after == 1).sum() < (before == 1).sum()  # the crop now shows the edited mask


def test_krt_crops_follow_a_manifest_edit(cohort, tmp_path):
    manifest = load_manifest(cohort)
    crops, failures = krt_inputs(manifest, tmp_path / "krt", (16, 16, 16), (4.0, 2.0, 2.0), progress=False)
    assert not failures
    pid, other = sorted(crops)[:2]
    stamp = (tmp_path / "krt" / f"{other}.npz").stat().st_mtime_ns
    edited = load_manifest(_edit_mask(cohort, tmp_path / "edited.csv", pid))
    again, _ = krt_inputs(edited, tmp_path / "krt", (16, 16, 16), (4.0, 2.0, 2.0), progress=False)
    assert (again[pid][1] == 1).sum() < (crops[pid][1] == 1).sum()
    np.testing.assert_array_equal(again[other][0], crops[other][0])
    assert (tmp_path / "krt" / f"{other}.npz").stat().st_mtime_ns == stamp  # the unchanged patient was reused
