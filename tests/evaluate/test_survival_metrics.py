"""Time-dependent AUC, Brier score and calibration at t against scikit-survival on real data, bootstrap, bad input."""

from __future__ import annotations

import numpy as np
import pytest

sksurv_metrics = pytest.importorskip("sksurv.metrics", reason="scikit-survival (esoct[stats]) is not installed")

from lifelines import KaplanMeierFitter
from sksurv.datasets import load_gbsg2, load_whas500
from sksurv.linear_model import CoxPHSurvivalAnalysis

from esoct.errors import InputError
from esoct.evaluate.concordance import as_surv, bootstrap_indices
from esoct.evaluate.survival_metrics import (
    brier_over_time,
    integrated_brier,
    survival_calibration_at,
    time_dependent_auc,
)

TIMES = np.array([365.0, 730.0, 1095.0, 1460.0, 1825.0])


@pytest.fixture(scope="module")
def gbsg2():
    """GBSG2 split in a training (first 450) and a test part, with a Cox model fitted on the training part."""
    X, y = load_gbsg2()
    Xn = X[["age", "pnodes", "progrec", "estrec", "tsize"]].astype(float)
    model = CoxPHSurvivalAnalysis().fit(Xn[:450], y[:450])
    test_X = Xn[450:]
    surv = np.array([[fn(t) for t in TIMES] for fn in model.predict_survival_function(test_X)])
    chf = np.array([[fn(t) for t in TIMES] for fn in model.predict_cumulative_hazard_function(test_X)])
    return {"train": y[:450], "test": y[450:], "risk": model.predict(test_X), "surv": surv, "chf": chf}


def _sksurv_or_none(fn, *args):
    """scikit-survival's value, or None where it refuses a resample (times beyond its follow-up)."""
    try:
        return fn(*args)
    except ValueError:
        return None


def test_time_dependent_auc_equals_sksurv(gbsg2):
    g = gbsg2
    res = time_dependent_auc(g["train"], g["test"], g["risk"], TIMES, n_resamples=200)
    auc, mean_auc = sksurv_metrics.cumulative_dynamic_auc(g["train"], g["test"], g["risk"], TIMES)
    np.testing.assert_allclose(res.estimate, auc, rtol=0, atol=1e-12)
    assert res.summary.estimate == pytest.approx(mean_auc, abs=1e-12)
    assert np.all(res.low <= res.estimate) and np.all(res.estimate <= res.high)
    assert res.summary.low < res.summary.estimate < res.summary.high
    assert list(res.to_frame().columns) == ["time", "estimate", "low", "high"]


def test_time_dependent_auc_bootstrap_equals_sksurv_loop(gbsg2):
    g = gbsg2
    res = time_dependent_auc(g["train"], g["test"], g["risk"], TIMES, n_resamples=60, seed=5)
    compared = 0
    for b, i in enumerate(bootstrap_indices(len(g["test"]), 60, 5)):
        ref = _sksurv_or_none(sksurv_metrics.cumulative_dynamic_auc, g["train"], g["test"][i], g["risk"][i], TIMES)
        if ref is not None:
            np.testing.assert_allclose(res.replicates[b], ref[0], rtol=0, atol=1e-12)
            assert res.summary.replicates[b] == pytest.approx(ref[1], abs=1e-12)
            compared += 1
    assert compared >= 50


def test_time_dependent_auc_with_time_dependent_risk(gbsg2):
    g = gbsg2
    res = time_dependent_auc(g["train"], g["test"], g["chf"], TIMES, n_resamples=50)
    auc, mean_auc = sksurv_metrics.cumulative_dynamic_auc(g["train"], g["test"], g["chf"], TIMES)
    np.testing.assert_allclose(res.estimate, auc, rtol=0, atol=1e-12)
    assert res.summary.estimate == pytest.approx(mean_auc, abs=1e-12)


def test_brier_and_integrated_brier_equal_sksurv(gbsg2):
    g = gbsg2
    res = brier_over_time(g["train"], g["test"], g["surv"], TIMES, n_resamples=200)
    _, bs = sksurv_metrics.brier_score(g["train"], g["test"], g["surv"], TIMES)
    np.testing.assert_allclose(res.estimate, bs, rtol=0, atol=1e-12)
    ibs = sksurv_metrics.integrated_brier_score(g["train"], g["test"], g["surv"], TIMES)
    assert res.summary.estimate == pytest.approx(ibs, abs=1e-12)
    ci = integrated_brier(g["train"], g["test"], g["surv"], TIMES, n_resamples=200)
    assert ci.estimate == pytest.approx(ibs, abs=1e-12) and ci.low < ci.estimate < ci.high
    assert np.all(res.low <= res.estimate) and np.all(res.estimate <= res.high)


def test_brier_bootstrap_equals_sksurv_loop(gbsg2):
    g = gbsg2
    res = brier_over_time(g["train"], g["test"], g["surv"], TIMES, n_resamples=60, seed=2)
    compared = 0
    for b, i in enumerate(bootstrap_indices(len(g["test"]), 60, 2)):
        ref = _sksurv_or_none(sksurv_metrics.brier_score, g["train"], g["test"][i], g["surv"][i], TIMES)
        if ref is not None:
            np.testing.assert_allclose(res.replicates[b], ref[1], rtol=0, atol=1e-12)
            ibs = sksurv_metrics.integrated_brier_score(g["train"], g["test"][i], g["surv"][i], TIMES)
            assert res.summary.replicates[b] == pytest.approx(ibs, abs=1e-12)
            compared += 1
    assert compared >= 50


def test_intervals_narrow_with_n():
    X, y = load_whas500()
    Xn = X[["age", "bmi", "hr", "diasbp"]].astype(float)
    risk = CoxPHSurvivalAnalysis().fit(Xn, y).predict(Xn)
    times = np.array([100.0, 365.0, 730.0])
    small = time_dependent_auc(y, y[:125], risk[:125], times, n_resamples=300)
    full = time_dependent_auc(y, y, risk, times, n_resamples=300)
    width = lambda ci: ci.high - ci.low
    assert width(full.summary) < 0.75 * width(small.summary)


def _weibull_cohort(n: int, seed: int = 0):
    """Weibull proportional-hazards survival, S(t|x) = exp(-(t/10)^1.5 exp(0.8 x)), uniform censoring on (0, 30)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t_event = 10.0 * (-np.log(rng.random(n)) / np.exp(0.8 * x)) ** (1 / 1.5)
    t_cens = rng.uniform(0, 30, n)
    surv_at = lambda t: np.exp(-((t / 10.0) ** 1.5) * np.exp(0.8 * x))
    return np.minimum(t_event, t_cens), t_event <= t_cens, surv_at


def test_calibration_of_the_true_model_matches_kaplan_meier():
    time, event, surv_at = _weibull_cohort(4000)
    table = survival_calibration_at(time, event, 8.0, surv_at(8.0), n_groups=5)
    assert list(table.columns) == ["group", "n", "n_events", "predicted", "observed", "observed_low", "observed_high"]
    assert table["n"].sum() == 4000 and list(table["group"]) == [1, 2, 3, 4, 5]
    assert np.all(np.diff(table["predicted"]) < 0)  # group 1 = lowest risk = highest survival
    assert np.max(np.abs(table["observed"] - table["predicted"])) < 0.05
    inside = (table["observed_low"] <= table["predicted"]) & (table["predicted"] <= table["observed_high"])
    assert inside.sum() >= 4
    # the Kaplan-Meier column is lifelines' estimate in the group
    first = np.argsort(1 - surv_at(8.0), kind="stable")[:800]
    kmf = KaplanMeierFitter().fit(time[first], event[first])
    assert table["observed"].iloc[0] == pytest.approx(kmf.predict(8.0), abs=1e-12)
    # a miscalibrated model (survival cubed) is visibly off
    off = survival_calibration_at(time, event, 8.0, surv_at(8.0) ** 3, n_groups=5)
    assert np.max(np.abs(off["observed"] - off["predicted"])) > 0.15


# --------------------------------------------------------------------------- bad input


def test_calibration_bad_input():
    time, event, surv_at = _weibull_cohort(200)
    with pytest.raises(InputError, match="no events before t"):
        survival_calibration_at(time, event, 1e-6, surv_at(1e-6))
    with pytest.raises(InputError, match="beyond the longest follow-up"):
        survival_calibration_at(time, event, 100.0, surv_at(100.0))
    with pytest.raises(InputError, match="too few"):
        survival_calibration_at(time[:20], event[:20], 8.0, surv_at(8.0)[:20], n_groups=5)
    with pytest.raises(InputError, match="outside \\[0, 1\\]"):
        survival_calibration_at(time, event, 8.0, surv_at(8.0) + 1)
    with pytest.raises(InputError, match="NaN"):
        survival_calibration_at(time, event, 8.0, np.full(200, np.nan))


def test_metrics_bad_input(gbsg2):
    g = gbsg2
    with pytest.raises(InputError, match="strictly increasing"):
        brier_over_time(g["train"], g["test"], g["surv"][:, ::-1], TIMES[::-1])
    with pytest.raises(InputError, match="within the follow-up"):
        time_dependent_auc(g["train"], g["test"], g["risk"], [365.0, 1e5])
    with pytest.raises(InputError, match="1 risk score"):
        risk = g["risk"].copy()
        risk[3] = np.nan
        time_dependent_auc(g["train"], g["test"], risk, TIMES)
    censored = as_surv(np.zeros(len(g["test"]), bool), g["test"]["time"])
    with pytest.raises(InputError, match="no events"):
        brier_over_time(g["train"], censored, g["surv"], TIMES)
    with pytest.raises(InputError, match="at least two time points"):
        integrated_brier(g["train"], g["test"], g["surv"][:, :1], TIMES[:1])
    with pytest.raises(InputError, match="patients x times"):
        brier_over_time(g["train"], g["test"], g["surv"][:, :2], TIMES)


def test_test_follow_up_beyond_training_is_a_clear_error_and_censor_at_fixes_it(gbsg2):
    """Issue 17.9: scikit-survival's bare "time must be smaller than largest observed time point"
    becomes an InputError naming the training follow-up; administrative censoring makes it computable."""
    from esoct.evaluate.concordance import surv_arrays
    from esoct.evaluate.survival_metrics import censor_at

    g = gbsg2
    event, time = surv_arrays(g["train"])
    keep = time < 1600.0  # a training cohort with a shorter follow-up than the test set
    short = as_surv(event[keep], time[keep])
    with pytest.raises(ValueError, match="largest observed time point"):  # what scikit-survival says
        sksurv_metrics.integrated_brier_score(short, g["test"], g["surv"][:, :3], TIMES[:3])
    with pytest.raises(InputError, match=r"followed beyond the training follow-up \(15\d\d.*censor_at"):
        integrated_brier(short, g["test"], g["surv"][:, :3], TIMES[:3], n_resamples=20)
    horizon = float(time[keep].max())
    cut = censor_at(g["test"], horizon)
    e2, t2 = surv_arrays(cut)
    e0, t0 = surv_arrays(g["test"])
    assert t2.max() == horizon and not e2[t0 > horizon].any() and (e2[t0 <= horizon] == e0[t0 <= horizon]).all()
    ci = integrated_brier(short, cut, g["surv"][:, :3], TIMES[:3], n_resamples=20)
    expected = sksurv_metrics.integrated_brier_score(short, cut, g["surv"][:, :3], TIMES[:3])
    assert ci.estimate == pytest.approx(expected, abs=1e-12)
