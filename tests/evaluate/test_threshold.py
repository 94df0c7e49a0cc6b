"""Threshold metrics: counts by hand, Wilson intervals against scipy, Youden's threshold, confusion matrices."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, f1_score

from esoct.errors import InputError
from esoct.evaluate.threshold import confusion, threshold_metrics, wilson_ci, youden_threshold

# 4 positives, 6 negatives; at threshold 0.5: TP 3 (0.9, 0.8, 0.6), FN 1 (0.3), FP 1 (0.7), TN 5.
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
S = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.35, 0.2, 0.1, 0.05])


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 12), (1, 12), (6, 12), (11, 12), (12, 12), (37, 113), (999, 1000)])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_wilson_interval_equals_scipy(k, n, alpha):
    ref = binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="wilson")
    low, high = wilson_ci(k, n, alpha)
    assert float(low) == pytest.approx(ref.low, abs=1e-14)
    assert float(high) == pytest.approx(ref.high, abs=1e-14)


def test_wilson_is_vectorised_and_nan_for_no_trials():
    low, high = wilson_ci([0, 3, 5], [0, 10, 5])
    assert np.isnan(low[0]) and np.isnan(high[0])
    assert high[2] == 1.0 and 0 < low[1] < 0.3 < high[1] < 1


def test_metrics_at_a_threshold_by_hand():
    m = threshold_metrics(Y, S, threshold=0.5, n_resamples=500)
    assert (m.tp, m.fp, m.tn, m.fn) == (3, 1, 5, 1)
    assert m.threshold == 0.5 and m.threshold_source == "given"
    expected = {"accuracy": (8, 10), "sensitivity": (3, 4), "specificity": (5, 6), "ppv": (3, 4), "npv": (5, 6)}
    for name, (k, n) in expected.items():
        ci = getattr(m, name)
        ref = binomtest(k, n).proportion_ci(method="wilson")
        assert ci.estimate == pytest.approx(k / n, abs=1e-15)
        assert (ci.low, ci.high) == pytest.approx((ref.low, ref.high), abs=1e-14)
        assert ci.method == "wilson"
    assert m.f1.estimate == pytest.approx(0.75, abs=1e-15) == f1_score(Y, S >= 0.5)
    assert m.f1.method == "percentile" and m.f1.n_resamples == 500 and m.f1.n_failed == 0
    assert m.f1.low <= m.f1.estimate <= m.f1.high
    table = m.table()
    assert list(table["metric"]) == ["accuracy", "sensitivity", "specificity", "ppv", "npv", "f1"]
    assert m.as_dict()["sensitivity"]["estimate"] == 0.75


def test_score_equal_to_the_threshold_is_positive():
    m = threshold_metrics(Y, S, threshold=0.6, ci=False)
    assert (m.tp, m.fp) == (3, 1)
    assert np.isnan(m.sensitivity.low) and m.sensitivity.method == "none"


def test_f1_interval_is_seeded_and_close_to_a_loop_over_sklearn():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.4
    s = y + rng.normal(size=300)
    a = threshold_metrics(y, s, threshold=0.5, seed=3, n_resamples=400)
    b = threshold_metrics(y, s, threshold=0.5, seed=3, n_resamples=400)
    assert a.f1 == b.f1
    from esoct.evaluate.bootstrap import bootstrap_indices

    idx = bootstrap_indices(300, 400, seed=3, strata=y)
    loop = np.array([f1_score(y[i], s[i] >= 0.5) for i in idx])
    np.testing.assert_allclose(a.f1.replicates, loop, rtol=0, atol=1e-15)


def test_youden_threshold_by_hand_and_by_brute_force():
    # J at 0.6 is 3/4 - 1/6 = 0.583, the maximum (0.8: 0.5, 0.3: 0.5, 0.7: 0.333)
    assert youden_threshold(Y, S) == 0.6
    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.3
    s = np.round(y + rng.normal(size=200), 1)
    j = [np.mean(s[y] >= t) - np.mean(s[~y] >= t) for t in np.unique(s)]
    best = np.unique(s)[np.flatnonzero(np.isclose(j, max(j)))].max()
    assert youden_threshold(y, s) == best


def test_youden_threshold_is_flagged_as_chosen_on_the_same_data():
    m = threshold_metrics(Y, S, threshold="youden", ci=False)
    assert m.threshold == 0.6 and m.threshold_source == "youden"
    # a threshold fixed on training data is passed as a number and applied unchanged
    train_threshold = youden_threshold(Y, S)
    assert threshold_metrics(Y[::-1], S[::-1], threshold=train_threshold, ci=False).threshold_source == "given"


def test_empty_denominator_is_nan_with_a_warning():
    with pytest.warns(RuntimeWarning, match="ppv is undefined .*nobody is called positive"):
        m = threshold_metrics(Y, S, threshold=0.95, n_resamples=50)
    assert np.isnan(m.ppv.estimate) and m.sensitivity.estimate == 0.0 and m.f1.estimate == 0.0


def test_confusion_matrix_equals_sklearn_with_labels():
    rng = np.random.default_rng(0)
    labels = ["T1", "T2", "T3", "T4"]
    y = rng.choice(labels, 80)
    pred = rng.choice(labels[:3], 80)  # T4 never predicted
    table = confusion(y, pred)
    np.testing.assert_array_equal(table.to_numpy(), confusion_matrix(y, pred, labels=labels))
    assert list(table.index) == labels and list(table.columns) == labels
    assert (table.index.name, table.columns.name) == ("true", "predicted")
    reordered = confusion(y, pred, labels=labels[::-1])
    np.testing.assert_array_equal(reordered.to_numpy(), confusion_matrix(y, pred, labels=labels[::-1]))
    binary = confusion(Y, (S >= 0.5).astype(int))
    assert binary.loc[1, 1] == 3 and binary.loc[0, 1] == 1 and binary.loc[1, 0] == 1 and binary.loc[0, 0] == 5


def test_bad_input():
    with pytest.raises(InputError, match="lengths must match"):
        confusion(Y, Y[:5])
    with pytest.raises(InputError, match="only one class"):
        threshold_metrics(np.zeros(10), S)
    with pytest.raises(InputError, match="1 of 10 score value"):
        threshold_metrics(Y, np.r_[S[:9], np.nan])
    with pytest.raises(InputError, match="'youden'"):
        threshold_metrics(Y, S, threshold="best")
    with pytest.raises(InputError, match="finite"):
        threshold_metrics(Y, S, threshold=np.nan)
