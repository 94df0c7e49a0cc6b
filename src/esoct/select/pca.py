"""PCA of standardised deep features with named output columns (dl_pca_1, dl_pca_2, ...)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from esoct.errors import InputError


class PCAFeatures(TransformerMixin, BaseEstimator):
    """Standardise, then project on the first ``n_components`` principal components.

    Used to reduce the 512 deep features of a CNN's global average pool to a few
    components (10 in the longitudinal survival study), fitted on the training fold only.
    Output columns are named ``f"{prefix}{i}"`` for ``i = 1..n_components``. The SVD is
    exact (LAPACK) and component signs are fixed by scikit-learn's ``svd_flip``, so the
    result is deterministic.

    Parameters
    ----------
    n_components : int, default 10
        Number of components; at most ``min(n_samples, n_features)`` of the fitted data.
    prefix : str, default "dl_pca_"
        Prefix of the output column names (e.g. "dl_pre_pca_" and "dl_post_pca_" for
        the pre- and post-treatment features).
    standardize : bool, default True
        Scale every feature to zero mean and unit variance before the PCA.

    Attributes
    ----------
    scaler_ : StandardScaler or None
    pca_ : sklearn.decomposition.PCA
    explained_variance_ratio_ : ndarray of shape (n_components,)
    components_ : ndarray of shape (n_components, n_features_in_)

    References
    ----------
    .. [1] Jolliffe IT, Cadima J. Principal component analysis: a review and recent
       developments. Philos Trans A. 2016;374(2065):20150202.
    """

    def __init__(self, n_components: int = 10, prefix: str = "dl_pca_", standardize: bool = True):
        self.n_components = n_components
        self.prefix = prefix
        self.standardize = standardize

    def fit(self, X, y=None):
        """Fit the scaler and the PCA.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        values = validate_data(self, X, dtype=float)
        limit = min(values.shape)
        if not 1 <= self.n_components <= limit:
            raise InputError(
                f"n_components={self.n_components} but the data ({values.shape[0]} samples x "
                f"{values.shape[1]} features) allow at most {limit}"
            )
        self.scaler_ = StandardScaler().fit(values) if self.standardize else None
        self.pca_ = PCA(n_components=self.n_components, svd_solver="full").fit(self._scaled(values))
        self.explained_variance_ratio_ = self.pca_.explained_variance_ratio_
        self.components_ = self.pca_.components_
        return self

    def transform(self, X):
        """Project ``X`` on the fitted components.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            A DataFrame named by :meth:`get_feature_names_out` under
            ``set_output(transform="pandas")``.
        """
        check_is_fitted(self, "pca_")
        values = validate_data(self, X, dtype=float, reset=False)
        return self.pca_.transform(self._scaled(values))

    def _scaled(self, values: np.ndarray) -> np.ndarray:
        return values if self.scaler_ is None else self.scaler_.transform(values)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Output column names ``prefix1 .. prefixN``.

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self, "pca_")
        return np.array([f"{self.prefix}{i + 1}" for i in range(self.n_components)], dtype=object)
