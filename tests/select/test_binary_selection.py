"""LASSO logistic and random-forest selection for a binary target (lymph-node metastasis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from esoct.errors import InputError
from esoct.select.binary import LassoLogisticSelector, RandomForestSelector

INFORMATIVE = ["node_firstorder_Entropy", "node_glcm_Contrast", "node_shape_Sphericity"]


def lnm_table(n=200, p=40, seed=0):
    """A binary LNM target driven by 3 of ``p`` features (logit 1.5 x0 - 1.5 x1 + 1.0 x2)."""
    rng = np.random.default_rng(seed)
    columns = INFORMATIVE + [f"noise_{i}" for i in range(p - 3)]
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=columns, index=[f"P{i:03d}" for i in range(n)])
    logit = 1.5 * X[INFORMATIVE[0]] - 1.5 * X[INFORMATIVE[1]] + 1.0 * X[INFORMATIVE[2]]
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int), index=X.index, name="lnm")
    return X, y


def test_lasso_logistic_keeps_the_informative_features():
    X, y = lnm_table()
    sel = LassoLogisticSelector(cv=5, random_state=0).fit(X, y)
    kept = set(sel.selected_features_)
    assert set(INFORMATIVE) <= kept
    assert len(kept) < 20
    assert sel.C_ in np.logspace(-3, 2, 20) and sel.cv_scores_.max() > 0.8
    fixed = LassoLogisticSelector(C=0.05).fit(X, y)
    assert fixed.cv_scores_.size == 0 and set(fixed.selected_features_) <= kept | set(INFORMATIVE)


def test_random_forest_selects_the_informative_features_reproducibly():
    X, y = lnm_table()
    top = RandomForestSelector(n_features=3, n_estimators=300, random_state=1).fit(X, y)
    assert set(top.selected_features_) == set(INFORMATIVE)
    again = RandomForestSelector(n_features=3, n_estimators=300, random_state=1).fit(X, y)
    np.testing.assert_array_equal(top.scores_, again.scores_)
    by_threshold = RandomForestSelector(threshold=0.05, n_estimators=300, random_state=1).fit(X, y)
    assert set(INFORMATIVE) <= set(by_threshold.selected_features_)
    np.testing.assert_array_equal(by_threshold.support_, by_threshold.scores_ >= 0.05)


@pytest.mark.parametrize(
    "selector",
    [LassoLogisticSelector(Cs=5, cv=3), RandomForestSelector(n_features=5, n_estimators=100)],
    ids=["lasso", "forest"],
)
def test_binary_selectors_in_pipeline_with_clone_and_cross_val_score(selector):
    X, y = lnm_table()
    pipe = Pipeline([("select", selector), ("clf", LogisticRegression())])
    assert cross_val_score(clone(pipe), X, y, cv=3, scoring="roc_auc").mean() > 0.8
    fitted = clone(pipe).set_output(transform="pandas").fit(X, y)
    out = fitted[:-1].transform(X)
    assert list(out.columns) == list(fitted.named_steps["select"].selected_features_)
    on_arrays = clone(selector).fit(X.to_numpy(), y.to_numpy())
    assert all(name.startswith("x") for name in on_arrays.get_feature_names_out())


def test_binary_selectors_reject_a_non_binary_target():
    X, _ = lnm_table(n=30)
    with pytest.raises(InputError, match="two classes"):
        LassoLogisticSelector().fit(X, np.arange(30) % 3)
    with pytest.raises(InputError, match=r"n_features must lie in \[1, 40\]"):
        RandomForestSelector(n_features=50).fit(X, np.arange(30) % 2)


def test_lasso_logistic_relaxes_the_penalty_rather_than_keep_nothing():
    # pure noise: the cross-validated C keeps no feature at all without the floor
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(40, 6)), columns=[f"f{i}" for i in range(6)])
    y = np.tile([0, 1], 20)
    empty = LassoLogisticSelector(Cs=[1e-3, 1e-2, 1e2], cv=3, min_features=0).fit(X, y)
    kept = LassoLogisticSelector(Cs=[1e-3, 1e-2, 1e2], cv=3).fit(X, y)
    assert empty.support_.sum() == 0 and empty.C_ < 1
    assert kept.support_.sum() >= 1 and kept.C_ == 1e2
    fixed = LassoLogisticSelector(C=1e-3).fit(X, y)
    assert fixed.support_.sum() == 0 and fixed.C_ == 1e-3
