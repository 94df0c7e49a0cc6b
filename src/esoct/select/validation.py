"""Patient-level cross-validated AUC of a whole pipeline, every data-dependent step refitted in each fold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.utils import _safe_indexing

from esoct.errors import InputError


@dataclass
class CrossValidatedAUC:
    """Result of :func:`cross_validated_auc`.

    Attributes
    ----------
    fold_aucs : ndarray of shape (cv,)
        AUC on each held-out fold.
    mean_auc, std_auc : float
        Mean and standard deviation of ``fold_aucs``.
    pooled_auc : float
        AUC of all out-of-fold predictions together.
    oof : pandas.Series
        Out-of-fold predicted probability (or decision value) of the positive class, one
        per row of ``X`` (indexed like ``X`` when it is a DataFrame).
    fold : ndarray of int
        The fold in which each row was held out.
    """

    fold_aucs: np.ndarray
    mean_auc: float
    std_auc: float
    pooled_auc: float
    oof: pd.Series
    fold: np.ndarray


def cross_validated_auc(pipeline, X, y, groups=None, cv: int = 5, seed: int = 0, fit_params: dict | None = None):
    """Stratified, patient-level k-fold AUC of ``pipeline``, refitted from scratch in each fold.

    A fresh :func:`~sklearn.base.clone` of the whole pipeline (scaling, feature
    selection, PCA and the classifier) is fitted on each training fold only, so nothing
    about the held-out patients leaks into the model. With ``groups`` (e.g. patient ids
    when a patient has a pre- and a post-treatment row) all rows of a patient fall in the
    same fold (:class:`~sklearn.model_selection.StratifiedGroupKFold`).

    Parameters
    ----------
    pipeline : estimator
        A classifier (typically a :class:`~sklearn.pipeline.Pipeline`) with
        ``predict_proba`` or ``decision_function``.
    X : pandas.DataFrame or array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Binary target; the larger label is the positive class.
    groups : array-like of shape (n_samples,), optional
        Patient id of each row.
    cv : int, default 5
        Number of folds.
    seed : int, default 0
        Seed of the (shuffled) fold assignment.
    fit_params : dict, optional
        Extra ``fit`` arguments (e.g. ``{"icc__reader2": table}``); those with one value
        per row are split with ``X``, the others passed whole.

    Returns
    -------
    CrossValidatedAUC

    References
    ----------
    .. [1] Ambroise C, McLachlan GJ. Selection bias in gene extraction on the basis of
       microarray gene-expression data. PNAS. 2002;99(10):6562-6566.
    """
    y = np.asarray(y).ravel()
    classes = np.unique(y)
    if len(y) != _n_rows(X) or len(classes) != 2:
        raise InputError(
            f"need a binary y with one value per row of X; got {len(y)} values, classes {classes.tolist()[:10]}"
        )
    positive = classes[1]
    oof = np.full(len(y), np.nan)
    fold_of = np.full(len(y), -1)
    aucs = []
    for k, (train, test) in enumerate(_splitter(cv, seed, groups).split(np.zeros(len(y)), y, groups)):
        if len(np.unique(y[test])) < 2:
            raise InputError(f"fold {k} holds out only one class; use fewer folds (cv={cv})")
        model = clone(pipeline).fit(_safe_indexing(X, train), y[train], **_fold_params(fit_params, train, len(y)))
        oof[test] = _positive_score(model, _safe_indexing(X, test), positive)
        fold_of[test] = k
        aucs.append(roc_auc_score(y[test] == positive, oof[test]))
    aucs = np.asarray(aucs)
    index = X.index if isinstance(X, pd.DataFrame) else None
    return CrossValidatedAUC(
        fold_aucs=aucs, mean_auc=float(aucs.mean()), std_auc=float(aucs.std()),
        pooled_auc=float(roc_auc_score(y == positive, oof)), oof=pd.Series(oof, index=index, name="oof"),
        fold=fold_of,
    )


def _n_rows(X) -> int:
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _splitter(cv: int, seed: int, groups):
    if groups is None:
        return StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    return StratifiedGroupKFold(n_splits=cv, shuffle=True, random_state=seed)


def _fold_params(fit_params: dict | None, train: np.ndarray, n: int) -> dict:
    out = {}
    for name, value in (fit_params or {}).items():
        out[name] = _safe_indexing(value, train) if hasattr(value, "__len__") and _n_rows(value) == n else value
    return out


def _positive_score(model, X, positive) -> np.ndarray:
    """Probability (or decision value) of the positive class."""
    if hasattr(model, "predict_proba"):
        column = list(model.classes_).index(positive)
        return model.predict_proba(X)[:, column]
    score = model.decision_function(X)
    return score if model.classes_[1] == positive else -score
