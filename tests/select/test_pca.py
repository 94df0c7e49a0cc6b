"""PCA of deep features with named outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from esoct.errors import InputError
from esoct.select.pca import PCAFeatures


def deep_features(n=80, p=512, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 5))
    X = latent @ rng.normal(size=(5, p)) + 0.5 * rng.normal(size=(n, p)) + rng.uniform(0, 10, size=p)
    return pd.DataFrame(X, columns=[f"dl_pre_{i}" for i in range(p)]), (latent[:, 0] > 0).astype(int)


def test_pca_equals_standardised_sklearn_pca_and_names_its_outputs():
    X, _ = deep_features()
    pca = PCAFeatures(n_components=10, prefix="dl_pre_pca_").set_output(transform="pandas")
    out = pca.fit_transform(X)
    assert list(out.columns) == [f"dl_pre_pca_{i}" for i in range(1, 11)]
    assert list(out.index) == list(X.index)
    reference = PCA(10, svd_solver="full").fit_transform(StandardScaler().fit_transform(X))
    np.testing.assert_allclose(out.to_numpy(), reference, atol=1e-8)
    assert pca.explained_variance_ratio_[:5].sum() > 0.8  # five latent factors
    np.testing.assert_allclose(PCAFeatures().fit(X).transform(X), PCAFeatures().fit(X).transform(X))


def test_pca_in_pipeline_with_clone_and_cross_val_score():
    X, y = deep_features()
    pipe = Pipeline([("pca", PCAFeatures(n_components=5)), ("clf", LogisticRegression())])
    assert cross_val_score(clone(pipe), X, y, cv=4, scoring="roc_auc").mean() > 0.8
    on_arrays = PCAFeatures(n_components=3).fit(X.to_numpy())
    assert list(on_arrays.get_feature_names_out()) == ["dl_pca_1", "dl_pca_2", "dl_pca_3"]


def test_pca_too_many_components():
    X, _ = deep_features(n=8, p=20)
    with pytest.raises(InputError, match="allow at most 8"):
        PCAFeatures(n_components=10).fit(X)
