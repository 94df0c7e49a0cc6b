"""Calibration: Brier and reliability curve against scikit-learn, intercept and slope on simulated data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logit
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

from esoct.errors import InputError
from esoct.evaluate.calibration import brier, calibration_intercept_slope, hosmer_lemeshow, reliability_curve


def _cohort(n, seed=0):
    """True risks expit(x) and outcomes drawn from them."""
    rng = np.random.default_rng(seed)
    true_lp = rng.normal(-0.5, 1.2, n)
    y = rng.random(n) < expit(true_lp)
    return y, true_lp


# --------------------------------------------------------------------------- Brier and reliability


def test_brier_equals_sklearn_with_a_bootstrap_interval():
    y, lp = _cohort(500)
    p = expit(lp)
    ci = brier(y, p, n_resamples=400)
    assert ci.estimate == pytest.approx(brier_score_loss(y, p), abs=1e-15)
    assert ci.low < ci.estimate < ci.high and ci.method == "percentile" and ci.n_resamples == 400
    assert brier(y, p, ci=False).estimate == ci.estimate
    assert brier(y.astype(int), p, stratified=True, n_resamples=100).estimate == ci.estimate


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
@pytest.mark.parametrize("n_bins", [5, 10])
def test_reliability_curve_equals_sklearn(strategy, n_bins):
    y, lp = _cohort(700, seed=1)
    p = np.round(expit(lp), 1)  # many probabilities sit exactly on the uniform bin edges
    table = reliability_curve(y, p, n_bins=n_bins, strategy=strategy)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    np.testing.assert_array_equal(table["prob_true"], prob_true)
    np.testing.assert_array_equal(table["prob_pred"], prob_pred)
    assert table["n"].sum() == 700
    assert ((table["low"] <= table["prob_true"]) & (table["prob_true"] <= table["high"])).all()


def test_reliability_curve_counts_and_wilson_band_by_hand():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.55, 0.65, 0.95, 0.85])
    table = reliability_curve(y, p, n_bins=2, strategy="uniform")
    assert list(table["n"]) == [2, 4]
    assert list(table["prob_true"]) == [0.0, 0.75]
    assert table["prob_pred"].tolist() == pytest.approx([0.1, 0.75])
    assert table["low"].iloc[0] == 0.0


# --------------------------------------------------------------------------- intercept and slope


def test_slope_equals_unpenalised_logistic_regression():
    y, lp = _cohort(1500, seed=2)
    p = expit(1.6 * lp + 0.3)
    fit = calibration_intercept_slope(y, p)
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(logit(p)[:, None], y)
    assert fit.slope.estimate == pytest.approx(ref.coef_[0, 0], rel=1e-6)


def test_intercept_is_the_offset_model_and_solves_its_score_equation():
    y, lp = _cohort(1500, seed=3)
    p = expit(lp - 0.7)  # under-predicts: calibration-in-the-large about +0.7
    fit = calibration_intercept_slope(y, p)
    a = fit.intercept.estimate
    assert np.sum(y - expit(a + logit(p))) == pytest.approx(0.0, abs=1e-8)
    se = 1 / np.sqrt(np.sum(expit(a + logit(p)) * (1 - expit(a + logit(p)))))
    z = stats.norm.ppf(0.975)
    assert (fit.intercept.low, fit.intercept.high) == pytest.approx((a - z * se, a + z * se), rel=1e-10)
    assert fit.intercept.low < 0.7 < fit.intercept.high


def test_against_statsmodels_when_installed():
    sm = pytest.importorskip("statsmodels.api")
    y, lp = _cohort(800, seed=4)
    p = expit(0.8 * lp)
    fit = calibration_intercept_slope(y, p)
    x = logit(p)
    slope_model = sm.GLM(y.astype(float), sm.add_constant(x), family=sm.families.Binomial()).fit()
    offset_model = sm.GLM(y.astype(float), np.ones((y.size, 1)), family=sm.families.Binomial(), offset=x).fit()
    assert fit.slope.estimate == pytest.approx(slope_model.params[1], rel=1e-8)
    assert fit.intercept.estimate == pytest.approx(offset_model.params[0], rel=1e-8, abs=1e-10)
    low, high = slope_model.conf_int()[1]
    assert (fit.slope.low, fit.slope.high) == pytest.approx((low, high), rel=1e-7)


def test_well_calibrated_predictions_give_slope_1_and_intercept_0():
    y, lp = _cohort(20_000, seed=5)
    fit = calibration_intercept_slope(y, expit(lp))
    assert fit.slope.estimate == pytest.approx(1.0, abs=0.05)
    assert fit.intercept.estimate == pytest.approx(0.0, abs=0.05)
    assert fit.slope.low < 1.0 < fit.slope.high and fit.intercept.low < 0.0 < fit.intercept.high
    assert fit.slope.method == "wald" and fit.n_clipped == 0


def test_overconfident_predictions_give_a_slope_below_1():
    y, lp = _cohort(20_000, seed=6)
    fit = calibration_intercept_slope(y, expit(3 * lp))  # three times too extreme: slope 1/3
    assert fit.slope.estimate == pytest.approx(1 / 3, abs=0.03)
    assert fit.slope.high < 1.0
    under = calibration_intercept_slope(y, expit(lp / 2))  # too moderate: slope 2
    assert under.slope.estimate == pytest.approx(2.0, abs=0.15)


def test_probabilities_of_0_or_1_are_clipped_with_a_warning():
    y, lp = _cohort(300, seed=7)
    p = expit(lp)
    p[:3] = [0.0, 1.0, 0.0]
    with pytest.warns(RuntimeWarning, match="3 probabilities of exactly 0 or 1"):
        fit = calibration_intercept_slope(y, p)
    assert fit.n_clipped == 3 and np.isfinite(fit.slope.estimate)


def test_perfect_separation_gives_nan_with_a_warning():
    with pytest.warns(RuntimeWarning, match="did not converge"):
        fit = calibration_intercept_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert np.isnan(fit.slope.estimate) and np.isnan(fit.slope.low)
    assert np.isfinite(fit.intercept.estimate)


# --------------------------------------------------------------------------- Hosmer-Lemeshow


def test_hosmer_lemeshow_by_hand():
    # three risk groups of four: O = 1, 2, 4 events; E = 0.4, 2.0, 3.6; E(1 - E/n) = 0.36, 1, 0.36
    # H = 0.6^2/0.36 + 0 + 0.4^2/0.36 = 1 + 4/9 on 3 - 2 = 1 degree of freedom
    p = np.repeat([0.1, 0.5, 0.9], 4)
    y = np.array([0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1])
    result = hosmer_lemeshow(y, p, n_groups=3)
    assert result.statistic == pytest.approx(1 + 4 / 9, abs=1e-12)
    assert result.df == 1
    assert result.p_value == pytest.approx(stats.chi2.sf(1 + 4 / 9, 1), abs=1e-15)


def test_hosmer_lemeshow_on_well_calibrated_data_does_not_reject():
    y, lp = _cohort(5000, seed=8)
    result = hosmer_lemeshow(y, expit(lp))
    assert result.df == 8 and result.p_value > 0.01
    assert hosmer_lemeshow(y, expit(3 * lp)).p_value < 1e-6


# --------------------------------------------------------------------------- bad input


def test_bad_input():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(InputError, match="1 of 4 probabilities are outside \\[0, 1\\]"):
        brier(y, [0.1, 1.2, 0.3, 0.4])
    with pytest.raises(InputError, match="2 of 4 probability value\\(s\\) are NaN"):
        reliability_curve(y, [np.nan, 0.2, np.inf, 0.4])
    with pytest.raises(InputError, match="lengths must match"):
        brier(y, [0.1, 0.2])
    with pytest.raises(InputError, match="only one class"):
        calibration_intercept_slope(np.zeros(4), [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(InputError, match="strategy"):
        reliability_curve(y, [0.1, 0.2, 0.3, 0.4], strategy="kmeans")
    with pytest.raises(InputError, match="all predictions equal to 0 or 1"):
        hosmer_lemeshow(np.r_[y, y, y], np.r_[np.zeros(4), [0.5] * 4, np.ones(4)], n_groups=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reliability_curve(np.zeros(4), [0.1, 0.2, 0.3, 0.4])  # one class is fine for a reliability curve
