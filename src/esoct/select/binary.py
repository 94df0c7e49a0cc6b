"""Selection for a binary target (e.g. lymph-node metastasis): LASSO logistic and random-forest importance."""

from __future__ import annotations

import numpy as np
import sklearn
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import SelectorMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from esoct.errors import InputError
from esoct.select.correlation import _feature_names


def binary_target(y, n_samples: int) -> np.ndarray:
    """``y`` as a 0/1 integer array (1: the larger label), checked to have two classes and ``n_samples`` values."""
    y, classes = _class_target(y, n_samples)
    if len(classes) != 2:
        raise InputError(f"a binary target with two classes is needed, got classes {classes.tolist()[:10]}")
    return (y == classes[1]).astype(int)


def _class_target(y, n_samples: int):
    if y is None:
        raise InputError("this selector requires y to be passed, but the target y is None")
    y = np.asarray(y).ravel()
    if len(y) != n_samples:
        raise InputError(f"y has {len(y)} values but X has {n_samples} rows")
    classes = np.unique(y)
    if len(classes) < 2:
        raise InputError(f"only one class in y ({classes.tolist()}): at least two classes are needed")
    return y, classes


def _requires_y(tags):
    tags.target_tags.required = True
    return tags


def _l1_logistic(C: float, random_state: int, max_iter: int) -> LogisticRegression:
    """An l1-penalised logistic regression, spelled for the installed scikit-learn."""
    if tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 8):
        return LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", random_state=random_state, max_iter=max_iter)
    return LogisticRegression(C=C, penalty="l1", solver="liblinear", random_state=random_state, max_iter=max_iter)


class LassoLogisticSelector(SelectorMixin, BaseEstimator):
    """LASSO (l1) logistic regression; keeps the features with a non-zero coefficient.

    The features are standardised inside ``fit``. The inverse penalty ``C`` is chosen
    among ``Cs`` by stratified k-fold cross-validated AUC (standardisation refitted in
    each fold; ties: the smaller ``C``, i.e. fewer features), then the model is refitted
    on all the data ``fit`` was given. On uninformative data the chosen ``C`` may keep
    no feature at all; with ``min_features`` (default 1) the penalty is then relaxed to the next
    larger candidate ``C`` until that many features are kept (``C_`` reports the one used); a fixed ``C`` is never relaxed.

    Parameters
    ----------
    Cs : int or sequence of float, default 20
        Candidate inverse penalties; an int gives that many on a log grid from 1e-3 to 1e2.
    C : float, optional
        Fixed inverse penalty (no cross-validation).
    cv : int, default 5
        Number of stratified folds.
    random_state : int, default 0
        Seed of the folds and the solver.
    max_iter : int, default 1000
    min_features : int, default 1
        Fewest features to keep; 0 allows an empty selection.

    Attributes
    ----------
    C_ : float
        The chosen inverse penalty.
    cv_scores_ : ndarray
        Mean cross-validated AUC of each candidate (empty when ``C`` is fixed).
    coef_ : ndarray of shape (n_features_in_,)
        Coefficients on the standardised features.
    scores_ : ndarray
        ``|coef_|``.
    support_ : ndarray of bool
    selected_features_ : ndarray of str

    References
    ----------
    .. [1] Tibshirani R. Regression shrinkage and selection via the lasso.
       J R Stat Soc B. 1996;58(1):267-288.
    """

    def __init__(self, Cs=20, C: float | None = None, cv: int = 5, random_state: int = 0, max_iter: int = 1000,
                 min_features: int = 1):
        self.Cs = Cs
        self.C = C
        self.cv = cv
        self.random_state = random_state
        self.max_iter = max_iter
        self.min_features = min_features

    def fit(self, X, y):
        """Choose ``C`` (unless fixed), fit, and keep the non-zero coefficients.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Binary target.

        Returns
        -------
        self
        """
        values = validate_data(self, X, dtype=float)
        target = binary_target(y, len(values))
        candidates = self._candidates()
        self.cv_scores_ = np.array([]) if self.C is not None else self._cross_validated_auc(values, target, candidates)
        self.C_ = float(self.C) if self.C is not None else float(candidates[int(np.argmax(self.cv_scores_))])
        scaled = StandardScaler().fit_transform(values)
        larger = [float(c) for c in candidates if c > self.C_] if self.C is None else []
        while True:
            model = _l1_logistic(self.C_, self.random_state, self.max_iter).fit(scaled, target)
            if np.count_nonzero(model.coef_) >= min(self.min_features, values.shape[1]) or not larger:
                break
            self.C_ = larger.pop(0)  # relax the penalty until enough features survive
        self.coef_ = model.coef_.ravel()
        self.scores_ = np.abs(self.coef_)
        self.support_ = self.coef_ != 0
        self.selected_features_ = _feature_names(self)[self.support_]
        return self

    def _candidates(self) -> np.ndarray:
        if np.isscalar(self.Cs):
            return np.logspace(-3, 2, int(self.Cs))
        return np.sort(np.asarray(self.Cs, dtype=float))

    def _cross_validated_auc(self, values, target, candidates) -> np.ndarray:
        folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state).split(values, target)
        scores = np.zeros((self.cv, len(candidates)))
        for f, (train, test) in enumerate(folds):
            scaler = StandardScaler().fit(values[train])
            x_train, x_test = scaler.transform(values[train]), scaler.transform(values[test])
            for c, C in enumerate(candidates):
                model = _l1_logistic(C, self.random_state, self.max_iter).fit(x_train, target[train])
                scores[f, c] = roc_auc_score(target[test], model.decision_function(x_test))
        return scores.mean(axis=0)

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):
        return _requires_y(super().__sklearn_tags__())


class RandomForestSelector(SelectorMixin, BaseEstimator):
    """Random-forest importance selection: the ``n_features`` most important features,
    or those with importance at least ``threshold``.

    Made for a binary target (lymph-node metastasis) but any class target works
    (e.g. T1..T4).

    Importance is the mean decrease in impurity (Gini) of a seeded
    :class:`~sklearn.ensemble.RandomForestClassifier`; ties in the ranking are broken by
    column order.

    Parameters
    ----------
    n_features : int, optional
        Number of features to keep; when given, ``threshold`` is ignored.
    threshold : float or "mean", default "mean"
        Keep features with importance >= threshold ("mean": the mean importance).
    n_estimators : int, default 500
    max_features : int, float or "sqrt", default "sqrt"
        Features tried at each split.
    min_samples_leaf : int, default 1
    random_state : int, default 0
    n_jobs : int, optional

    Attributes
    ----------
    scores_ : ndarray of shape (n_features_in_,)
        Importance of each feature.
    support_ : ndarray of bool
    selected_features_ : ndarray of str

    References
    ----------
    .. [1] Breiman L. Random forests. Mach Learn. 2001;45(1):5-32.
    """

    def __init__(self, n_features: int | None = None, threshold="mean", n_estimators: int = 500,
                 max_features="sqrt", min_samples_leaf: int = 1, random_state: int = 0, n_jobs: int | None = None):
        self.n_features = n_features
        self.threshold = threshold
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y):
        """Fit the forest and keep the most important features.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class target (binary or more classes).

        Returns
        -------
        self
        """
        values = validate_data(self, X, dtype=float)
        target, _ = _class_target(y, len(values))
        forest = RandomForestClassifier(
            n_estimators=self.n_estimators, max_features=self.max_features,
            min_samples_leaf=self.min_samples_leaf, random_state=self.random_state, n_jobs=self.n_jobs,
        ).fit(values, target)
        self.scores_ = forest.feature_importances_
        self.support_ = self._support(self.scores_)
        self.selected_features_ = _feature_names(self)[self.support_]
        return self

    def _support(self, importance: np.ndarray) -> np.ndarray:
        support = np.zeros(len(importance), dtype=bool)
        if self.n_features is not None:
            if not 1 <= self.n_features <= len(importance):
                raise InputError(f"n_features must lie in [1, {len(importance)}], got {self.n_features}")
            support[np.argsort(-importance, kind="stable")[: self.n_features]] = True
            return support
        cut = importance.mean() if self.threshold == "mean" else float(self.threshold)
        return importance >= cut

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):
        return _requires_y(super().__sklearn_tags__())
