"""Univariate Cox screening against lifelines, and LASSO-Cox on simulated survival data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from esoct.errors import InputError
from esoct.select.cox import LassoCoxSelector, UnivariateCoxFilter, univariate_cox

sksurv = pytest.importorskip("sksurv", reason="scikit-survival (esoct[stats]) is not installed")
from sksurv.util import Surv

# lifelines stops Newton-Raphson at a relative log-likelihood change of 1e-9 by default, which
# leaves its p-values up to ~2e-6 from the maximum-likelihood ones; tightened, it converges.
LIFELINES_CONVERGED = {"precision": 1e-12, "r_precision": 1e-14}


def lifelines_wald(df, duration, event, feature):
    from lifelines import CoxPHFitter

    fitter = CoxPHFitter().fit(df[[feature, duration, event]], duration, event, fit_options=LIFELINES_CONVERGED)
    return fitter.summary.loc[feature]


@pytest.mark.parametrize("dataset", ["rossi", "whas500"])
def test_univariate_cox_p_values_equal_lifelines(dataset):
    pytest.importorskip("lifelines", reason="lifelines (esoct[stats]) is not installed")
    if dataset == "rossi":
        from lifelines.datasets import load_rossi

        df = load_rossi()
        duration, event = "week", "arrest"
        features = [c for c in df.columns if c not in (duration, event)]
    else:
        from sksurv.datasets import load_whas500

        X, y = load_whas500()
        features = ["age", "bmi", "diasbp", "hr", "los", "sysbp"]
        df = X[features].astype(float).assign(lenfol=y["lenfol"], fstat=y["fstat"].astype(int))
        duration, event = "lenfol", "fstat"
    y = Surv.from_arrays(df[event].astype(bool), df[duration].astype(float))
    sel = UnivariateCoxFilter(p_threshold=0.1).fit(df[features], y)
    for i, feature in enumerate(features):
        ref = lifelines_wald(df, duration, event, feature)
        assert sel.pvalues_[i] == pytest.approx(ref["p"], abs=1e-6)
        assert sel.coef_[i] == pytest.approx(ref["coef"], rel=1e-6, abs=1e-9)
    assert list(sel.selected_features_) == [f for f, p in zip(features, sel.pvalues_) if p < 0.1]


def test_univariate_cox_constant_feature_and_bad_y():
    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(size=50), np.ones(50)]
    y = Surv.from_arrays(rng.random(50) < 0.6, rng.exponential(size=50))
    fit = univariate_cox(X, y["event"], y["time"])
    assert np.isfinite(fit["p"][0]) and np.isnan(fit["p"][1])
    with pytest.raises(InputError, match="structured array"):
        UnivariateCoxFilter().fit(X, y["time"])
    with pytest.raises(InputError, match="all patients are censored"):
        UnivariateCoxFilter().fit(X, Surv.from_arrays(np.zeros(50, bool), y["time"]))
    with pytest.raises(InputError, match="y has 50 patients but X has 10"):
        UnivariateCoxFilter().fit(X[:10], y)


def simulated_survival(n=200, p=30, seed=0):
    """Exponential times with log-hazard 1.0 x0 - 1.0 x1 + 0.8 x2; about half censored."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"delta_f{i}" for i in range(p)])
    risk = 1.0 * X["delta_f0"] - 1.0 * X["delta_f1"] + 0.8 * X["delta_f2"]
    event_time = rng.exponential(np.exp(-risk))
    censor_time = rng.exponential(2.5 * np.median(event_time), size=n)
    y = Surv.from_arrays(event_time <= censor_time, np.minimum(event_time, censor_time))
    return X, y


def test_lasso_cox_keeps_the_informative_features():
    X, y = simulated_survival()
    sel = LassoCoxSelector(cv=5, random_state=0).fit(X, y)
    kept = set(sel.selected_features_)
    assert {"delta_f0", "delta_f1", "delta_f2"} <= kept
    assert len(kept) < 15
    assert sel.cv_scores_.max() > 0.7 and sel.alpha_ in sel.alphas_
    again = LassoCoxSelector(cv=5, random_state=0).fit(X, y)
    np.testing.assert_array_equal(sel.support_, again.support_)


def test_cox_selectors_in_pipeline_with_clone_and_cross_val_score():
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    X, y = simulated_survival(n=150)
    pipe = Pipeline([
        ("screen", UnivariateCoxFilter(p_threshold=0.1)),
        ("lasso", LassoCoxSelector(n_alphas=20, cv=3)),
        ("cox", CoxPHSurvivalAnalysis()),
    ])
    scores = cross_val_score(clone(pipe), X, y, cv=3)  # Harrell's C of the Cox model
    assert scores.mean() > 0.7
    fitted = clone(pipe).set_output(transform="pandas").fit(X, y)
    assert list(fitted[:-1].get_feature_names_out()) == list(fitted.named_steps["lasso"].selected_features_)
    assert set(fitted.named_steps["lasso"].selected_features_) <= set(fitted.named_steps["screen"].selected_features_)


def test_univariate_cox_is_the_same_feature_by_feature_and_all_at_once():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 300))  # more columns than one chunk
    event, time = rng.random(120) < 0.7, np.round(rng.exponential(size=120) * 20)  # with ties
    together = univariate_cox(X, event, time)
    for j in (0, 255, 256, 299):
        alone = univariate_cox(X[:, [j]], event, time)
        assert together["p"][j] == pytest.approx(alone["p"][0], abs=1e-12)
