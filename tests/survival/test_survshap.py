"""SurvSHAP(t) through the survshap package: the informative feature ranks first, curves add up to the prediction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sksurv")
pytest.importorskip("survshap")

from sksurv.util import Surv  # noqa: E402

from esoct.errors import InputError  # noqa: E402
from esoct.explain.survshap import survshap_explain  # noqa: E402
from esoct.survival.cox import CoxPH  # noqa: E402
from esoct.survival.forest import paper_rsf  # noqa: E402


@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(0)
    n = 150
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["noise_a", "signal", "noise_b"])
    t = rng.exponential(20.0 * np.exp(-1.5 * X["signal"]))
    c = rng.uniform(5.0, 60.0, n)
    y = Surv.from_arrays(t <= c, np.minimum(t, c))
    return X, y


def test_informative_feature_ranks_first_exact_kernel(simulated):
    X, y = simulated
    rsf = paper_rsf(n_estimators=20).fit(X, y)
    times = np.array([5.0, 10.0, 20.0, 30.0])
    explain = X.iloc[100:106].set_index(pd.Index([f"P{i}" for i in range(6)], name="patient_id"))
    res = survshap_explain(rsf, X.iloc[:20], explain, times=times, y_background=y[:20])
    assert res.method == "kernel"
    assert res.importance["feature"].iloc[0] == "signal"
    assert res.importance["importance"].is_monotonic_decreasing
    assert res.curves.shape == (6 * 3 * 4, 4)
    assert list(res.curves.columns) == ["patient", "feature", "time", "value"]
    assert res.curves["patient"].iloc[0] == "P0" and list(res.over_time.columns) == list(times)
    # local accuracy of exact Shapley values: contributions add up to prediction - background mean
    total = res.curves.groupby(["patient", "time"], sort=False)["value"].sum().unstack()
    gap = res.prediction.to_numpy() - res.baseline
    np.testing.assert_allclose(total.loc[res.prediction.index].to_numpy(), gap, atol=1e-5)
    expected = np.vstack([f(times) for f in rsf.predict_survival_function(explain)])
    np.testing.assert_allclose(res.prediction.to_numpy(), expected)


def test_sampling_method_is_seeded_and_restores_numpy_state(simulated):
    X, y = simulated
    cox = CoxPH().fit(X, y)
    state = np.random.get_state()[1].copy()
    kwargs = {"times": [10.0, 20.0], "method": "sampling", "n_permutations": 3, "random_state": 1}
    a = survshap_explain(cox, X.iloc[:15], X.iloc[50:53], **kwargs)
    b = survshap_explain(cox, X.iloc[:15], X.iloc[50:53], **kwargs)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    pd.testing.assert_frame_equal(a.curves, b.curves)
    assert a.importance["feature"].iloc[0] == "signal"
    with pytest.raises(InputError, match="same columns"):
        survshap_explain(cox, X.iloc[:15], X.iloc[50:53, :2])
