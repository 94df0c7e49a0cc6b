"""Median risk groups, Kaplan-Meier and log-rank against lifelines and scikit-survival, adjusted Cox."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sksurv")
pytest.importorskip("lifelines")

from lifelines import CoxPHFitter, KaplanMeierFitter  # noqa: E402
from lifelines.datasets import load_lung, load_rossi  # noqa: E402
from lifelines.statistics import logrank_test, multivariate_logrank_test  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sksurv.compare import compare_survival  # noqa: E402
from sksurv.datasets import load_gbsg2  # noqa: E402
from sksurv.nonparametric import kaplan_meier_estimator  # noqa: E402

from esoct.errors import InputError  # noqa: E402
from esoct.survival.risk_groups import RiskGroups, adjusted_cox, km_by_group, median_split  # noqa: E402


@pytest.fixture(scope="module")
def gbsg2():
    X, y = load_gbsg2()
    return X, y["time"], y["cens"]


def test_threshold_is_training_median_and_applied_unchanged():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=101), rng.normal(loc=1.0, size=40)
    rg = RiskGroups().fit(train)
    assert rg.threshold_ == np.median(train) == median_split(train)
    groups = rg.transform(test)
    np.testing.assert_array_equal(groups, np.where(test > np.median(train), "high", "low"))
    assert rg.threshold_ == np.median(train)  # transform does not refit
    assert (groups == "high").mean() > 0.6  # the shifted test cohort is not split 50/50
    # ties with the median are low risk; an even-sized cohort uses the mean of the middle two
    assert RiskGroups().fit([1, 2, 3]).transform([2, 2.0001]).tolist() == ["low", "high"]
    assert RiskGroups().fit([1, 2, 3, 4]).threshold_ == 2.5
    assert clone(RiskGroups(labels=("L", "H"))).get_params() == {"labels": ("L", "H")}
    with pytest.raises(InputError, match="missing or infinite"):
        RiskGroups().fit([1.0, np.nan, 2.0])


@pytest.mark.parametrize("column", ["horTh", "tgrade"])
def test_km_and_logrank_equal_references(gbsg2, column):
    X, time, event = gbsg2
    res = km_by_group(time, event, X[column])
    assert res.groups == list(X[column].cat.categories)
    for g in res.groups:
        m = (X[column] == g).to_numpy()
        tab = res.table[res.table["group"] == g].set_index("time")
        # lifelines directly
        kmf = KaplanMeierFitter().fit(time[m], event[m])
        np.testing.assert_allclose(tab["survival"], kmf.survival_function_.iloc[:, 0].loc[tab.index], atol=1e-12)
        assert res.medians.loc[g, "median"] == kmf.median_survival_time_
        # scikit-survival: survival and log(-log) CI at the distinct times
        t, s, ci = kaplan_meier_estimator(event[m], time[m], conf_type="log-log")
        np.testing.assert_allclose(tab.loc[t, "survival"], s, atol=1e-10)
        np.testing.assert_allclose(tab.loc[t, "lower"], ci[0], atol=1e-10)
        np.testing.assert_allclose(tab.loc[t, "upper"], ci[1], atol=1e-10)
        assert tab["n_at_risk"].iloc[0] == m.sum()
    g = X[column].to_numpy()
    if len(res.groups) == 2:
        a, b = g == res.groups[0], g == res.groups[1]
        ref = logrank_test(time[a], time[b], event[a], event[b])
    else:
        ref = multivariate_logrank_test(time, g, event)
    assert res.logrank_p == pytest.approx(ref.p_value, rel=1e-12)
    assert res.logrank_statistic == pytest.approx(ref.test_statistic, rel=1e-12)
    assert res.logrank_df == len(res.groups) - 1
    chisq, p = compare_survival(np.rec.fromarrays([event, time], names="e,t"), g.astype(str))[:2]
    assert res.logrank_statistic == pytest.approx(chisq, rel=1e-9)
    assert res.logrank_p == pytest.approx(p, rel=1e-9)
    at_risk = res.at_risk([0.0, 365.0])
    assert at_risk.loc[res.groups[0], 365.0] == int(((g == res.groups[0]) & (time >= 365)).sum())


def test_km_low_high_order_and_one_group_note():
    df = load_lung().dropna(subset=["ph.ecog"])
    risk = df["ph.ecog"].to_numpy() + df["age"].to_numpy() / 100
    groups = RiskGroups().fit(risk).transform(risk)
    res = km_by_group(df["time"], df["status"], groups)  # lifelines codes death as 1
    assert res.groups == ["low", "high"]
    assert res.logrank_p < 0.05
    single = km_by_group(df["time"], df["status"], np.full(len(df), "low"))
    assert np.isnan(single.logrank_p) and "two groups" in single.note
    with pytest.raises(InputError, match="negative"):
        km_by_group(-df["time"], df["status"], groups)
    with pytest.raises(InputError, match="0/1"):
        km_by_group(df["time"], df["status"] + 1, groups)  # R's survival::lung codes status 1/2
    none = km_by_group(df["time"], np.zeros(len(df)), groups)
    assert np.isnan(none.logrank_p) and "no events" in none.note


def test_adjusted_cox_matches_lifelines():
    df = load_rossi()
    rng = np.random.default_rng(1)
    score = df["prio"] * 0.1 + rng.normal(size=len(df))
    clinical = df[["age", "fin"]].assign(race=np.where(df["race"] == 1, "black", "other"))
    res = adjusted_cox(score, clinical, df["week"], df["arrest"])
    assert res.index[0] == "risk_score"
    other = (df["race"] == 0).astype(float)
    ref_df = df[["week", "arrest", "age", "fin"]].assign(risk_score=score, **{"race[other]": other})
    ref = CoxPHFitter().fit(ref_df, "week", "arrest").summary
    for cov in res.index:
        assert res.loc[cov, "HR"] == pytest.approx(ref.loc[cov, "exp(coef)"], rel=1e-6)
        assert res.loc[cov, "p"] == pytest.approx(ref.loc[cov, "p"], rel=1e-6)
    groups = RiskGroups().fit(score).transform(score)
    res_groups = adjusted_cox(groups, clinical, df["week"], df["arrest"])
    assert res_groups.index[0] == "risk_score[high]"
    assert {"HR", "HR_lower", "HR_upper", "p"} <= set(res_groups.columns)
    with pytest.raises(InputError, match="rows"):
        adjusted_cox(score[:-1], clinical, df["week"], df["arrest"])
