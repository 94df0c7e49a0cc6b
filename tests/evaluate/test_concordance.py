"""Harrell's and Uno's C against scikit-survival and lifelines on real survival data, bootstrap, bad input."""

from __future__ import annotations


import numpy as np
import pytest

sksurv_metrics = pytest.importorskip("sksurv.metrics", reason="scikit-survival (esoct[stats]) is not installed")
lifelines_utils = pytest.importorskip("lifelines.utils", reason="lifelines (esoct[stats]) is not installed")

from lifelines.datasets import load_lung, load_rossi
from sksurv.datasets import load_gbsg2, load_veterans_lung_cancer, load_whas500
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from esoct.errors import InputError
from esoct.evaluate.concordance import (
    CI,
    as_surv,
    bootstrap_indices,
    harrell_c,
    harrell_c_ci,
    multiplicity_weights,
    td_c_index_curve,
    uno_c,
)

concordance_index_censored = sksurv_metrics.concordance_index_censored
concordance_index_ipcw = sksurv_metrics.concordance_index_ipcw


def _cox_risk(X, y, columns) -> np.ndarray:
    """Linear predictor of a Cox model on a few numeric columns (a realistic, tie-free risk score)."""
    Xn = X[columns].astype(float)
    return CoxPHSurvivalAnalysis().fit(Xn, y).predict(Xn)


def _dataset(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(event, time, risk) of a real data set shipped with scikit-survival or lifelines."""
    if name == "gbsg2":
        X, y = load_gbsg2()
        return y["cens"], y["time"], _cox_risk(X, y, ["age", "pnodes", "progrec", "estrec", "tsize"])
    if name == "whas500":
        X, y = load_whas500()
        return y["fstat"], y["lenfol"], _cox_risk(X, y, ["age", "bmi", "hr", "diasbp"])
    if name == "veterans-karnofsky":  # integer score: many ties in risk and in time
        X, y = load_veterans_lung_cancer()
        return y["Status"], y["Survival_in_days"], -X["Karnofsky_score"].to_numpy(float)
    if name == "rossi-prio":  # weeks: heavy ties in time; prior convictions: ties in risk
        df = load_rossi()
        return df["arrest"].to_numpy(bool), df["week"].to_numpy(float), df["prio"].to_numpy(float)
    if name == "lung-ecog":
        df = load_lung().dropna(subset=["ph.ecog"])
        return df["status"].to_numpy(bool), df["time"].to_numpy(float), df["ph.ecog"].to_numpy(float)
    raise KeyError(name)


DATASETS = ["gbsg2", "whas500", "veterans-karnofsky", "rossi-prio", "lung-ecog"]


@pytest.mark.parametrize("name", DATASETS)
def test_harrell_equals_sksurv_and_lifelines(name):
    event, time, risk = _dataset(name)
    ours = harrell_c(event, time, risk)
    assert ours == pytest.approx(concordance_index_censored(event, time, risk)[0], abs=1e-12)
    # lifelines takes predicted survival times (-risk) and ties risks exactly
    assert harrell_c(event, time, risk, tied_tol=0.0) == pytest.approx(
        lifelines_utils.concordance_index(time, -risk, event), abs=1e-12
    )


def test_real_data_has_the_ties_the_comparison_needs():
    for name in ("veterans-karnofsky", "rossi-prio", "lung-ecog", "whas500"):
        event, time, risk = _dataset(name)
        assert len(np.unique(time[event])) < event.sum(), name  # tied event times
    event, time, risk = _dataset("rossi-prio")
    assert len(np.unique(risk)) < len(risk) / 10  # heavily tied risks
    tied_event_censored = np.intersect1d(time[event], time[~event])
    assert tied_event_censored.size > 0  # an event and a censoring at the same week


@pytest.mark.parametrize("name", ["veterans-karnofsky", "rossi-prio", "gbsg2"])
def test_fast_bootstrap_equals_sksurv_on_the_same_resamples(name):
    event, time, risk = _dataset(name)
    ci = harrell_c_ci(event, time, risk, n_resamples=150, seed=7)
    indices = bootstrap_indices(len(time), 150, seed=7)
    loop = np.array([concordance_index_censored(event[i], time[i], risk[i])[0] for i in indices])
    np.testing.assert_allclose(ci.replicates, loop, rtol=0, atol=1e-12)


def test_fast_bootstrap_equals_lifelines_on_the_same_resamples():
    event, time, risk = _dataset("rossi-prio")
    ci = harrell_c_ci(event, time, risk, n_resamples=20, seed=3, tied_tol=0.0)
    for b, i in enumerate(bootstrap_indices(len(time), 20, seed=3)):
        assert ci.replicates[b] == pytest.approx(
            lifelines_utils.concordance_index(time[i], -risk[i], event[i]), abs=1e-12
        )


def test_multiplicity_weights_count_each_patient():
    idx = np.array([[0, 0, 2, 3], [1, 1, 1, 1]])
    np.testing.assert_array_equal(multiplicity_weights(idx, 4), [[2, 0, 1, 1], [0, 4, 0, 0]])


def test_ci_contains_estimate_is_seeded_and_narrows_with_n():
    event, time, risk = _dataset("gbsg2")
    full = harrell_c_ci(event, time, risk, n_resamples=500)
    assert full.low < full.estimate < full.high
    assert full.level == 0.95 and full.method == "percentile" and full.n_resamples == 500
    again = harrell_c_ci(event, time, risk, n_resamples=500)
    assert (again.low, again.high) == (full.low, full.high)
    small = harrell_c_ci(event[:170], time[:170], risk[:170], n_resamples=500)
    assert (full.high - full.low) < 0.7 * (small.high - small.low)  # ~1/sqrt(4) of the width


def test_bca_interval():
    event, time, risk = _dataset("veterans-karnofsky")
    bca = harrell_c_ci(event, time, risk, n_resamples=500, method="bca")
    pct = harrell_c_ci(event, time, risk, n_resamples=500)
    assert bca.method == "bca" and bca.low < bca.estimate < bca.high
    assert abs((bca.high - bca.low) - (pct.high - pct.low)) < 0.03
    with pytest.raises(ValueError, match="percentile"):
        harrell_c_ci(event, time, risk, method="normal")


def test_ci_string():
    assert str(CI(0.8123, 0.7741, 0.8509)) == "0.812 (0.774-0.851)"


def _gbsg2_split():
    X, y = load_gbsg2()
    risk = _cox_risk(X, y, ["age", "pnodes", "progrec", "estrec", "tsize"])
    return y[:450], y[450:], risk[450:]


@pytest.mark.parametrize("tau", [None, 1500.0])
def test_uno_equals_sksurv_and_bootstrap_matches_loop(tau):
    train, test, risk = _gbsg2_split()
    ci = uno_c(train, test, risk, tau=tau, n_resamples=100, seed=1)
    assert ci.estimate == pytest.approx(concordance_index_ipcw(train, test, risk, tau=tau)[0], abs=1e-12)
    assert ci.low < ci.estimate < ci.high
    loop = [concordance_index_ipcw(train, test[i], risk[i], tau=tau)[0] for i in bootstrap_indices(len(test), 100, 1)]
    np.testing.assert_allclose(ci.replicates, loop, rtol=0, atol=1e-12)


def test_td_curve_harrell_and_uno_definitions():
    _, y = load_whas500()
    event, time = y["fstat"], y["lenfol"]
    _, _, risk = _dataset("whas500")
    grid = [0.5, 100.0, 365.0, 1000.0, time.max() + 1]
    harrell = td_c_index_curve(y, risk, grid, n_resamples=100)
    assert list(harrell.columns) == ["time", "c_index", "low", "high", "n_events"]
    assert np.isnan(harrell["c_index"].iloc[0]) and harrell["n_events"].iloc[0] == 0  # no event before 0.5 days
    assert harrell["c_index"].iloc[-1] == pytest.approx(harrell_c(event, time, risk), abs=1e-12)
    assert (harrell["low"].iloc[1:] <= harrell["c_index"].iloc[1:]).all()
    uno = td_c_index_curve(y, risk, grid[1:4], survival_train=y, method="uno", n_resamples=100)
    for t, c in zip(grid[1:4], uno["c_index"]):
        assert c == pytest.approx(concordance_index_ipcw(y, y, risk, tau=t)[0], abs=1e-12)


# --------------------------------------------------------------------------- inputs


def test_as_surv_matches_sksurv_layout():
    event, time, _ = _dataset("veterans-karnofsky")
    ours, ref = as_surv(event.astype(int), time), Surv.from_arrays(event, time)
    assert ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize(
    ("event", "time", "risk", "message"),
    [
        ([1, 0, 1], [1.0, -2.0, -3.0], [1, 2, 3], "2 survival time"),
        ([1, 2, 1], [1.0, 2.0, 3.0], [1, 2, 3], "event must be 0/1"),
        ([1, 0, 1], [1.0, 2.0, 3.0], [1, np.nan, 3], "1 risk score"),
        ([1, 0, 1], [1.0, 2.0, 3.0], [np.inf, -np.inf, 3], "2 risk score"),
        ([1, 0, 1], [1.0, np.nan, 3.0], [1, 2, 3], "NaN or infinite"),
        ([0, 0, 0], [1.0, 2.0, 3.0], [1, 2, 3], "no events: C-index undefined"),
        ([1, 0], [1.0, 2.0, 3.0], [1, 2, 3], "same length"),
        ([1, 0, 1], [1.0, 2.0, 3.0], [1, 2], "one score per patient"),
    ],
)
def test_bad_input_raises(event, time, risk, message):
    with pytest.raises(InputError, match=message):
        harrell_c(event, time, risk)
    with pytest.raises(ValueError):
        harrell_c_ci(event, time, risk, n_resamples=10)


def test_no_comparable_pairs_is_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="no comparable pairs"):
        assert np.isnan(harrell_c([0, 0, 1], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]))
    with pytest.warns(RuntimeWarning, match="no comparable pairs"):
        assert np.isnan(harrell_c([1, 1], [2.0, 2.0], [3.0, 2.0]))  # two events at the same time


def test_blockwise_resampling_gives_the_same_replicates(monkeypatch):
    from esoct.evaluate import concordance

    event, time, risk = _dataset("veterans-karnofsky")
    whole = harrell_c_ci(event, time, risk, n_resamples=100, seed=9, method="bca")
    monkeypatch.setattr(concordance, "_CHUNK_CELLS", 1000)  # 7 resamples per block
    blocks = harrell_c_ci(event, time, risk, n_resamples=100, seed=9, method="bca")
    np.testing.assert_array_equal(blocks.replicates, whole.replicates)
    assert (blocks.low, blocks.high) == (whole.low, whole.high)
    stacked = np.concatenate(list(concordance.resample_weights(len(time), 100, 9)))
    np.testing.assert_array_equal(stacked, multiplicity_weights(bootstrap_indices(len(time), 100, 9), len(time)))


def test_resamples_without_pairs_are_dropped_with_a_warning():
    event, time, risk = [1, 0, 0, 0, 0, 0], [1.0, 2, 3, 4, 5, 6], [6.0, 5, 4, 3, 2, 1]
    with pytest.warns(RuntimeWarning, match="bootstrap resamples left the C-index undefined"):
        ci = harrell_c_ci(event, time, risk, n_resamples=200)
    assert np.isnan(ci.replicates).sum() > 0 and ci.low == ci.high == ci.estimate == 1.0
