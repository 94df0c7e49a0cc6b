"""Survival screening: univariate Cox p-values and LASSO-Cox with a cross-validated penalty."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import norm
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from esoct.errors import InputError
from esoct.select.correlation import _feature_names

CHUNK = 256  # features fitted together (memory: a few arrays of n_events x CHUNK floats)


def survival_arrays(y, n_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Event indicator and time from a scikit-survival structured array.

    Parameters
    ----------
    y : structured ndarray
        Two fields, as in scikit-survival: the event (bool, True = event) first, the time
        second (e.g. ``sksurv.util.Surv.from_arrays(event, time)``).
    n_samples : int, optional
        Expected length (the rows of ``X``).

    Returns
    -------
    event : ndarray of bool
    time : ndarray of float
    """
    if y is None:
        raise InputError("this selector requires y to be passed, but the target y is None")
    names = getattr(getattr(y, "dtype", None), "names", None)
    if names is None or len(names) != 2:
        raise InputError(
            "y must be a structured array with an event field and a time field, "
            "e.g. sksurv.util.Surv.from_arrays(event, time)"
        )
    event, time = np.asarray(y[names[0]]), np.asarray(y[names[1]], dtype=float)
    if event.dtype != bool and not np.isin(event, (0, 1)).all():
        raise InputError(f"the event field {names[0]!r} must be boolean or 0/1")
    event = event.astype(bool)
    if n_samples is not None and len(event) != n_samples:
        raise InputError(f"y has {len(event)} patients but X has {n_samples} rows")
    if not np.isfinite(time).all() or (time < 0).any():
        raise InputError(f"the time field {names[1]!r} must be finite and non-negative")
    if not event.any():
        raise InputError("all patients are censored: no event to fit a Cox model on")
    return event, time


def univariate_cox(X, event, time, max_iter: int = 50, tol: float = 1e-10) -> dict[str, np.ndarray]:
    """Cox proportional-hazards fit of each column of ``X`` on its own, all columns at once.

    Newton-Raphson with step halving on the partial likelihood with Efron's handling of
    tied event times (as lifelines and R ``coxph``), on standardised columns; the Wald
    test of the coefficient gives the p-value.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Finite covariates.
    event : ndarray of bool of shape (n_samples,)
    time : ndarray of shape (n_samples,)
    max_iter : int, default 50
    tol : float, default 1e-10
        Convergence when every Newton step is smaller than ``tol`` (standardised scale).

    Returns
    -------
    dict
        ``coef`` (log hazard ratio per unit of the feature), ``se`` (its standard error),
        ``z`` (Wald statistic), ``p`` (two-sided Wald p-value; NaN for a constant column)
        and ``converged`` (bool).

    References
    ----------
    .. [1] Cox DR. Regression models and life-tables. J R Stat Soc B. 1972;34(2):187-220.
    .. [2] Efron B. The efficiency of Cox's likelihood function for censored data.
       J Am Stat Assoc. 1977;72(359):557-565.
    """
    X = np.asarray(X, dtype=float)
    order = np.argsort(time, kind="stable")
    event, time = np.asarray(event, dtype=bool)[order], np.asarray(time, dtype=float)[order]
    chunks = [_univariate_cox_chunk(X[order, j : j + CHUNK], event, time, max_iter, tol)
              for j in range(0, X.shape[1], CHUNK)]
    return {key: np.concatenate([c[key] for c in chunks]) for key in ("coef", "se", "z", "p", "converged")}


def _univariate_cox_chunk(X, event, time, max_iter, tol) -> dict[str, np.ndarray]:
    """:func:`univariate_cox` on a few columns of a sample already sorted by time."""
    sd = X.std(axis=0)
    constant = sd == 0
    Z = (X - X.mean(axis=0)) / np.where(constant, 1.0, sd)
    risk = _EfronRiskSets(Z, event, time)
    beta = np.zeros(Z.shape[1])
    loglik, grad, info = risk.evaluate(beta)
    converged = np.zeros_like(constant)
    for _ in range(max_iter):
        step = np.divide(grad, info, out=np.zeros_like(grad), where=info > 0)
        beta, loglik, grad, info, step = _halve_until_better(risk, beta, step, loglik, grad, info)
        converged = np.abs(step) < tol
        if converged.all():
            break
    with np.errstate(divide="ignore", invalid="ignore"):
        se = 1.0 / np.sqrt(info)
        z = beta / se
    p = 2.0 * norm.sf(np.abs(z))
    scale = np.where(constant, np.nan, sd)
    result = {"coef": beta / scale, "se": se / scale, "z": z, "p": p}
    result = {key: np.where(constant, np.nan, value) for key, value in result.items()}
    result["converged"] = converged
    return result


def _halve_until_better(risk, beta, step, loglik, grad, info, max_halvings: int = 30):
    """One Newton step, halved for the features whose partial likelihood would go down."""
    new_beta = beta + step
    new = risk.evaluate(new_beta)
    for _ in range(max_halvings):
        worse = new[0] < loglik - 1e-12 * np.abs(loglik)
        if not worse.any():
            break
        step = np.where(worse, step / 2, step)
        new_beta = beta + step
        new = risk.evaluate(new_beta)
    return (new_beta, *new, step)


class _EfronRiskSets:
    """Risk-set sums of a time-sorted sample, for the Efron partial likelihood of many 1D models."""

    def __init__(self, Z: np.ndarray, event: np.ndarray, time: np.ndarray):
        self.Z, self.event = Z, event
        event_times, first_event, deaths = np.unique(time[event], return_index=True, return_counts=True)
        self.risk_start = np.searchsorted(time, event_times, side="left")  # risk set: time >= t
        self.group = np.repeat(np.arange(len(event_times)), deaths)  # event -> tie group
        self.frac = (np.arange(event.sum()) - np.repeat(first_event, deaths)) / np.repeat(deaths, deaths)
        self.sum_event_z = Z[event].sum(axis=0)
        self.group_starts = np.flatnonzero(np.r_[True, self.group[1:] != self.group[:-1]])

    def evaluate(self, beta: np.ndarray):
        """Partial log-likelihood, score and information of every column at ``beta``."""
        eta = self.Z * beta
        shift = eta.max(axis=0)
        w = np.exp(eta - shift)
        moments = [w, w * self.Z, w * self.Z**2]
        risk = [np.cumsum(m[::-1], axis=0)[::-1][self.risk_start] for m in moments]
        dead = [np.add.reduceat(m[self.event], self.group_starts, axis=0) for m in moments]
        s0, s1, s2 = (r[self.group] - self.frac[:, None] * d[self.group] for r, d in zip(risk, dead))
        loglik = (beta * self.sum_event_z) - (np.log(s0) + shift).sum(axis=0)
        mean1 = s1 / s0
        grad = self.sum_event_z - mean1.sum(axis=0)
        info = (s2 / s0 - mean1**2).sum(axis=0)
        return loglik, grad, info


class UnivariateCoxFilter(SelectorMixin, BaseEstimator):
    """Keep the features whose univariate Cox Wald p-value is below ``p_threshold``.

    Each feature is fitted in its own Cox proportional-hazards model (Efron ties); the
    Wald p-values equal lifelines' ``CoxPHFitter`` ones. A constant feature gets p = NaN
    and is not kept.

    Parameters
    ----------
    p_threshold : float, default 0.1
        Features with ``p < p_threshold`` are kept.

    Attributes
    ----------
    pvalues_ : ndarray of shape (n_features_in_,)
        Wald p-value of each feature.
    coef_ : ndarray of shape (n_features_in_,)
        Log hazard ratio per unit of each feature.
    scores_ : ndarray of shape (n_features_in_,)
        Absolute Wald statistic ``|coef / se|``.
    support_ : ndarray of bool
    selected_features_ : ndarray of str

    References
    ----------
    .. [1] Cox DR. J R Stat Soc B. 1972;34(2):187-220.
    """

    def __init__(self, p_threshold: float = 0.1):
        self.p_threshold = p_threshold

    def fit(self, X, y):
        """Fit one Cox model per feature.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
        y : structured ndarray
            scikit-survival survival outcome (event, time).

        Returns
        -------
        self
        """
        values = validate_data(self, X, dtype=float)
        event, time = survival_arrays(y, len(values))
        fit = univariate_cox(values, event, time)
        if not fit["converged"][np.isfinite(fit["p"])].all():
            warnings.warn("univariate Cox did not converge for some features (monotone likelihood?)", stacklevel=2)
        self.pvalues_, self.coef_ = fit["p"], fit["coef"]
        self.scores_ = np.abs(fit["z"])
        self.support_ = np.nan_to_num(self.pvalues_, nan=np.inf) < self.p_threshold
        self.selected_features_ = _feature_names(self)[self.support_]
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


class LassoCoxSelector(SelectorMixin, BaseEstimator):
    """LASSO-Cox (l1 only) with the penalty chosen by k-fold cross-validated Harrell's C.

    Inside ``fit``: the features are standardised; scikit-survival's
    ``CoxnetSurvivalAnalysis(l1_ratio=1)`` gives the penalty path on all the data it is
    given; each penalty is scored by the mean Harrell's C over ``cv`` folds (the model and
    the standardisation refitted on each fold's training part); the penalty with the
    highest mean C is taken (ties: the larger penalty, i.e. fewer features) and the
    features with a non-zero coefficient on the full fit are kept.

    Parameters
    ----------
    n_alphas : int, default 50
        Length of the penalty path.
    alpha_min_ratio : float or "auto", default "auto"
        Smallest penalty as a fraction of the largest (scikit-survival's rule for "auto").
    cv : int, default 5
        Number of folds.
    random_state : int, default 0
        Seed of the fold split.
    max_iter : int, default 100000
        Coordinate-descent iterations of Coxnet.

    Attributes
    ----------
    alphas_ : ndarray
        The penalty path.
    cv_scores_ : ndarray
        Mean cross-validated C of each penalty.
    alpha_ : float
        The chosen penalty.
    coef_ : ndarray of shape (n_features_in_,)
        Coefficients at ``alpha_`` on the standardised features.
    scores_ : ndarray
        ``|coef_|``.
    support_ : ndarray of bool
    selected_features_ : ndarray of str

    References
    ----------
    .. [1] Tibshirani R. The lasso method for variable selection in the Cox model.
       Stat Med. 1997;16(4):385-395.
    .. [2] Simon N, Friedman J, Hastie T, Tibshirani R. Regularization paths for Cox's
       proportional hazards model via coordinate descent. J Stat Softw. 2011;39(5):1-13.
    .. [3] Harrell FE, Califf RM, Pryor DB, Lee KL, Rosati RA. Evaluating the yield of
       medical tests. JAMA. 1982;247(18):2543-2546.
    """

    def __init__(self, n_alphas: int = 50, alpha_min_ratio="auto", cv: int = 5, random_state: int = 0,
                 max_iter: int = 100000):
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.cv = cv
        self.random_state = random_state
        self.max_iter = max_iter

    def fit(self, X, y):
        """Choose the penalty by cross-validation and keep the non-zero coefficients.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
        y : structured ndarray
            scikit-survival survival outcome (event, time).

        Returns
        -------
        self
        """
        values = validate_data(self, X, dtype=float)
        survival_arrays(y, len(values))
        full = self._coxnet(alphas=None).fit(StandardScaler().fit_transform(values), y)
        self.alphas_ = full.alphas_
        self.cv_scores_ = self._cross_validated_c(values, y)
        best = int(np.nanargmax(self.cv_scores_)) if np.isfinite(self.cv_scores_).any() else 0
        self.alpha_ = float(self.alphas_[best])
        self.coef_ = full.coef_[:, best]
        self.scores_ = np.abs(self.coef_)
        self.support_ = self.coef_ != 0
        self.selected_features_ = _feature_names(self)[self.support_]
        return self

    def _coxnet(self, alphas):
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        return CoxnetSurvivalAnalysis(
            l1_ratio=1.0, n_alphas=self.n_alphas, alphas=alphas, alpha_min_ratio=self.alpha_min_ratio,
            max_iter=self.max_iter, fit_baseline_model=False,
        )

    def _cross_validated_c(self, values: np.ndarray, y) -> np.ndarray:
        folds = KFold(self.cv, shuffle=True, random_state=self.random_state).split(values)
        scores = np.array([self._fold_c(values, y, train, test) for train, test in folds])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a penalty failing in every fold
            return np.nanmean(scores, axis=0)

    def _fold_c(self, values, y, train, test) -> np.ndarray:
        from sksurv.metrics import concordance_index_censored

        out = np.full(len(self.alphas_), np.nan)
        event, time = (a[test] for a in survival_arrays(y))
        if not event.any():
            return out
        scaler = StandardScaler().fit(values[train])
        try:
            model = self._coxnet(self.alphas_).fit(scaler.transform(values[train]), y[train])
        except (ArithmeticError, ValueError):
            return out
        risks = scaler.transform(values[test]) @ model.coef_
        from sksurv.exceptions import NoComparablePairException

        for k in range(risks.shape[1]):
            try:
                out[k] = concordance_index_censored(event, time, risks[:, k])[0]
            except NoComparablePairException:  # a small fold without comparable pairs scores nothing
                return out
        return out

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags
