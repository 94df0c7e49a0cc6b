"""Correlation filter: of every pair of features with |r| above a threshold, keep one."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from esoct.errors import InputError

METHODS = ("pearson", "spearman")


def abs_correlation(X: np.ndarray, method: str = "pearson") -> np.ndarray:
    """Absolute correlation matrix of the columns of ``X``, 0 on the diagonal.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Finite values.
    method : {"pearson", "spearman"}, default "pearson"
        Spearman is Pearson on the column ranks (average ranks for ties).

    Returns
    -------
    ndarray of shape (n_features, n_features)
        ``|r|``; a constant column has correlation 0 with every other column.
    """
    if method not in METHODS:
        raise InputError(f"unknown correlation method {method!r}; choose one of {', '.join(METHODS)}")
    values = rankdata(X, axis=0) if method == "spearman" else np.asarray(X, dtype=float)
    centred = values - values.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    scaled = np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)
    corr = np.abs(scaled.T @ scaled)
    np.fill_diagonal(corr, 0.0)
    return np.clip(corr, 0.0, 1.0)


def correlated_to_drop(corr: np.ndarray, threshold: float) -> np.ndarray:
    """Mask of the features to drop so that no pair with ``corr > threshold`` remains.

    Pairs are resolved from the most to the least correlated (ties: the pair whose first,
    then second, column comes first). For a pair whose two features are both still kept,
    the one with the larger mean absolute correlation to the other still-kept features is
    dropped (ties: the later column). A pair of which one feature is already dropped
    needs nothing. This is caret's ``findCorrelation(exact = TRUE)`` rule.

    Parameters
    ----------
    corr : ndarray of shape (p, p)
        Symmetric absolute correlations, 0 on the diagonal.
    threshold : float
        Pairs with ``corr > threshold`` are resolved.

    Returns
    -------
    ndarray of bool of shape (p,)
        True for the features to drop.
    """
    p = corr.shape[0]
    rows, cols = np.nonzero(np.triu(corr > threshold, k=1))
    order = np.lexsort((cols, rows, -corr[rows, cols]))
    kept = np.ones(p, dtype=bool)
    sums = corr.sum(axis=0)  # sum of |r| to the kept features
    for i, j in zip(rows[order], cols[order]):
        if not (kept[i] and kept[j]):
            continue
        drop = i if sums[i] > sums[j] else j  # same denominator (kept - 1) for both
        kept[drop] = False
        sums -= corr[:, drop]
    return ~kept


class CorrelationFilter(SelectorMixin, BaseEstimator):
    """Keep one feature of every pair whose absolute correlation exceeds ``threshold``.

    Rule (see :func:`correlated_to_drop`): pairs are taken from the most correlated down;
    of a pair whose two features are both still kept, the one with the larger mean
    absolute correlation to all other still-kept features is dropped, ties dropping the
    later column. Afterwards no kept pair has ``|r| > threshold``, and every dropped
    feature is correlated above ``threshold`` with a feature that was kept when it was
    dropped. The target is not used.

    Parameters
    ----------
    threshold : float, default 0.8
        Pairs with ``|r| > threshold`` are resolved.
    method : {"pearson", "spearman"}, default "pearson"
        Correlation coefficient.

    Attributes
    ----------
    scores_ : ndarray of shape (n_features_in_,)
        Each feature's largest absolute correlation with another feature.
    support_ : ndarray of bool
        Mask of the kept features.
    selected_features_ : ndarray of str
        Names of the kept features.
    """

    def __init__(self, threshold: float = 0.8, method: str = "pearson"):
        self.threshold = threshold
        self.method = method

    def fit(self, X, y=None):
        """Find the features to keep.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        values = validate_data(self, X, dtype=float)
        if not 0 <= self.threshold <= 1:
            raise InputError(f"correlation threshold must lie in [0, 1], got {self.threshold}")
        corr = abs_correlation(values, self.method)
        self.scores_ = corr.max(axis=0) if corr.size else np.zeros(0)
        self.support_ = ~correlated_to_drop(corr, self.threshold)
        self.selected_features_ = _feature_names(self)[self.support_]
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_


def _feature_names(estimator) -> np.ndarray:
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return np.asarray(names, dtype=object)
    return np.array([f"x{i}" for i in range(estimator.n_features_in_)], dtype=object)
