"""The generic bootstrap: resamples, percentile and BCa intervals against scipy, degenerate resamples."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from esoct.errors import InputError
from esoct.evaluate import concordance
from esoct.evaluate.bootstrap import (
    CI,
    bca_ci,
    bootstrap_ci,
    bootstrap_indices,
    index_blocks,
    jackknife_blocks,
    percentile_ci,
)


def _var_rows(a):
    return np.var(a, axis=1, ddof=1)


def _scipy_var(a, axis):
    return np.var(a, axis=axis, ddof=1)


# --------------------------------------------------------------------------- resampling


def test_indices_are_the_seeded_generator_draws_and_match_the_concordance_module():
    idx = bootstrap_indices(37, 50, seed=4)
    assert idx.shape == (50, 37)
    np.testing.assert_array_equal(idx, np.random.default_rng(4).integers(0, 37, size=(50, 37)))
    np.testing.assert_array_equal(idx, concordance.bootstrap_indices(37, 50, seed=4))
    assert not np.array_equal(idx, bootstrap_indices(37, 50, seed=5))


def test_stratified_resamples_keep_every_stratum_size_and_position():
    strata = np.array(["a"] * 7 + ["b"] * 3 + ["c"] * 12)
    np.random.default_rng(0).shuffle(strata)
    idx = bootstrap_indices(strata.size, 200, seed=1, strata=strata)
    np.testing.assert_array_equal(strata[idx], np.broadcast_to(strata, idx.shape))
    for label, size in (("a", 7), ("b", 3), ("c", 12)):
        assert ((strata[idx] == label).sum(axis=1) == size).all()
    # each stratum is really resampled (with replacement), not permuted
    assert any(len(set(row[strata == "c"])) < 12 for row in idx)


@pytest.mark.parametrize("strata", [None, np.r_[np.zeros(9), np.ones(4)]])
def test_blocks_stack_to_the_same_resamples_whatever_their_size(strata):
    whole = bootstrap_indices(13, 23, seed=7, strata=strata)
    for rows in (1, 5, 23, 100):
        stacked = np.concatenate(list(index_blocks(13, 23, seed=7, strata=strata, rows=rows)))
        np.testing.assert_array_equal(stacked, whole)


def test_jackknife_rows_leave_out_one_observation_each():
    rows = np.concatenate(list(jackknife_blocks(6)))
    assert rows.shape == (6, 5)
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(row, np.delete(np.arange(6), i))


# --------------------------------------------------------------------------- intervals


def test_percentile_interval_is_the_quantiles_of_the_estimates():
    est = np.random.default_rng(0).normal(size=999)
    low, high = percentile_ci(est, alpha=0.1)
    assert (low, high) == tuple(np.quantile(est, [0.05, 0.95]))
    assert all(np.isnan(percentile_ci([])))


@pytest.mark.parametrize(("method", "scipy_method"), [("percentile", "percentile"), ("bca", "BCa")])
def test_bootstrap_ci_equals_scipy_bootstrap_on_the_same_resamples(method, scipy_method):
    # scipy.stats.bootstrap draws rng.integers(0, n, (B, n)) in one batch: the same resamples as
    # bootstrap_indices(n, B, seed=seed), so both intervals must agree to rounding.
    x = np.random.default_rng(5).lognormal(size=40)  # skewed data, skewed statistic
    ours = bootstrap_ci(_var_rows, x, n_resamples=2000, seed=3, method=method)
    ref = stats.bootstrap(
        (x,), _scipy_var, n_resamples=2000, rng=np.random.default_rng(3), method=scipy_method, vectorized=True
    )
    assert ours.estimate == pytest.approx(np.var(x, ddof=1), rel=1e-14)
    assert ours.low == pytest.approx(ref.confidence_interval.low, rel=1e-12)
    assert ours.high == pytest.approx(ref.confidence_interval.high, rel=1e-12)
    assert (ours.method, ours.n_resamples, ours.n_failed, ours.level) == (method, 2000, 0, 0.95)
    np.testing.assert_allclose(ours.replicates, ref.bootstrap_distribution, rtol=1e-13)


def test_bca_moves_toward_the_exact_interval_of_a_skewed_statistic():
    # The variance of normal data has an exact chi-square interval, skewed to the right. Over 50
    # seeded samples of 25, BCa's endpoints are nearer the exact ones than the percentile
    # interval's in most samples, and BCa sits to the right of the percentile interval.
    closer = right = 0
    for r in range(50):
        x = np.random.default_rng(100 + r).normal(size=25)
        s2, df = np.var(x, ddof=1), 24
        exact = np.array([df * s2 / stats.chi2.ppf(0.975, df), df * s2 / stats.chi2.ppf(0.025, df)])
        perc = bootstrap_ci(_var_rows, x, n_resamples=2000, seed=r)
        bca = bootstrap_ci(_var_rows, x, n_resamples=2000, seed=r, method="bca")
        closer += np.abs([bca.low, bca.high] - exact).sum() < np.abs([perc.low, perc.high] - exact).sum()
        right += bca.low > perc.low and bca.high > perc.high
    assert closer >= 45
    assert right >= 45


def test_bca_formula_on_hand_values():
    # z0 = Phi^-1(#{t_b < t} + #{t_b <= t}) / 2B) = Phi^-1(0.5) = 0 and a = 0 (symmetric jackknife):
    # BCa reduces to the percentile interval.
    est = np.linspace(0, 1, 101)
    jack = np.array([-1.0, 0.0, 1.0])
    assert bca_ci(0.5, est, jack, alpha=0.1) == pytest.approx(percentile_ci(est, alpha=0.1), abs=1e-15)
    # with every estimate above theta_hat, z0 = -inf: fall back to the percentile interval, with a warning
    with pytest.warns(RuntimeWarning, match="one side"):
        assert bca_ci(-1.0, est, jack) == pytest.approx(percentile_ci(est), abs=1e-15)


def test_loop_and_vectorised_statistics_give_the_same_interval():
    x = np.random.default_rng(2).exponential(size=30)
    vec = bootstrap_ci(lambda a: a.mean(axis=1), x, n_resamples=300, seed=9, method="bca")
    loop = bootstrap_ci(lambda a: a.mean(), x, n_resamples=300, seed=9, method="bca", vectorized=False)
    assert (vec.low, vec.high) == pytest.approx((loop.low, loop.high), rel=1e-13)


def test_paired_arrays_are_resampled_together():
    rng = np.random.default_rng(0)
    a = rng.normal(size=50)
    b = a + 1.0

    def diff(x, y):
        return (y - x).mean(axis=1)

    ci = bootstrap_ci(diff, a, b, n_resamples=200, seed=0)
    assert ci.estimate == pytest.approx(1.0) and ci.low == pytest.approx(1.0) and ci.high == pytest.approx(1.0)


# --------------------------------------------------------------------------- degenerate resamples


def _auc_or_nan(y, s):
    from esoct.evaluate.roc import batch_auc

    return batch_auc(y, s)


def test_resamples_with_one_class_are_dropped_and_counted():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    s = np.arange(8.0)[::-1]
    with pytest.warns(RuntimeWarning, match=r"of 500 bootstrap resamples left the AUC undefined"):
        ci = bootstrap_ci(_auc_or_nan, y, s, n_resamples=500, seed=0, what="AUC")
    failed = np.isnan(ci.replicates)
    # P(no positive in a resample of 8) = (7/8)^8 = 0.344: about 172 of 500
    assert ci.n_failed == int(failed.sum()) and 130 < ci.n_failed < 215
    assert (ci.low, ci.high) == percentile_ci(ci.replicates[~failed])
    # stratified by outcome every resample keeps its positive: nothing fails
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_ci(_auc_or_nan, y, s, n_resamples=500, seed=0, strata=y).n_failed == 0


# --------------------------------------------------------------------------- CI and errors


def test_ci_prints_like_a_paper():
    assert str(CI(0.8123, 0.7741, 0.8512)) == "0.812 (0.774-0.851)"
    assert str(CI(-0.05, -0.1, 0.02)) == "-0.050 (-0.100 to 0.020)"
    d = CI(0.5, 0.4, 0.6, method="delong").as_dict()
    assert d == {
        "estimate": 0.5,
        "low": 0.4,
        "high": 0.6,
        "level": 0.95,
        "method": "delong",
        "n_resamples": 0,
        "n_failed": 0,
    }


def test_bad_input_is_refused_with_a_clear_message():
    x = np.arange(10.0)
    with pytest.raises(InputError, match="at least one data array"):
        bootstrap_ci(_var_rows)
    with pytest.raises(InputError, match="same number of rows"):
        bootstrap_ci(lambda a, b: a.mean(axis=1), x, x[:5])
    with pytest.raises(InputError, match="method must be one of"):
        bootstrap_ci(_var_rows, x, method="basic")
    with pytest.raises(InputError, match="alpha"):
        bootstrap_ci(_var_rows, x, alpha=1.5)
    with pytest.raises(InputError, match="undefined .* on the full sample"):
        bootstrap_ci(lambda a: np.full(a.shape[0], np.nan), x)
    with pytest.raises(InputError, match="one value per resample"):
        bootstrap_ci(lambda a: a.mean(), x, n_resamples=10)
    with pytest.raises(InputError, match="n_resamples"):
        bootstrap_indices(10, 0)
    with pytest.raises(InputError, match="strata"):
        bootstrap_indices(10, 5, strata=[0, 1])


def test_small_blocks_give_the_same_interval(monkeypatch):
    # resamples are handed to the statistic in blocks of at most CHUNK_CELLS cells; the block size
    # must not change the resamples or the result (here 3 resamples of 17 per block)
    from esoct.evaluate import bootstrap

    x = np.random.default_rng(3).gamma(2.0, size=17)
    strata = np.arange(17) % 2
    whole = bootstrap_ci(_var_rows, x, n_resamples=100, seed=2, strata=strata, method="bca")
    monkeypatch.setattr(bootstrap, "CHUNK_CELLS", 50)
    blocks = []

    def spy(a):
        blocks.append(a.shape[0])
        return _var_rows(a)

    small = bootstrap_ci(spy, x, n_resamples=100, seed=2, strata=strata, method="bca")
    assert max(blocks) == 3
    assert (small.low, small.high) == (whole.low, whole.high)
    np.testing.assert_array_equal(small.replicates, whole.replicates)
