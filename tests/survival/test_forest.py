"""The paper's random survival forest: documented settings, mtry capping, scikit-learn contract, GBSG2 accuracy."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sksurv")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sksurv.column import encode_categorical  # noqa: E402
from sksurv.datasets import load_gbsg2, load_veterans_lung_cancer  # noqa: E402

from esoct.survival.forest import PaperRandomSurvivalForest, nodesize_params, paper_rsf  # noqa: E402


@pytest.fixture(scope="module")
def gbsg2():
    X, y = load_gbsg2()
    return encode_categorical(X), y


def test_paper_settings():
    rsf = paper_rsf()
    p = rsf.get_params()
    assert isinstance(rsf, PaperRandomSurvivalForest)
    assert p["n_estimators"] == 400
    assert p["max_features"] == 4
    # randomForestSRC nodesize = 10: split only nodes of >= 2 * 10, daughters non-empty
    assert p["min_samples_split"] == 20 and p["min_samples_leaf"] == 1
    assert nodesize_params(10) == {"min_samples_split": 20, "min_samples_leaf": 1}
    assert p["bootstrap"] is True
    assert p["random_state"] == 0
    assert paper_rsf(random_state=3, n_estimators=50).get_params()["n_estimators"] == 50
    with pytest.raises(ValueError, match="positive integer"):
        nodesize_params(0)


def test_clone_and_params_roundtrip():
    rsf = paper_rsf(n_estimators=7)
    twin = clone(rsf)
    assert twin.get_params() == rsf.get_params()
    assert type(twin) is PaperRandomSurvivalForest


def test_max_features_capped_at_n_features():
    X, y = load_veterans_lung_cancer()
    X = X[["Age_in_years", "Karnofsky_score", "Months_from_Diagnosis"]]  # 3 features < mtry 4
    rsf = paper_rsf(n_estimators=5).fit(X, y)
    assert rsf.max_features_used_ == 3
    assert rsf.get_params()["max_features"] == 4  # the constructor argument is untouched
    assert all(t.max_features_ == 3 for t in rsf.estimators_)
    assert np.isfinite(rsf.predict(X)).all()


def test_same_forest_for_any_n_jobs(gbsg2):
    X, y = gbsg2
    one = paper_rsf(n_estimators=8, n_jobs=1).fit(X, y)
    two = paper_rsf(n_estimators=8, n_jobs=2).fit(X, y)
    for t1, t2 in zip(one.estimators_, two.estimators_):
        np.testing.assert_array_equal(t1.tree_.threshold, t2.tree_.threshold)
        np.testing.assert_array_equal(t1.tree_.feature, t2.tree_.feature)
    # threads only change the order of the ensemble sum
    np.testing.assert_allclose(one.predict(X.iloc[:50]), two.predict(X.iloc[:50]), rtol=1e-12)


def test_beats_chance_on_gbsg2(gbsg2):
    X, y = gbsg2
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y["cens"])
    rsf = paper_rsf(n_estimators=50, n_jobs=2).fit(Xtr, ytr)
    c = rsf.score(Xte, yte)
    assert c > 0.6, c
