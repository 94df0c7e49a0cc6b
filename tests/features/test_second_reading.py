"""Second segmentation per patient for the ICC filter: reader 2 where given, reproducible perturbations otherwise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("radiomics")
pytest.importorskip("pyarrow")

from esoct.features.cohort import extract_cohort  # noqa: E402
from esoct.features.second_reading import extract_second_reading, reader_tables  # noqa: E402
from esoct.io.imageio import read_image  # noqa: E402
from esoct.select.icc import ICCFilter, icc, perturbed_masks  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

PARAMS = {
    "setting": {"binWidth": 25, "label": 1},
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": None, "shape": None},
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from esoct.phantom.cohort import generate_cohort

    root = tmp_path_factory.mktemp("phantom_icc")
    generate_cohort(root, 6, seed=5, workers=1, progress=False)
    manifest = pd.read_csv(root / "manifest.csv")
    manifest.loc[manifest.index[3:], "mask_pre_reader2"] = ""  # half the cohort has no second reader
    manifest.to_csv(root / "manifest_half.csv", index=False)
    return root


@pytest.fixture(scope="module")
def readings(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("icc")
    first = extract_cohort(cohort / "manifest_half.csv", out / "r1.parquet", params=PARAMS, timepoints=("pre",),
                           workers=1, progress=False)
    second = extract_second_reading(cohort / "manifest_half.csv", out / "r2.parquet", params=PARAMS, seed=3,
                                    workers=1, progress=False)
    return first, second, out


def test_sources_and_perturbed_masks_are_the_documented_ones(cohort, readings):
    _, second, _ = readings
    src = second.sources.set_index("patient_id")
    manifest = pd.read_csv(cohort / "manifest_half.csv")
    ids = manifest["patient_id"].astype(str).tolist()
    assert src.loc[ids[:3], "source"].tolist() == ["reader2"] * 3
    assert src.loc[ids[3:], "source"].tolist() == ["perturbed"] * 3
    for pid in ids[3:]:
        first = read_image(cohort / manifest.set_index("patient_id").loc[pid, "mask_pre"])
        written = read_image(src.loc[pid, "mask"])
        from esoct.features.second_reading import patient_seed

        (expected,) = perturbed_masks(first.array == 1, patient_seed(3, pid), n=1, kinds=("contour",), flip_fraction=0.25)
        np.testing.assert_array_equal(written.array == 1, expected)
        assert written.same_geometry(first)
        ref = first.array == 1
        dice = 2 * np.sum(expected & ref) / (expected.sum() + ref.sum())
        assert 0.5 < dice < 1.0  # a plausible second outline: close to, not equal to, the first


def test_second_reading_is_reproducible_and_features_differ_a_little(readings, tmp_path, cohort):
    first, second, _ = readings
    again = extract_second_reading(cohort / "manifest_half.csv", tmp_path / "r2.parquet", params=PARAMS, seed=3,
                                   workers=1, progress=False)
    pd.testing.assert_frame_equal(again.features.table, second.features.table)
    r1, r2 = reader_tables(first.table, second.features.table)
    assert list(r2.index) == list(r1.index) and len(r1) == 6
    vol1, vol2 = r1["original_shape_MeshVolume"], r2["original_shape_MeshVolume"]
    assert np.all(np.abs(vol2 / vol1 - 1) < 1.2) and not np.allclose(vol1, vol2)


def test_icc_filter_on_the_two_readings(readings):
    first, second, _ = readings
    r1, r2 = reader_tables(first.table, second.features.table)
    r1 = r1.dropna(axis=1)
    r2 = r2[r1.columns]
    selector = ICCFilter(threshold=0.8, kind="ICC(2,1)", reader2=r2).fit(r1)
    expected = icc(r1, r2, kind="ICC(2,1)")
    np.testing.assert_allclose(selector.scores_, np.asarray(expected, dtype=float), rtol=1e-12)
    assert selector.n_patients_icc_ == 6
    kept = set(selector.get_feature_names_out())
    assert "original_shape_MeshVolume" in kept  # volume is reproducible across one-voxel outlines
    assert len(kept) < r1.shape[1]  # and some first-order features are not
