"""ROC AUC and DeLong: sklearn agreement, a slow O(n^2) reference, the bootstrap, and pROC's aSAH example."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve

from esoct.errors import InputError
from esoct.evaluate.roc import (
    DeLongTest,
    auc_ci,
    batch_auc,
    delong_auc,
    delong_covariance,
    delong_test,
    ovr_auc,
    roc_curve_points,
)

# --------------------------------------------------------------------------- the textbook example
#
# pROC's aSAH data set: 113 patients with aneurysmal subarachnoid haemorrhage, outcome "Poor"
# (Glasgow outcome 1-3, 41 patients) vs "Good" (72); markers s100b, ndka and the WFNS grade.
#   Turck, N. et al. "A multiparameter panel method for outcome prediction following aneurysmal
#   subarachnoid hemorrhage", Intensive Care Medicine 36(1), 107-115, 2010.
#   Robin, X. et al. "pROC: an open-source package for R and S+ to analyze and compare ROC curves",
#   BMC Bioinformatics 12, 77, 2011 (roc.test(aSAH$outcome, aSAH$s100b, aSAH$wfns) is its example).
# The columns below are aSAH$outcome == "Poor", aSAH$s100b, as.numeric(aSAH$wfns), aSAH$ndka in the
# data set's row order. The expected numbers are pROC's own regression tests (github.com/xrobin/pROC):
#   tests/testthat/test-roc.test.R  roc.test(r.wfns, r.s100b): Z = 2.20898359144091,
#       p = 0.0271757822291882, conf.int 0.0104061769564846 .. 0.174214419249478;
#       roc.test(r.wfns, r.ndka): Z = 2.79777591868904, p = 0.00514557970691098,
#       conf.int 0.0634011709339876 .. 0.3600405634833566;
#       roc.test(r.ndka, r.s100b): Z = -1.39077002573558, p = 0.164295175223054,
#       conf.int -0.2876917446341914 .. 0.0488706064228094;
#       roc.test(r.wfns, r.wfns): Z = 0, p = 1
#   tests/testthat/test-var.R       var(r.wfns) = 0.00146991470882363, var(r.ndka) = 0.0031908105493913,
#                                   var(r.s100b) = 0.00266868245717244
#   tests/testthat/test-cov.R       cov(r.wfns, r.ndka) = -0.000532967856762438,
#                                   cov(r.ndka, r.s100b) = -0.000756164938056579,
#                                   cov(r.s100b, r.wfns) = 0.00119615567376754
#   tests/testthat/test-ci.auc.R    ci.auc(r.ndka) = 0.501244999271703, 0.611957994579946, 0.722670989888189
#   tests/testthat/helper-deLongPlacementsCpp-expected.R: AUCs (theta) 0.731368563685637 (s100b),
#       0.823678861788618 (wfns), 0.611957994579946 (ndka) and the DeLong placements, whose first
#       values are checked below (they confirm this transcription of the data).

_ASAH_POOR = [
    0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0,
    0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0,
    0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0,
    0,
]  # fmt: skip
_ASAH_S100B = [
    0.13, 0.14, 0.1, 0.04, 0.13, 0.1, 0.47, 0.16, 0.18, 0.1, 0.12, 0.1, 0.44, 0.71,
    0.04, 0.08, 0.49, 0.04, 0.07, 0.33, 0.09, 0.09, 0.07, 0.11, 0.07, 0.17, 0.07, 0.11,
    0.13, 0.19, 0.05, 0.16, 0.41, 0.14, 0.34, 0.35, 0.48, 0.09, 0.96, 0.25, 0.5, 0.46,
    0.16, 0.07, 0.43, 0.45, 0.11, 0.08, 0.09, 0.86, 0.52, 0.08, 0.06, 0.13, 2.07, 0.1,
    0.14, 0.15, 0.07, 0.06, 0.77, 0.05, 0.09, 0.3, 0.03, 0.09, 0.04, 0.23, 0.7, 0.09,
    0.27, 0.71, 0.08, 0.26, 0.08, 0.16, 0.09, 0.13, 0.1, 0.08, 0.11, 0.33, 0.11, 0.28,
    0.07, 0.1, 0.32, 0.22, 0.07, 0.05, 0.24, 0.38, 0.1, 0.15, 0.08, 0.14, 0.1, 0.07,
    0.04, 0.19, 0.56, 0.14, 0.58, 0.32, 0.82, 0.74, 0.15, 0.47, 0.17, 0.44, 0.15, 0.5,
    0.48,
]  # fmt: skip
_ASAH_WFNS = [
    1, 1, 1, 1, 3, 2, 5, 4, 1, 2, 5, 2, 5, 5, 1, 2, 5, 2, 2, 5, 2, 1, 1, 1, 1, 2, 1, 2,
    1, 1, 3, 4, 2, 1, 4, 5, 4, 1, 4, 2, 5, 5, 1, 1, 2, 4, 1, 1, 2, 5, 5, 2, 1, 2, 5, 1,
    2, 2, 2, 1, 5, 1, 1, 2, 5, 2, 1, 4, 5, 2, 4, 4, 1, 4, 1, 2, 1, 4, 2, 1, 2, 3, 2, 4,
    2, 1, 4, 5, 1, 1, 5, 4, 2, 2, 1, 1, 1, 3, 1, 2, 5, 2, 2, 5, 5, 5, 2, 4, 4, 5, 1, 1,
    1,
]  # fmt: skip
_ASAH_NDKA = [
    3.01, 8.54, 8.09, 10.42, 17.4, 12.75, 6.0, 13.2, 15.54, 6.01, 15.96, 17.86, 5.18,
    8.9, 13.41, 20.75, 11.6, 16.11, 32.37, 54.82, 32.41, 49.94, 40.34, 9.47, 6.29,
    12.53, 6.54, 6.3, 80.3, 12.8, 9.8, 9.81, 9.85, 18.21, 5.03, 14.04, 21.93, 8.02,
    7.42, 8.38, 6.59, 9.63, 13.12, 7.96, 14.34, 41.43, 7.63, 7.06, 12.59, 13.56, 3.87,
    9.44, 7.66, 12.98, 419.19, 27.19, 22.27, 9.95, 21.22, 11.73, 10.4, 58.83, 6.39,
    11.09, 12.22, 13.67, 17.21, 22.63, 12.9, 9.7, 21.57, 8.23, 72.57, 15.54, 10.51,
    10.6, 14.57, 5.19, 9.63, 4.61, 21.48, 17.3, 12.71, 9.44, 11.07, 19.46, 10.83, 5.37,
    11.97, 7.75, 9.83, 10.55, 28.49, 8.53, 12.57, 12.9, 46.83, 11.68, 12.67, 9.01, 9.57,
    34.06, 11.72, 14.26, 47.61, 11.67, 24.58, 10.33, 13.87, 15.89, 22.43, 6.79, 13.45,
]  # fmt: skip

# First DeLong placements of pROC's helper-deLongPlacementsCpp-expected.R ("forward" direction):
# X for the Poor patients (V10), Y for the Good ones (V01), in data order.
_PROC_PLACEMENTS = {
    "s100b": (
        [0.5625, 0.4375, 0.715277777777778, 0.541666666666667, 0.902777777777778, 1, 0.972222222222222],
        [0.707317073170732, 0.670731707317073, 0.804878048780488, 0.975609756097561, 0.341463414634146],
    ),
    "wfns": (
        [0.8125, 0.652777777777778, 0.888888888888889, 0.972222222222222, 0.972222222222222],
        [0.975609756097561, 0.975609756097561, 0.975609756097561, 0.975609756097561, 0.219512195121951],
    ),
    "ndka": (
        [0.805555555555556, 0.625, 0.680555555555556, 0.763888888888889, 0.0416666666666667],
        [1, 0.829268292682927, 0.878048780487805, 0.707317073170732, 0.902439024390244],
    ),
}


@pytest.fixture(scope="module")
def asah():
    y = np.array(_ASAH_POOR, dtype=bool)
    assert (y.size, int(y.sum())) == (113, 41)
    return y, {"s100b": np.array(_ASAH_S100B), "wfns": np.array(_ASAH_WFNS, float), "ndka": np.array(_ASAH_NDKA)}


def test_asah_placements_match_proc(asah):
    from esoct.evaluate.roc import _structural_components

    y, markers = asah
    for name, (x_ref, y_ref) in _PROC_PLACEMENTS.items():
        v10, v01 = _structural_components(y, markers[name][None, :])
        np.testing.assert_allclose(v10[0, : len(x_ref)], x_ref, rtol=0, atol=1e-14)
        np.testing.assert_allclose(v01[0, : len(y_ref)], y_ref, rtol=0, atol=1e-14)


def test_asah_aucs_variances_and_covariances_match_proc(asah):
    y, m = asah
    aucs, cov = delong_covariance(y, m["s100b"], m["wfns"], m["ndka"])
    np.testing.assert_allclose(aucs, [0.731368563685637, 0.823678861788618, 0.611957994579946], rtol=1e-13)
    np.testing.assert_allclose(np.diag(cov), [0.00266868245717244, 0.00146991470882363, 0.0031908105493913], rtol=1e-12)
    assert cov[0, 1] == pytest.approx(0.00119615567376754, rel=1e-12)
    assert cov[1, 2] == pytest.approx(-0.000532967856762438, rel=1e-12)
    assert cov[2, 0] == pytest.approx(-0.000756164938056579, rel=1e-12)


@pytest.mark.parametrize(
    ("a", "b", "z", "p", "low", "high"),
    [
        ("wfns", "s100b", 2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
        ("wfns", "ndka", 2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
        ("ndka", "s100b", -1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094),
    ],
)
def test_paired_delong_test_reproduces_proc_roc_test_on_asah(asah, a, b, z, p, low, high):
    y, m = asah
    result = delong_test(y, m[a], m[b])
    assert result.z == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(p, rel=1e-11)
    assert (result.difference.low, result.difference.high) == pytest.approx((low, high), rel=1e-11)
    auc_a, auc_b, z_b, p_b = delong_test(y, m[b], m[a])  # unpacks as (auc_a, auc_b, z, p)
    assert (z_b, p_b) == pytest.approx((-z, p), rel=1e-12)
    assert auc_a - auc_b == pytest.approx(-result.difference.estimate, abs=1e-15)


def test_identical_curves_give_z_0_and_p_1(asah):
    y, m = asah
    result = delong_test(y, m["wfns"], m["wfns"])
    assert isinstance(result, DeLongTest)
    assert (result.z, result.p_value) == (0.0, 1.0)
    # a monotone transform keeps the ranking: same AUC and components, again z = 0
    assert delong_test(y, m["s100b"], np.log(m["s100b"])).p_value == 1.0


def test_delong_ci_matches_proc_ci_auc_on_asah(asah):
    y, m = asah
    ci = auc_ci(y, m["ndka"])
    assert (ci.low, ci.estimate, ci.high) == pytest.approx(
        (0.501244999271703, 0.611957994579946, 0.722670989888189), rel=1e-12
    )
    assert (ci.method, ci.level) == ("delong", 0.95)
    assert str(ci) == "0.612 (0.501-0.723)"


# --------------------------------------------------------------------------- references on simulated data


def _slow_delong(y, scores):
    """Direct O(m n) DeLong from the kernel psi(x, z) = [x > z] + [x = z] / 2 (DeLong et al. 1988)."""
    pos, neg = scores[:, y], scores[:, ~y]
    v10 = np.empty(pos.shape)
    v01 = np.empty(neg.shape)
    for k in range(scores.shape[0]):
        psi = (pos[k][:, None] > neg[k][None, :]) + 0.5 * (pos[k][:, None] == neg[k][None, :])
        v10[k] = psi.mean(axis=1)
        v01[k] = psi.mean(axis=0)
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return v10.mean(axis=1), s10 / pos.shape[1] + s01 / neg.shape[1]


def _tied_scores(seed, n=300):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.35
    a = np.round(y * 0.8 + rng.normal(size=n), 1)  # rounding makes many ties within and across classes
    b = np.round(0.6 * a + rng.normal(0, 0.8, n), 1)
    c = rng.integers(0, 4, n).astype(float)
    return y, np.vstack([a, b, c])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_sklearn_and_delong_equals_the_slow_direct_computation(seed):
    y, scores = _tied_scores(seed)
    aucs, cov = delong_covariance(y, *scores)
    ref_aucs, ref_cov = _slow_delong(y, scores)
    for k in range(3):
        assert aucs[k] == pytest.approx(roc_auc_score(y, scores[k]), abs=1e-12)
    np.testing.assert_allclose(aucs, ref_aucs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=0, atol=1e-12)
    auc, var = delong_auc(y.astype(int), scores[0])
    assert (auc, var) == pytest.approx((ref_aucs[0], ref_cov[0, 0]), abs=1e-12)


def test_batch_auc_equals_sklearn_on_each_row():
    y, scores = _tied_scores(3, n=120)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 120, size=(25, 120))
    got = batch_auc(y[idx], scores[0][idx])
    want = [roc_auc_score(y[i], scores[0][i]) for i in idx]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.isnan(batch_auc(np.zeros((1, 5), bool), np.arange(5.0)[None]))[0]


def test_delong_variance_agrees_with_the_bootstrap_variance_on_a_large_sample():
    # n = 2000 (30% positive), 4000 stratified resamples: the Monte Carlo error of a bootstrap
    # variance is about sqrt(2/B) = 2.2%; the two must agree within 10%.
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.3
    s = y + rng.normal(size=2000)
    _, var = delong_auc(y, s)
    ci = auc_ci(y, s, method="bootstrap", n_resamples=4000, seed=0)
    boot_var = np.var(ci.replicates, ddof=1)
    assert abs(boot_var / var - 1) < 0.10
    # and the two 95% intervals agree to a small fraction of their width
    delong = auc_ci(y, s)
    assert abs(ci.low - delong.low) < 0.1 * (delong.high - delong.low)
    assert abs(ci.high - delong.high) < 0.1 * (delong.high - delong.low)
    assert ci.n_failed == 0 and ci.method == "percentile"


def test_delong_ci_is_clipped_and_a_perfect_score_warns():
    y = np.array([0, 0, 0, 1, 1, 1])
    with pytest.warns(RuntimeWarning, match="variance of the AUC is 0"):
        ci = auc_ci(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert (ci.estimate, ci.low, ci.high) == (1.0, 1.0, 1.0)
    ci = auc_ci([0, 0, 0, 1, 1, 1, 0, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9, 0.85, 0.15])
    assert 0.0 <= ci.low < ci.estimate < ci.high <= 1.0


def test_bootstrap_auc_ci_bca_runs_and_is_seeded():
    y, scores = _tied_scores(4, n=200)
    a = auc_ci(y, scores[0], method="bootstrap", n_resamples=300, seed=1, bootstrap_method="bca")
    b = auc_ci(y, scores[0], method="bootstrap", n_resamples=300, seed=1, bootstrap_method="bca")
    assert a == b and a.method == "bca" and a.low < a.estimate < a.high


# --------------------------------------------------------------------------- one-vs-rest


def _four_classes(seed=0, n=400):
    rng = np.random.default_rng(seed)
    labels = np.array(["T1", "T2", "T3", "T4"])
    code = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4)) + 1.2 * np.eye(4)[code]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels[code], proba


def test_ovr_auc_per_class_and_macro_equal_sklearn():
    y, proba = _four_classes()
    result = ovr_auc(y, proba, n_resamples=300)
    assert result.classes == ("T1", "T2", "T3", "T4")
    for j, c in enumerate(result.classes):
        assert result.per_class[c].estimate == pytest.approx(roc_auc_score(y == c, proba[:, j]), abs=1e-12)
        assert result.per_class[c].method == "delong"
    macro = roc_auc_score(y, proba, multi_class="ovr", average="macro")
    assert result.macro.estimate == pytest.approx(macro, abs=1e-12)
    assert result.macro.low < macro < result.macro.high and result.macro.n_failed == 0
    table = result.table()
    assert list(table["class"]) == ["T1", "T2", "T3", "T4", "macro"]
    assert table["n"].iloc[-1] == 400 and table["n"].iloc[:4].sum() == 400


def test_ovr_auc_column_order_follows_classes():
    y, proba = _four_classes(1)
    reordered = ovr_auc(y, proba[:, ::-1], classes=["T4", "T3", "T2", "T1"], n_resamples=50)
    plain = ovr_auc(y, proba, n_resamples=50)
    for c in ("T1", "T2", "T3", "T4"):
        assert reordered.per_class[c].estimate == plain.per_class[c].estimate


def test_ovr_auc_bad_input():
    y, proba = _four_classes(2, n=60)
    with pytest.raises(InputError, match="4 columns but there are 3 classes"):
        ovr_auc(y, proba, classes=["T1", "T2", "T3"])
    with pytest.raises(InputError, match=r"\['T4'\] have no patients"):
        ovr_auc(np.where(y == "T4", "T3", y), proba, classes=["T1", "T2", "T3", "T4"])
    with pytest.raises(InputError, match=r"3 classes \['T1', 'T2', 'T3'\] in y_true; pass classes="):
        ovr_auc(np.where(y == "T4", "T3", y), proba)
    with pytest.raises(InputError, match="not among the classes"):
        ovr_auc(y, proba, classes=["T1", "T2", "T3", "T5"])
    bad = proba.copy()
    bad[[3, 7], 1] = np.nan
    with pytest.raises(InputError, match="2 of 60 rows of proba hold NaN"):
        ovr_auc(y, bad)
    with pytest.raises(InputError, match="shape \\(n, k\\)"):
        ovr_auc(y, proba[:, 0])


# --------------------------------------------------------------------------- curve and bad input


def test_roc_curve_points_are_sklearns():
    y, scores = _tied_scores(5)
    table = roc_curve_points(y, scores[0])
    fpr, tpr, thr = roc_curve(y, scores[0])
    np.testing.assert_array_equal(table["fpr"], fpr)
    np.testing.assert_array_equal(table["tpr"], tpr)
    np.testing.assert_array_equal(table["threshold"], thr)


def test_bad_input_gets_a_clear_error():
    y = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0, 1])
    s = np.linspace(0, 1, 10)
    with pytest.raises(InputError, match="only one class present in y_true \\(0 positive, 10 negative"):
        delong_auc(np.zeros(10), s)
    with pytest.raises(ValueError, match="only one class"):  # InputError is a ValueError
        auc_ci(np.ones(10), s)
    nan = s.copy()
    nan[[2, 5]] = [np.nan, np.inf]
    with pytest.raises(InputError, match="2 of 10 score value\\(s\\) are NaN or infinite"):
        auc_ci(y, nan)
    with pytest.raises(InputError, match="score has 9 values but y_true has 10"):
        delong_auc(y, s[:9])
    with pytest.raises(InputError, match="0/1 .*1 value\\(s\\) are not"):
        delong_auc(np.r_[y[:9], 2], s)
    with pytest.raises(InputError, match="score 2 has 8 values"):
        delong_test(y, s, s[:8])
    with pytest.raises(InputError, match="method must be one of"):
        auc_ci(y, s, method="hanley")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert delong_auc(y.astype(bool), s)[0] == pytest.approx(roc_auc_score(y, s))
    assert stats.norm.sf(0) == 0.5  # (scipy sanity for the p-value convention)


def test_empty_input_and_bad_alpha():
    with pytest.raises(InputError, match="y_true is empty"):
        delong_auc([], [])
    with pytest.raises(InputError, match="alpha"):
        delong_test([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], alpha=0)
