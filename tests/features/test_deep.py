"""Deep features: Cox loss against references, training inside the fold, PCA, weights, slabs of a phantom cohort."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from esoct.errors import InputError  # noqa: E402
from esoct.features.deep import (  # noqa: E402
    DeepFeatureExtractor,
    build_slab_dataset,
    cox_ph_loss,
    cross_fitted_deep_features,
    longitudinal_deep_features,
    manifest_targets,
)

TINY = {"width": 0.125, "batch_size": 8, "lr": 3e-3, "num_threads": 1}  # one thread: fastest on a busy machine


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny networks run fastest on one thread when the cores are shared; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blob_slabs(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise slabs (N, 7, size, size); odd rows carry a bright Gaussian blob (label 1) at a random place."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 7, size, size)).astype(np.float32)
    y = np.arange(n) % 2
    yy, xx = np.mgrid[:size, :size]
    for i in np.flatnonzero(y):
        cy, cx = rng.uniform(8, size - 8, 2)
        x[i] += 3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
    return x, y


def _surv(event, time) -> np.ndarray:
    y = np.empty(len(event), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    return y


# -- Cox loss ------------------------------------------------------------------------------
def test_cox_loss_equals_hand_value_with_breslow_ties():
    eta = torch.tensor([0.0, np.log(2.0), 0.0])
    time = torch.tensor([1.0, 2.0, 2.0])
    # events at t=1 (risk set all: 1+2+1) and t=2 (risk set {2, 3}: 2+1); the third is censored
    # log L = (0 - log 4) + (log 2 - log 3) = -log 6, averaged over 2 events
    assert float(cox_ph_loss(eta, torch.tensor([1, 1, 0]), time)) == pytest.approx(np.log(6) / 2, rel=1e-12)
    # tied events at t=2 share the full risk set (Breslow): log L = -log 4 + log 2 - log 3 - log 3
    assert float(cox_ph_loss(eta, torch.tensor([1, 1, 1]), time)) == pytest.approx(np.log(18) / 3, rel=1e-12)
    # no event: zero, still differentiable
    risk = torch.zeros(3, requires_grad=True)
    loss = cox_ph_loss(risk, torch.zeros(3), time)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(risk.grad, torch.zeros(3))


def test_cox_loss_equals_statsmodels_breslow_and_lifelines():
    from lifelines import CoxPHFitter
    from statsmodels.duration.hazard_regression import PHReg

    rng = np.random.default_rng(0)
    n = 12
    x = rng.normal(size=n)
    event = (rng.random(n) < 0.7).astype(int)
    tied = np.round(rng.exponential(5, n))  # many ties
    assert len(np.unique(tied)) < n
    loglik = PHReg(tied, x[:, None], status=event, ties="breslow").loglike(np.array([0.7]))
    ours = -float(cox_ph_loss(torch.tensor(0.7 * x), torch.tensor(event), torch.tensor(tied))) * event.sum()
    assert ours == pytest.approx(loglik, rel=1e-10)
    # lifelines (Efron ties) at its maximum likelihood estimate, on untied times (Efron = Breslow)
    untied = rng.permutation(np.arange(1.0, n + 1))
    cph = CoxPHFitter().fit(pd.DataFrame({"x": x, "T": untied, "E": event}), "T", "E")
    ours = -float(cox_ph_loss(torch.tensor(cph.params_["x"] * x), torch.tensor(event), torch.tensor(untied)))
    assert ours * event.sum() == pytest.approx(cph.log_likelihood_, rel=1e-9)


# -- the estimator -------------------------------------------------------------------------
def test_shapes_names_and_pandas_output():
    x, y = _blob_slabs(14, size=32)
    ext = DeepFeatureExtractor(head="classification", epochs=1, n_components=10, prefix="dl_pre_pca_", **TINY).fit(x, y)
    out = ext.transform(x[:5])
    assert out.shape == (5, 10)
    assert list(ext.get_feature_names_out()) == [f"dl_pre_pca_{i}" for i in range(1, 11)]
    assert ext.backbone_features(x[:3]).shape == (3, 64) and ext.n_deep_features_ == 64
    assert ext.input_shape_ == (7, 32, 32) and list(ext.classes_) == [0, 1] and len(ext.history_) == 1
    frame = ext.set_output(transform="pandas").transform(x[:2])
    assert list(frame.columns) == list(ext.get_feature_names_out())
    raw = DeepFeatureExtractor(head="classification", epochs=0, n_components=None, **TINY).fit(x, y)
    assert raw.transform(x).shape == (14, 64) and raw.get_feature_names_out()[-1] == "dl_pca_64"
    with pytest.raises(InputError, match=r"trained on \(7, 32, 32\)"):
        ext.transform(x[:, :, :16, :16])


def test_same_seed_gives_identical_features():
    x, y = _blob_slabs(12, size=32)
    a = DeepFeatureExtractor(head="classification", epochs=2, n_components=5, seed=3, **TINY).fit(x, y)
    b = DeepFeatureExtractor(head="classification", epochs=2, n_components=5, seed=3, **TINY).fit(x, y)
    c = DeepFeatureExtractor(head="classification", epochs=2, n_components=5, seed=4, **TINY).fit(x, y)
    assert np.array_equal(a.transform(x), b.transform(x))
    assert a.history_ == b.history_
    assert not np.allclose(a.backbone_features(x), c.backbone_features(x))
    # the caller's global torch random state is left alone
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    DeepFeatureExtractor(head="classification", epochs=1, n_components=2, **TINY).fit(x, y)
    assert torch.equal(torch.rand(3), expected)


def test_pca_is_fitted_on_the_training_slabs_only():
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x, y = _blob_slabs(22, size=32, seed=1)
    train, test = np.arange(16), np.arange(16, 22)
    ext = DeepFeatureExtractor(head="classification", epochs=1, n_components=10, **TINY).fit(x[train], y[train])
    f_train, f_test = ext.backbone_features(x[train]), ext.backbone_features(x[test])
    scaler = StandardScaler().fit(f_train)
    expected = PCA(10, svd_solver="full").fit(scaler.transform(f_train)).transform(scaler.transform(f_test))
    np.testing.assert_allclose(ext.transform(x[test]), expected, rtol=1e-6, atol=1e-8)
    # a PCA that had seen the test rows would give other numbers
    f_all = np.vstack([f_train, f_test])
    s_all = StandardScaler().fit(f_all)
    leaked = PCA(10, svd_solver="full").fit(s_all.transform(f_all)).transform(s_all.transform(f_test))
    assert not np.allclose(np.abs(ext.transform(x[test])), np.abs(leaked), atol=1e-3)
    assert ext.pca_.pca_.n_samples_ == 16


def test_local_weights_load_change_features_and_wrong_file_is_refused(tmp_path):
    from esoct.models.backbones import resnet18_2d

    x, y = _blob_slabs(10, size=32)
    torch.manual_seed(42)
    source = resnet18_2d(in_channels=7, width=0.125)
    path = tmp_path / "backbone.pt"
    torch.save(source.state_dict(), path)
    # epochs=0: a frozen extractor whose features are exactly the loaded network's
    frozen = DeepFeatureExtractor(head="classification", epochs=0, weights=path, n_components=None, **TINY).fit(x, y)
    with torch.no_grad():
        direct = np.vstack([source.eval()(torch.from_numpy(s)).double().numpy() for s in x[:, None]])
    np.testing.assert_allclose(frozen.backbone_features(x), direct, rtol=1e-12)
    scratch = DeepFeatureExtractor(head="classification", epochs=0, n_components=None, **TINY).fit(x, y)
    assert not np.allclose(scratch.backbone_features(x), direct, atol=1e-3)
    # trained from the weights: differs from the same training from scratch
    tuned = DeepFeatureExtractor(head="classification", epochs=1, weights=path, n_components=4, **TINY).fit(x, y)
    fresh = DeepFeatureExtractor(head="classification", epochs=1, n_components=4, **TINY).fit(x, y)
    assert tuned.weights_info_ == {"adapted": [], "ignored": []}
    assert not np.allclose(tuned.backbone_features(x), fresh.backbone_features(x), atol=1e-3)

    wide = tmp_path / "wide.pt"
    torch.save(resnet18_2d(in_channels=7, width=0.25).state_dict(), wide)
    with pytest.raises(InputError, match="do not fit the model") as err:
        DeepFeatureExtractor(head="classification", epochs=0, weights=wide, **TINY).fit(x, y)
    assert "wide.pt" in str(err.value)
    (tmp_path / "notes.pt").write_text("not weights")
    with pytest.raises(InputError, match="cannot read weights"):
        DeepFeatureExtractor(head="classification", epochs=0, weights=tmp_path / "notes.pt", **TINY).fit(x, y)


def test_classification_head_learns_a_bright_blob():
    from sklearn.metrics import roc_auc_score

    x, y = _blob_slabs(32, size=32)
    ext = DeepFeatureExtractor(head="classification", epochs=8, n_components=10, seed=0, **TINY).fit(x, y)
    auc = roc_auc_score(y, ext.predict_proba(x)[:, 1])
    assert auc > 0.9, auc
    assert ext.history_[-1] < 0.6 * ext.history_[0]
    with pytest.raises(InputError, match="Cox head"):
        ext.predict_risk(x)


def test_cox_head_ranks_patients_by_blob():
    from sklearn.metrics import roc_auc_score
    from sksurv.metrics import concordance_index_censored

    x, blob = _blob_slabs(32, size=32, seed=2)
    rng = np.random.default_rng(2)
    time = np.where(blob == 1, rng.uniform(1, 10, 32), rng.uniform(12, 40, 32))  # a blob means early death
    event = rng.random(32) < 0.8
    ext = DeepFeatureExtractor(head="cox", epochs=15, n_components=10, seed=0, **TINY).fit(x, _surv(event, time))
    risk = ext.predict_risk(x)
    assert concordance_index_censored(event, time, risk)[0] > 0.8
    assert roc_auc_score(blob, risk) > 0.85
    assert ext.transform(x).shape == (32, 10)
    with pytest.raises(InputError, match="classification head"):
        ext.predict_proba(x)


def test_bad_inputs_raise_input_errors():
    x, y = _blob_slabs(6, size=32)
    ext = DeepFeatureExtractor(head="cox", epochs=1, n_components=2, **TINY)
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        ext.fit(x[0], y)
    with pytest.raises(InputError, match="structured array"):
        ext.fit(x, y)
    with pytest.raises(InputError, match="all training patients are censored"):
        ext.fit(x, _surv(np.zeros(6, bool), np.arange(1.0, 7)))
    bad = x.copy()
    bad[4, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"slab\(s\) \[4\]"):
        ext.fit(bad, _surv(np.ones(6, bool), np.arange(1.0, 7)))
    with pytest.raises(InputError, match="at least 2 classes"):
        DeepFeatureExtractor(head="classification", epochs=1, **TINY).fit(x, np.zeros(6))
    with pytest.raises(InputError, match="head must be"):
        DeepFeatureExtractor(head="svm").fit(x, y)


# -- slabs of a phantom cohort, longitudinal tables, cross-fitting ----------------------------
N_PHANTOM = 6
SLAB = {"size": 32}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """A 6-patient phantom cohort plus a manifest with a 7th patient whose pre-treatment CT is missing."""
    from esoct.phantom.cohort import generate_cohort

    root = tmp_path_factory.mktemp("deep_phantom")
    generate_cohort(root, N_PHANTOM, seed=1, workers=1, progress=False)
    table = pd.read_csv(root / "manifest.csv")
    broken = table.iloc[[0]].assign(patient_id="EPBAD", image_pre="images/missing.nii.gz")
    pd.concat([table, broken]).to_csv(root / "with_bad.csv", index=False)
    return root


@pytest.fixture(scope="module")
def slabs(phantom):
    return build_slab_dataset(phantom / "with_bad.csv", phantom / "slab_cache", settings=SLAB, progress=False)


def test_slab_dataset_shapes_failures_and_cache(phantom, slabs, tmp_path):
    ids = [f"EP{i:04d}" for i in range(1, N_PHANTOM + 1)]
    assert slabs.patient_ids == {"pre": ids, "post": ids + ["EPBAD"]}
    assert slabs.slabs["pre"].shape == (N_PHANTOM, 7, 32, 32) and slabs.slabs["pre"].dtype == np.float32
    assert (slabs.computed, slabs.cached) == (2 * N_PHANTOM + 1, 0)  # EPBAD's post slab too
    assert slabs.failures["patient_id"].tolist() == ["EPBAD"] and slabs.failures["timepoint"].tolist() == ["pre"]
    assert "missing.nii.gz" in slabs.failures["reason"].iloc[0]
    with pytest.raises(InputError, match="patient EPBAD.*no pre slab.*does not exist"):
        slabs.get("pre", ["EP0001", "EPBAD"])
    # the same values as the pipeline itself, and the tumour shrinks after treatment
    from esoct.io.imageio import read_image
    from esoct.preprocess.roi.pipelines import longitudinal_inputs

    image, mask = read_image(phantom / "images/EP0002_pre.nii.gz"), read_image(phantom / "labels/EP0002_pre.nii.gz")
    np.testing.assert_array_equal(slabs.get("pre", ["EP0002"])[0], longitudinal_inputs(image, mask, size=32).channels)
    # a rerun reads every slab from the cache (same files, same settings); other settings recompute
    cache = phantom / "slab_cache"
    manifest = phantom / "manifest.csv"
    again = build_slab_dataset(manifest, cache, settings=SLAB, progress=False, failures_csv=tmp_path / "f.csv")
    assert (again.computed, again.cached) == (0, 2 * N_PHANTOM)
    assert np.array_equal(again.slabs["post"], slabs.slabs["post"][:N_PHANTOM])
    assert pd.read_csv(tmp_path / "f.csv").empty
    other = build_slab_dataset(manifest, cache, timepoints=("pre",), settings={"size": 24}, progress=False)
    assert (other.computed, other.cached) == (N_PHANTOM, 0) and other.slabs["pre"].shape[-1] == 24
    with pytest.raises(InputError, match="unknown slab setting"):
        build_slab_dataset(phantom / "manifest.csv", cache, settings={"sise": 24}, progress=False)


def test_longitudinal_tables_plug_into_presets(phantom, slabs):
    from esoct.survival.presets import PresetFeatures

    targets = manifest_targets(phantom / "manifest.csv")
    ext = DeepFeatureExtractor(head="cox", epochs=1, n_components=3, **TINY)
    train = ["EP0001", "EP0002", "EP0003", "EP0004"]
    tables = longitudinal_deep_features(slabs, targets, train, ["EP0005", "EP0006", "EPBAD"], estimator=ext)
    assert list(tables.dl_pre.columns) == ["patient_id", "dl_pre_pca_1", "dl_pre_pca_2", "dl_pre_pca_3"]
    assert tables.dl_pre["patient_id"].tolist() == ["EP0005", "EP0006"]  # EPBAD has no pre slab
    assert tables.dl_post["patient_id"].tolist() == ["EP0005", "EP0006", "EPBAD"]
    assert tables.dl_longitudinal.shape == (2, 7)
    assert tables.train_patients == {"pre": train, "post": train}
    assert ("EPBAD", "pre", "no pre slab: no features") in set(map(tuple, tables.excluded.values))
    expected = tables.extractors["post"].transform(slabs.get("post", ["EP0006"]))[0]
    np.testing.assert_allclose(tables.dl_post.iloc[1, 1:].to_numpy(float), expected, rtol=1e-12)
    names = ("DL_Pre", "DL_Post", "DL_Longitudinal")
    cols = {name: PresetFeatures(name).fit(tables.dl_longitudinal).columns_ for name in names}
    assert cols["DL_Pre"] == [f"dl_pre_pca_{i}" for i in (1, 2, 3)]
    assert cols["DL_Post"] == [f"dl_post_pca_{i}" for i in (1, 2, 3)]
    assert cols["DL_Longitudinal"] == cols["DL_Pre"] + cols["DL_Post"]


def test_cross_fitted_features_come_from_models_that_never_saw_the_patient(phantom, slabs):
    folds = pd.DataFrame({"patient_id": [f"EP{i:04d}" for i in range(1, 7)], "fold": [0, 1, 2, 0, 1, 2]})
    ext = DeepFeatureExtractor(head="cox", epochs=1, n_components=3, **TINY)
    manifest = phantom / "manifest.csv"
    out = cross_fitted_deep_features(manifest, folds, slabs=slabs, estimator=ext, keep_models=True, progress=False)
    assert out.dl_pre["patient_id"].tolist() == folds["patient_id"].tolist()
    assert out.dl_pre["fold"].tolist() == folds["fold"].tolist()
    assert out.dl_longitudinal.shape == (6, 2 + 6)
    for k in range(3):
        test = folds.loc[folds["fold"] == k, "patient_id"].tolist()
        for tp in ("pre", "post"):
            assert not set(test) & set(out.train_patients[(k, tp)]) and len(out.train_patients[(k, tp)]) == 4
            rows = getattr(out, f"dl_{tp}").set_index("patient_id").loc[test]
            expected = out.extractors[(k, tp)].transform(slabs.get(tp, test))
            np.testing.assert_allclose(rows.drop(columns="fold").to_numpy(float), expected, rtol=1e-12)
    # the same fold fitted directly gives the same numbers (seeded)
    train, test = ["EP0002", "EP0003", "EP0005", "EP0006"], ["EP0001", "EP0004"]
    direct = longitudinal_deep_features(slabs, manifest_targets(manifest), train, test, estimator=ext)
    fold0 = out.dl_pre.iloc[[0, 3], 2:].to_numpy(float)
    np.testing.assert_allclose(direct.dl_pre.iloc[:, 1:].to_numpy(float), fold0, rtol=1e-12)
    with pytest.raises(InputError, match="fold 0: pre network on 4 training patients: n_components=5"):
        cross_fitted_deep_features(manifest, folds, slabs=slabs, estimator=ext.set_params(n_components=5))
    with pytest.raises(InputError, match="not in the manifest"):
        cross_fitted_deep_features(manifest, folds.assign(patient_id="X"), slabs=slabs, estimator=ext)
