"""Correlation filter: one feature kept of each correlated pair, none above the threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from esoct.errors import InputError
from esoct.select.correlation import CorrelationFilter, abs_correlation


def paired_features(n=200, pairs=6, seed=0):
    """``pairs`` independent base signals, each measured twice (r about 0.99), plus 4 loners."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, pairs))
    twins = base + 0.1 * rng.normal(size=(n, pairs))
    loners = rng.normal(size=(n, 4))
    columns = [f"f{i}" for i in range(pairs)] + [f"f{i}_twin" for i in range(pairs)] + [f"solo{i}" for i in range(4)]
    return pd.DataFrame(np.hstack([base, twins, loners]), columns=columns)


def test_keeps_exactly_one_of_each_pair_and_every_loner():
    X = paired_features()
    sel = CorrelationFilter(threshold=0.8).fit(X)
    kept = set(sel.selected_features_)
    for i in range(6):
        assert len(kept & {f"f{i}", f"f{i}_twin"}) == 1
    assert {f"solo{i}" for i in range(4)} <= kept
    assert len(kept) == 10


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_no_pair_above_threshold_remains_in_a_correlated_block(method):
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(150, 3))
    X = latent @ rng.normal(size=(3, 40)) + 0.4 * rng.normal(size=(150, 40))  # many overlapping pairs
    sel = CorrelationFilter(threshold=0.8, method=method).fit(X)
    kept = sel.transform(X)
    corr = abs_correlation(kept, method)
    assert corr.max() <= 0.8
    dropped = np.flatnonzero(~sel.support_)
    assert len(dropped) > 0
    full = abs_correlation(X, method)
    assert (full[dropped].max(axis=1) > 0.8).all()  # nothing is dropped without a reason


def test_rule_drops_the_feature_more_correlated_with_the_rest_ties_by_column_order():
    rng = np.random.default_rng(2)
    a = rng.normal(size=300)
    c = rng.normal(size=300)
    hub = a + 0.1 * rng.normal(size=300) + 0.45 * c  # correlated with a (>0.8) and with c
    X = pd.DataFrame({"hub": hub, "a": a, "c": c})  # hub first: column order alone would keep it
    assert list(CorrelationFilter(0.8).fit(X).selected_features_) == ["a", "c"]
    twins = pd.DataFrame({"x": a, "y": a.copy(), "z": c})  # exact tie: the later column goes
    assert list(CorrelationFilter(0.8).fit(twins).selected_features_) == ["x", "z"]


def test_pandas_output_pipeline_clone_and_cross_val_score():
    X = paired_features()
    y = (X["f0"] > 0).astype(int)
    sel = CorrelationFilter().set_output(transform="pandas")
    out = sel.fit_transform(X)
    assert list(out.columns) == list(sel.get_feature_names_out()) == list(sel.selected_features_)
    arr = CorrelationFilter().fit(X.to_numpy())
    assert list(arr.get_feature_names_out()) == list(arr.selected_features_)
    pipe = Pipeline([("corr", CorrelationFilter()), ("clf", LogisticRegression())])
    assert cross_val_score(clone(pipe), X, y, cv=3, scoring="roc_auc").mean() > 0.9


def test_bad_arguments():
    with pytest.raises(InputError, match="unknown correlation method"):
        CorrelationFilter(method="kendall").fit(paired_features())
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        CorrelationFilter(threshold=1.5).fit(paired_features())
