"""Selection inside the training folds: noise gives AUC ~0.5; selecting on all data first does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline

from esoct.errors import InputError
from esoct.select.binary import LassoLogisticSelector, RandomForestSelector
from esoct.select.validation import cross_validated_auc


def pure_noise(n=100, p=2000, seed=0):
    """Features and a binary target that are independent by construction."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"wavelet_f{i}" for i in range(p)],
                     index=[f"P{i:03d}" for i in range(n)])
    return X, rng.integers(0, 2, size=n)


@pytest.mark.parametrize(
    "selector",
    [RandomForestSelector(n_features=20, n_estimators=200), LassoLogisticSelector(C=0.1)],
    ids=["forest-top20", "lasso"],
)
def test_selection_inside_folds_is_honest_and_selection_on_all_data_is_optimistic(selector):
    X, y = pure_noise()
    pipe = Pipeline([("select", selector), ("clf", LogisticRegression(max_iter=1000))])
    honest = cross_validated_auc(pipe, X, y, cv=5, seed=0)
    assert abs(honest.mean_auc - 0.5) < 0.12

    X_selected = selector.fit(X, y).transform(X)  # the mistake: selection sees the test folds
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    leaky = cross_val_score(LogisticRegression(max_iter=1000), X_selected, y, cv=folds, scoring="roc_auc")
    assert leaky.mean() > 0.75


def test_cross_validated_auc_keeps_a_patients_rows_together():
    rng = np.random.default_rng(3)
    patients = np.repeat([f"P{i:02d}" for i in range(40)], 2)  # a pre and a post row each
    lnm = np.repeat(rng.integers(0, 2, 40), 2)
    X = pd.DataFrame(rng.normal(size=(80, 5)) + lnm[:, None], index=patients + np.tile(["_pre", "_post"], 40))
    pipe = Pipeline([("select", RandomForestSelector(n_features=3, n_estimators=50)), ("clf", LogisticRegression())])
    result = cross_validated_auc(pipe, X, lnm, groups=patients, cv=4, seed=1)
    assert len(result.fold_aucs) == 4 and result.mean_auc > 0.8
    folds_of_patient = pd.Series(result.fold).groupby(patients).nunique()
    assert (folds_of_patient == 1).all()
    assert list(result.oof.index) == list(X.index) and result.oof.notna().all()
    again = cross_validated_auc(pipe, X, lnm, groups=patients, cv=4, seed=1)
    np.testing.assert_array_equal(result.oof, again.oof)


def test_cross_validated_auc_needs_a_binary_target():
    X, _ = pure_noise(n=30, p=5)
    with pytest.raises(InputError, match="binary y"):
        cross_validated_auc(LogisticRegression(), X, np.arange(30) % 3)
