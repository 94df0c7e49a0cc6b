"""Paired C-index comparison: bootstrap difference and survcomp's cindex.comp, on real and simulated data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

pytest.importorskip("sksurv", reason="scikit-survival (esoct[stats]) is not installed")

from sksurv.datasets import load_veterans_lung_cancer

from esoct.errors import InputError
from esoct.evaluate.compare import cindex_comp, compare_c_index, noether_c_index
from esoct.evaluate.concordance import harrell_c, harrell_c_ci


@pytest.fixture(scope="module")
def veterans():
    """Veterans' lung cancer trial: Karnofsky score (strong, tied) and age (weak) as risk scores."""
    X, y = load_veterans_lung_cancer()
    return {
        "event": y["Status"],
        "time": y["Survival_in_days"],
        "karnofsky": -X["Karnofsky_score"].to_numpy(float),
        "age": X["Age_in_years"].to_numpy(float),
    }


def _truth_and_noise(n: int = 400, seed: int = 0):
    """Exponential survival with hazard exp(x): x is the true risk, an independent normal is noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t_event = rng.exponential(1.0 / np.exp(x))
    t_cens = rng.exponential(2.0, n)
    return t_event <= t_cens, np.minimum(t_event, t_cens), x, rng.normal(size=n)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_comparison_truth_vs_noise_and_identical():
    event, time, truth, noise = _truth_and_noise()
    res = compare_c_index(event, time, truth, noise, n_resamples=500)
    assert res.p_value < 0.01
    assert res.difference.low > 0
    assert res.difference.estimate == pytest.approx(harrell_c(event, time, truth) - harrell_c(event, time, noise))
    same = compare_c_index(event, time, truth, truth, n_resamples=500)
    assert same.p_value == 1.0
    assert (same.difference.low, same.difference.estimate, same.difference.high) == (0.0, 0.0, 0.0)


def test_bootstrap_comparison_uses_the_same_resamples_as_harrell_c_ci(veterans):
    v = veterans
    res = compare_c_index(v["event"], v["time"], v["karnofsky"], v["age"], n_resamples=300, seed=4)
    a = harrell_c_ci(v["event"], v["time"], v["karnofsky"], n_resamples=300, seed=4)
    b = harrell_c_ci(v["event"], v["time"], v["age"], n_resamples=300, seed=4)
    np.testing.assert_array_equal(res.c_a.replicates, a.replicates)
    np.testing.assert_array_equal(res.difference.replicates, a.replicates - b.replicates)
    d = res.difference.replicates
    expected = min(1.0, 2 * min(1 + (d <= 0).sum(), 1 + (d >= 0).sum()) / (len(d) + 1))
    assert res.p_value == pytest.approx(expected)
    assert res.p_value < 0.01  # Karnofsky beats age in this trial (C 0.71 vs 0.52)


# --------------------------------------------------------------------------- survcomp


def _survcomp_reference(event, time, x):
    """Line-by-line transcription of survcomp's concordanceIndexC loop and the R formulas (noether)."""
    n = len(x)
    ch, dh = np.zeros(n), np.zeros(n)
    for h in range(n):
        for j in range(n):
            if time[h] < time[j] and event[h]:
                ch[h] += x[h] > x[j]
                dh[h] += x[h] < x[j]
            if time[h] > time[j] and event[j]:
                ch[h] += x[h] < x[j]
                dh[h] += x[h] > x[j]
    N = n
    pc, pd = ch.sum() / (N * (N - 1)), dh.sum() / (N * (N - 1))
    pcc = (ch * (ch - 1)).sum() / (N * (N - 1) * (N - 2))
    pdd = (dh * (dh - 1)).sum() / (N * (N - 1) * (N - 2))
    pcd = (ch * dh).sum() / (N * (N - 1) * (N - 2))
    varp = (4 / (pc + pd) ** 4) * (pd**2 * pcc - 2 * pc * pd * pcd + pc**2 * pdd)
    return pc / (pc + pd), np.sqrt(varp / N)


def test_noether_equals_survcomp_transcription(veterans):
    v = veterans
    for risk in (v["karnofsky"], v["age"]):
        c_ref, se_ref = _survcomp_reference(v["event"], v["time"], risk)
        res = noether_c_index(v["event"], v["time"], risk)
        assert res.c_index == pytest.approx(c_ref, abs=1e-12)
        assert res.se == pytest.approx(se_ref, abs=1e-12)
        z = stats.norm.ppf(0.975)
        assert (res.low, res.high) == pytest.approx((c_ref - z * se_ref, c_ref + z * se_ref), abs=1e-12)
    # survcomp leaves pairs tied in risk or in time out, so with Karnofsky's ties it differs from Harrell's C
    assert noether_c_index(v["event"], v["time"], v["karnofsky"]).c_index != pytest.approx(
        harrell_c(v["event"], v["time"], v["karnofsky"]), abs=1e-3
    )


def test_cindex_comp_formula(veterans):
    v = veterans
    res = cindex_comp(v["event"], v["time"], v["karnofsky"], v["age"])
    ca, sa = _survcomp_reference(v["event"], v["time"], v["karnofsky"])
    cb, sb = _survcomp_reference(v["event"], v["time"], v["age"])
    r = stats.spearmanr(v["karnofsky"], v["age"]).statistic
    t = (ca - cb) / np.sqrt(sa**2 + sb**2 - 2 * r * sa * sb)
    n = len(v["time"])
    assert res.statistic == pytest.approx(t, abs=1e-10) and res.df == n - 1
    assert res.p_value == pytest.approx(stats.t.sf(t, n - 1), rel=1e-10)  # survcomp: one-sided, upper tail
    assert res.p_value < 1e-4
    flipped = cindex_comp(v["event"], v["time"], v["age"], v["karnofsky"])
    assert flipped.p_value > 0.999
    two = cindex_comp(v["event"], v["time"], v["age"], v["karnofsky"], alternative="two-sided")
    assert two.p_value == pytest.approx(2 * res.p_value, rel=1e-10)


def test_cindex_comp_truth_vs_noise_and_identical():
    event, time, truth, noise = _truth_and_noise()
    assert cindex_comp(event, time, truth, noise).p_value < 0.01
    same = cindex_comp(event, time, truth, truth)
    assert same.p_value == 1.0 and same.r == pytest.approx(1.0)


def test_bad_input():
    event, time, truth, noise = _truth_and_noise(50)
    noise[3] = np.nan
    with pytest.raises(InputError, match="1 risk_b score"):
        compare_c_index(event, time, truth, noise, n_resamples=10)
    with pytest.raises(InputError, match="1 risk_b score"):
        cindex_comp(event, time, truth, noise)
    with pytest.raises(ValueError, match="alternative"):
        cindex_comp(event, time, truth, truth, alternative="bigger")
    with pytest.raises(InputError, match="no events"):
        compare_c_index(np.zeros(50), time, truth, truth)
    with pytest.warns(RuntimeWarning, match="Noether standard error undefined"):
        assert np.isnan(noether_c_index([1, 0, 1, 0], [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]).se)
    with pytest.raises(InputError, match="standard error is undefined"), pytest.warns(RuntimeWarning):
        cindex_comp([1, 0, 1, 0], [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 4.0, 3.0])


def test_integrated_brier_comparison():
    from esoct.evaluate.compare import compare_integrated_brier
    from esoct.evaluate.concordance import as_surv
    from esoct.evaluate.survival_metrics import integrated_brier

    rng = np.random.default_rng(1)
    n = 400
    x = rng.normal(size=n)
    t_event = rng.exponential(1.0 / np.exp(x))
    t_cens = rng.exponential(2.0, n)
    y = as_surv(t_event <= t_cens, np.minimum(t_event, t_cens))
    times = np.quantile(y["time"][y["event"]], [0.1, 0.3, 0.5, 0.7])
    truth = np.exp(-times[None, :] * np.exp(x)[:, None])  # S(t|x) of the simulation
    null = np.exp(-times[None, :] * np.exp(rng.normal(size=n))[:, None])  # right shape, wrong patients
    res = compare_integrated_brier(y, y, truth, null, times, n_resamples=300)
    assert res.c_a.estimate == pytest.approx(integrated_brier(y, y, truth, times, n_resamples=10).estimate)
    assert res.difference.high < 0 and res.p_value < 0.01
    same = compare_integrated_brier(y, y, truth, truth, times, n_resamples=300)
    assert same.p_value == 1.0


def test_noether_p_value_alternatives_follow_survcomp(veterans):
    """Current survcomp: p two-sided by default (2 P(Z > |z|)); older releases returned one tail in the
    direction of C (``pnorm(z, lower.tail = cindex < 0.5)``), half of it."""
    v = veterans
    for risk in (v["karnofsky"], -v["karnofsky"], v["age"]):
        c_ref, se_ref = _survcomp_reference(v["event"], v["time"], risk)
        z = (c_ref - 0.5) / se_ref
        two = noether_c_index(v["event"], v["time"], risk)
        assert two.p_value == pytest.approx(min(1.0, 2 * stats.norm.sf(abs(z))), rel=1e-9)
        old = noether_c_index(v["event"], v["time"], risk, alternative="directional")
        assert old.p_value == pytest.approx(stats.norm.cdf(z) if c_ref < 0.5 else stats.norm.sf(z), rel=1e-9)
        assert two.p_value == pytest.approx(min(1.0, 2 * old.p_value), rel=1e-9)
        greater = noether_c_index(v["event"], v["time"], risk, alternative="greater").p_value
        less = noether_c_index(v["event"], v["time"], risk, alternative="less").p_value
        assert greater + less == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(InputError, match="alternative"):
        noether_c_index(v["event"], v["time"], v["age"], alternative="two.sided")
