"""The longitudinal survival study end to end on a small phantom cohort (centre split)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("radiomics")
pytest.importorskip("sksurv")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::RuntimeWarning")

PARAMS = {
    "setting": {"binWidth": 25, "label": 1},
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": None, "shape": None},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from esoct.phantom.cohort import generate_cohort
    from esoct.study.survival import run_survival_study

    root = tmp_path_factory.mktemp("surv_phantom")
    generate_cohort(root, 36, seed=11, workers=1, progress=False)
    manifest = pd.read_csv(root / "manifest.csv")
    test_center = manifest["center"].value_counts().index[-1]
    out = tmp_path_factory.mktemp("surv_study")
    result = run_survival_study(root / "manifest.csv", out, test_centers=test_center, params=PARAMS,
                                n_estimators=25, n_bootstrap=60, cv=3, seed=0, workers=1, progress=False)
    return result, manifest, test_center, root / "manifest.csv"


def test_table2_has_every_available_model_on_both_cohorts(study):
    result, manifest, test_center, _ = study
    t2 = result.table2
    assert set(t2["cohort"]) == {"train", "test"}
    models = list(dict.fromkeys(t2["model"]))
    assert models[0] == "Clinical" and "DL_Pre" not in models  # no deep-feature table given
    assert any("DL_Pre skipped" in n for n in result.notes)
    n_test = int((manifest["center"] == test_center).sum())
    test_rows = t2[t2["cohort"] == "test"]
    assert (test_rows["n"] <= n_test).all() and (test_rows["n"] >= n_test - 2).all()
    assert ((t2["c_index_lower"] <= t2["c_index"]) & (t2["c_index"] <= t2["c_index_upper"])).all()
    assert t2.loc[t2["model"] == "Clinical", "c_index_p"].isna().all()


def test_clinical_volume_reduction_rate_is_from_the_masks(study):
    result, manifest, _, _ = study
    feats = result.features
    vrr = feats["volume_reduction_rate"]
    assert vrr.between(-1.0, 1.0).all() and vrr.std() > 0.05
    radiomics = pd.read_parquet(result.out_dir / "features" / "radiomics.parquet")
    pid = feats.index[0]
    v = radiomics.set_index(["patient_id", "timepoint"])["original_shape_VoxelVolume"]
    assert vrr.loc[pid] == pytest.approx((v[(pid, "pre")] - v[(pid, "post")]) / v[(pid, "pre")], rel=1e-12)


def test_selection_is_nested_and_fitted_on_training_patients(study):
    result, _, _, _ = study
    steps = result.selection_steps.set_index("step")["n_features"]
    assert list(steps.index) == ["usable", "icc", "correlation", "univariate_cox", "lasso_cox"]
    assert (np.diff(steps.to_numpy()) <= 0).all()
    assert steps["usable"] > 10
    assert all(c.startswith("delta_") for c in result.selected)


def test_outputs_are_written(study):
    result, _, _, _ = study
    res = result.out_dir / "results" / "survival"
    for name in ("table2.csv", "selection.csv", "km_test.csv", "adjusted_cox.csv", "metrics.json",
                 "figures/km_test.png", "figures/td_cindex_test.png"):
        assert (res / name).is_file(), name
    doc = json.loads((res / "metrics.json").read_text())
    assert 0 <= doc["logrank_p_test"] <= 1 and doc["n_test"] + doc["n_train"] <= 36
    assert result.km.groups == ["low", "high"]
    assert any("risk_group" in str(i) for i in result.adjusted.index)


def test_deep_feature_presets_use_networks_fitted_on_the_training_centres(study, tmp_path):
    pytest.importorskip("torch")
    from esoct.features.deep import DeepFeatureExtractor
    from esoct.study.survival import run_survival_study

    first, manifest, test_center, path = study
    out = tmp_path / "deep_study"
    # reuse the radiomics cache of the first run: only the deep features are new work
    (out / "features").mkdir(parents=True)
    import shutil

    shutil.copytree(first.out_dir / "features" / "cache", out / "features" / "cache")
    deep = DeepFeatureExtractor(head="cox", width=0.125, epochs=1, batch_size=8, n_components=3, seed=0)
    result = run_survival_study(path, out, test_centers=test_center, params=PARAMS, deep=deep,
                                slab_settings={"size": 32}, n_estimators=25, n_bootstrap=60, cv=3, seed=0,
                                workers=1, progress=False)
    models = list(dict.fromkeys(result.table2["model"]))
    assert {"DL_Pre", "DL_Post", "DL_Longitudinal"} <= set(models)
    dl = [c for c in result.features.columns if c.startswith(("dl_pre_", "dl_post_"))]
    assert sorted(dl) == sorted([f"dl_{tp}_pca_{k}" for tp in ("pre", "post") for k in (1, 2, 3)])
    deep_table = pd.read_parquet(out / "features" / "deep.parquet")
    assert len(deep_table) == len(manifest)
    cols = ["center", "age", "stage", "volume_reduction_rate", "os_months", "os_event"]
    pd.testing.assert_frame_equal(result.features[cols], first.features[cols])
    pd.testing.assert_frame_equal(result.table2[result.table2["model"] == "Clinical"].reset_index(drop=True),
                                  first.table2[first.table2["model"] == "Clinical"].reset_index(drop=True))


def test_unknown_test_centre_is_refused_before_any_work(tmp_path, study):
    from esoct.errors import InputError
    from esoct.study.survival import run_survival_study

    with pytest.raises(InputError, match="not in the manifest"):
        run_survival_study(study[3], tmp_path, test_centers="Mars", params=PARAMS, workers=1, progress=False)
    assert not (tmp_path / "features" / "radiomics.parquet").exists()


def test_disease_free_survival_endpoint(study, tmp_path):
    """endpoint='dfs' models dfs_months/dfs_event, not OS: the clinical C-index changes, the outputs say DFS."""
    import shutil

    from esoct.study.survival import fit_single_scan_model, run_survival_study

    first, manifest, test_center, path = study
    m = manifest.copy()
    rng = np.random.default_rng(0)
    m["dfs_months"] = np.round(m["os_months"] * rng.uniform(0.2, 1.0, len(m)), 1)
    m["dfs_event"] = np.where(m["os_event"] == 1, 1, rng.integers(0, 2, len(m)))
    dfs_path = path.parent / "manifest_dfs.csv"
    m.to_csv(dfs_path, index=False)
    out = tmp_path / "dfs_study"
    (out / "features").mkdir(parents=True)
    shutil.copytree(first.out_dir / "features" / "cache", out / "features" / "cache")
    result = run_survival_study(dfs_path, out, test_centers=test_center, params=PARAMS, n_estimators=25,
                                n_bootstrap=60, cv=3, seed=0, workers=1, progress=False, endpoint="dfs")
    assert {"dfs_months", "dfs_event"} <= set(result.features.columns) and "os_months" not in result.features
    dfs = m.set_index("patient_id").loc[result.features.index, "dfs_months"]
    np.testing.assert_allclose(result.features["dfs_months"].to_numpy(), dfs.to_numpy())
    doc = json.loads((out / "results" / "survival" / "metrics.json").read_text())
    assert doc["endpoint"] == "dfs" and doc["endpoint_title"] == "disease-free survival (DFS)"
    clin = lambda r: r.table2[(r.table2["model"] == "Clinical") & (r.table2["cohort"] == "train")]["c_index"].item()  # noqa: E731
    assert clin(result) != pytest.approx(clin(first), abs=1e-9)
    radiomics = pd.read_parquet(out / "features" / "radiomics.parquet")
    fit_single_scan_model(radiomics, dfs_path, out, test_centers=[test_center], params=PARAMS, endpoint="dfs")
    from esoct.io.model_store import load_model

    model = load_model(out / "models" / "survival" / "model.skops")
    assert model["endpoint"] == "dfs" and model["description"].startswith("disease-free survival (DFS) risk")
