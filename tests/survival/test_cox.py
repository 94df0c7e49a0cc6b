"""CoxPH against lifelines and scikit-survival on real data; CoxnetCV and the LASSO-Cox radiomics signature."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sksurv")
pytest.importorskip("lifelines")

from lifelines import CoxPHFitter  # noqa: E402
from lifelines.datasets import load_rossi  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sksurv.column import encode_categorical  # noqa: E402
from sksurv.datasets import load_veterans_lung_cancer, load_whas500  # noqa: E402
from sksurv.linear_model import CoxPHSurvivalAnalysis  # noqa: E402
from sksurv.metrics import concordance_index_censored  # noqa: E402
from sksurv.util import Surv  # noqa: E402

from esoct.errors import InputError  # noqa: E402
from esoct.survival.cox import CoxnetCV, CoxPH, RadiomicsSignature  # noqa: E402


@pytest.fixture(scope="module")
def rossi():
    df = load_rossi()
    X = df.drop(columns=["week", "arrest"])
    return df, X, Surv.from_arrays(df["arrest"].astype(bool), df["week"])


@pytest.fixture(scope="module")
def veterans():
    X, y = load_veterans_lung_cancer()
    return encode_categorical(X), y


def _lifelines_fit(X, y):
    event_field, time_field = y.dtype.names
    df = X.reset_index(drop=True).copy()
    df["T"], df["E"] = y[time_field], y[event_field].astype(int)
    return CoxPHFitter().fit(df, "T", "E")


@pytest.mark.parametrize("dataset", ["rossi", "veterans", "whas500"])
def test_coefficients_match_lifelines_and_sksurv(dataset, rossi, veterans):
    if dataset == "rossi":
        _, X, y = rossi
    elif dataset == "veterans":
        X, y = veterans  # tied event times: Efron's method matters
    else:
        X, y = load_whas500()
        X = encode_categorical(X)[["age", "bmi", "hr", "sysbp", "gender=1", "chf=1", "afb=1"]]
    model = CoxPH().fit(X, y)
    ref = _lifelines_fit(X, y)
    np.testing.assert_allclose(model.coef_, ref.params_.to_numpy(), atol=1e-4, rtol=0)
    sk = CoxPHSurvivalAnalysis(ties="efron").fit(X, y)
    np.testing.assert_allclose(model.coef_, sk.coef_, atol=1e-4, rtol=0)
    # summary mirrors lifelines
    s = ref.summary
    np.testing.assert_allclose(model.summary_["HR"], s["exp(coef)"], rtol=1e-10)
    np.testing.assert_allclose(model.summary_["HR_lower"], s["exp(coef) lower 95%"], rtol=1e-10)
    np.testing.assert_allclose(model.summary_["HR_upper"], s["exp(coef) upper 95%"], rtol=1e-10)
    np.testing.assert_allclose(model.summary_["p"], s["p"], rtol=1e-10)
    np.testing.assert_allclose(model.hazard_ratios_, np.exp(model.coef_))


def test_predictions_and_score(rossi):
    _, X, y = rossi
    model = CoxPH().fit(X, y)
    ref = _lifelines_fit(X, y)
    lp = model.predict(X)
    np.testing.assert_allclose(lp, X.to_numpy() @ model.coef_)
    # lifelines centres the linear predictor at the training means
    np.testing.assert_allclose(lp - model.lp_reference_, ref.predict_log_partial_hazard(X), atol=1e-10)
    # on the baseline's time grid (and after its end) equal to lifelines; between grid times lifelines
    # back-fills (takes the next time's value) where the Breslow estimate is a right-continuous step
    times = np.array([1.0, 10.0, 20.0, 52.0, 60.0])
    np.testing.assert_allclose(
        model.predict_survival_function(X.iloc[:20], times),
        ref.predict_survival_function(X.iloc[:20], times=times).T,
        atol=1e-10,
    )
    np.testing.assert_array_equal(
        model.predict_survival_function(X.iloc[:5], [20.5]), model.predict_survival_function(X.iloc[:5], [20.0])
    )
    assert model.predict_survival_function(X.iloc[:3], [0.5])[:, 0] == pytest.approx(1.0)
    fns = model.predict_survival_function(X.iloc[:3])
    assert float(fns[0](52.0)) == pytest.approx(model.predict_survival_function(X.iloc[:1], [52.0])[0, 0])
    c = concordance_index_censored(y["event"], y["time"], lp)[0]
    assert model.score(X, y) == pytest.approx(c, abs=1e-12)
    assert model.score(X, y) == pytest.approx(ref.concordance_index_, abs=1e-12)
    # columns are matched by name, not position
    np.testing.assert_allclose(model.predict(X[X.columns[::-1]]), lp)


def test_sklearn_contract_and_errors(rossi):
    _, X, y = rossi
    model = CoxPH(penalizer=0.1)
    assert clone(model).get_params() == {"penalizer": 0.1, "l1_ratio": 0.0, "alpha": 0.05}
    with pytest.raises(InputError, match="missing or infinite"):
        CoxPH().fit(X.assign(age=np.where(X.index == 3, np.nan, X["age"])), y)
    with pytest.raises(InputError, match="single value"):
        CoxPH().fit(X.assign(one=1.0), y)
    with pytest.raises(InputError, match="structured array"):
        CoxPH().fit(X, y["time"])
    with pytest.raises(InputError, match="censored"):
        CoxPH().fit(X, Surv.from_arrays(np.zeros(len(X), bool), y["time"]))
    with pytest.raises(InputError, match="lacks the column"):
        CoxPH().fit(X, y).predict(X.drop(columns="age"))


def _simulated(n=300, p=30, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{j:02d}" for j in range(p)])
    lp = 1.0 * X["f00"] - 0.8 * X["f01"] + 0.6 * X["f02"]
    t = rng.exponential(24.0 * np.exp(-lp))
    c = rng.uniform(6.0, 72.0, n)
    return X, Surv.from_arrays(t <= c, np.minimum(t, c))


def test_coxnet_cv_picks_a_useful_alpha():
    X, y = _simulated(n=200, p=10, seed=3)
    model = CoxnetCV(cv=4, n_alphas=30).fit(X, y)
    assert model.cv_scores_.shape == (4, len(model.alphas_))
    assert model.alpha_ == model.alphas_[int(np.nanargmax(model.cv_mean_))]
    assert model.cv_mean_.max() > 0.65
    assert set(np.flatnonzero(model.coef_)) >= {0, 1, 2}
    assert model.score(X, y) > 0.7
    fns = model.predict_survival_function(X.iloc[:2])
    assert 0 < float(fns[0](10.0)) < 1
    sparse = CoxnetCV(cv=4, n_alphas=30, rule="1se").fit(X, y)
    assert sparse.alpha_ >= model.alpha_


def test_radiomics_signature_selects_the_informative_features():
    X, y = _simulated()
    sig = RadiomicsSignature(cv=5, n_alphas=50).fit(X, y)
    assert {"f00", "f01", "f02"} <= set(sig.selected_features_)
    top3 = sig.signature_["coef"].abs().sort_values(ascending=False).index[:3]
    assert set(top3) == {"f00", "f01", "f02"}
    assert np.sign(sig.signature_.loc[["f00", "f01", "f02"], "coef"]).tolist() == [1.0, -1.0, 1.0]
    # Rad-score = linear predictor on the training standardisation; needs only the selected columns
    z = (X[sig.selected_features_] - sig.mean_) / sig.scale_
    np.testing.assert_allclose(sig.predict(X), z.to_numpy() @ sig.coef_)
    np.testing.assert_allclose(sig.predict(X[list(sig.selected_features_)]), sig.predict(X))
    assert list(sig.transform(X).columns) == list(sig.selected_features_)
    assert list(sig.get_feature_names_out()) == list(sig.selected_features_)
    assert sig.score(X, y) > 0.7
    assert sig.mean_ == pytest.approx(X[sig.selected_features_].mean().to_numpy())
    assert clone(sig).get_params() == sig.get_params()
