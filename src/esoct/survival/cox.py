"""Cox models as scikit-learn estimators: CoxPH (lifelines), Coxnet with a CV-chosen alpha, the LASSO-Cox signature."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from esoct.errors import InputError

# Column names of time and event inside the frame handed to lifelines; chosen so they never clash.
_TIME = "__esoct_time__"
_EVENT = "__esoct_event__"


# --------------------------------------------------------------------------------------------
# input checks shared by the survival modules
# --------------------------------------------------------------------------------------------
def _as_frame(X, columns=None, what: str = "X") -> pd.DataFrame:
    """Covariates as a float DataFrame; names the column and row of a non-numeric or non-finite value.

    ``columns``: the feature names seen at fit time; a DataFrame is reordered to them (missing
    ones are an error), an array must have exactly that many columns.
    """
    if isinstance(X, pd.DataFrame):
        df = X
        if columns is not None:
            missing = [c for c in columns if c not in df.columns]
            if missing:
                raise InputError(f"{what} lacks the column(s) {missing} seen at fit time")
            df = df.loc[:, list(columns)]
    else:
        arr = np.asarray(X)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            raise InputError(f"{what} must be 2-D (patients x features), got shape {arr.shape}")
        names = list(columns) if columns is not None else [f"x{i}" for i in range(arr.shape[1])]
        if len(names) != arr.shape[1]:
            raise InputError(f"{what} has {arr.shape[1]} columns, the model was fitted on {len(names)}")
        df = pd.DataFrame(arr, columns=names)
    bad = [c for c in df.columns if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))]
    if bad:
        raise InputError(f"{what}: column(s) {bad} are not numeric; encode them first (e.g. stage as ordinal)")
    df = df.astype(float)
    values = df.to_numpy()
    if not np.isfinite(values).all():
        r, c = np.argwhere(~np.isfinite(values))[0]
        n_bad = int((~np.isfinite(values)).sum())
        raise InputError(
            f"{what}: {n_bad} missing or infinite value(s), first at row {df.index[r]!r}, "
            f"column {df.columns[c]!r}; impute or drop them first"
        )
    if len(df) == 0:
        raise InputError(f"{what} has no rows")
    return df


def _survival_arrays(y, n: int | None = None, what: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Event (bool) and time (float) of a scikit-survival structured array, checked."""
    from sksurv.util import check_y_survival

    if not isinstance(y, np.ndarray) or y.dtype.names is None or len(y.dtype.names) != 2:
        raise InputError(
            f"{what} must be a scikit-survival structured array (event, time), e.g. "
            "sksurv.util.Surv.from_arrays(event, time)"
        )
    event_field, time_field = y.dtype.names
    raw_event = np.asarray(y[event_field])
    if raw_event.dtype != bool:
        if not np.isin(raw_event, (0, 1)).all():
            raise InputError(f"{what}: the event field {event_field!r} must be 0/1 or boolean")
        y = y.copy().astype([(event_field, bool), (time_field, float)])
    try:
        event, time = check_y_survival(y)
    except ValueError as err:
        raise InputError(f"{what}: {err}") from err
    event = np.asarray(event, dtype=bool)
    time = np.asarray(time, dtype=float)
    if not np.isfinite(time).all():
        first = int(np.flatnonzero(~np.isfinite(time))[0])
        raise InputError(f"{what}: time has missing or infinite values (row {first})")
    if n is not None and len(event) != n:
        raise InputError(f"{what} has {len(event)} patients but X has {n} rows")
    return event, time


def _structured(event: np.ndarray, time: np.ndarray) -> np.ndarray:
    """A scikit-survival structured array with fields ``event`` and ``time``."""
    y = np.empty(len(event), dtype=[("event", bool), ("time", float)])
    y["event"] = event
    y["time"] = time
    return y


def _harrell_c(event: np.ndarray, time: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C of ``risk`` (higher = earlier event), scikit-survival's implementation."""
    from sksurv.metrics import concordance_index_censored

    return float(concordance_index_censored(event, time, np.asarray(risk, dtype=float))[0])


def _step_at(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Right-continuous step function through (x, y), 0 before x[0], constant after x[-1]."""
    idx = np.searchsorted(x, t, side="right") - 1
    out = np.where(idx >= 0, y[np.clip(idx, 0, None)], 0.0)
    return out


# --------------------------------------------------------------------------------------------
# Cox proportional hazards (lifelines)
# --------------------------------------------------------------------------------------------
class CoxPH(BaseEstimator):
    """Cox proportional-hazards model (Efron ties, Breslow baseline) as a scikit-learn estimator.

    A thin wrapper of :class:`lifelines.CoxPHFitter` that takes ``fit(X, y)`` with ``y``
    a scikit-survival structured array, so it works in ``Pipeline``, ``clone`` and
    cross-validation, and that exposes lifelines' summary as plain attributes.

    Parameters
    ----------
    penalizer : float
        Elastic-net penalty strength, as in lifelines (0: the ordinary partial likelihood).
        With a penalty the standard errors and p-values are not valid inference.
    l1_ratio : float
        Share of the L1 part of the penalty, as in lifelines.
    alpha : float
        1 - confidence level of the hazard-ratio intervals (0.05 gives 95 % CIs), as in lifelines.

    Attributes
    ----------
    coef_ : ndarray, shape (n_features,)
        Log hazard ratios.
    hazard_ratios_ : pandas.Series
        ``exp(coef_)`` indexed by feature.
    summary_ : pandas.DataFrame
        One row per covariate: ``coef``, ``se``, ``HR``, ``HR_lower``, ``HR_upper`` (Wald
        interval at level ``1 - alpha``), ``z``, ``p`` (Wald test).
    baseline_cumulative_hazard_ : pandas.Series
        Breslow cumulative hazard indexed by time, for a patient whose linear predictor equals
        ``lp_reference_``; the survival of a patient is
        ``exp(-H0(t) * exp(lp - lp_reference_))``.
    lp_reference_ : float
        Linear predictor at the training means of the covariates (lifelines' centring).
    lifelines_ : lifelines.CoxPHFitter
        The fitted lifelines model.
    feature_names_in_ : ndarray of str
    n_features_in_ : int

    References
    ----------
    .. [1] Cox DR. Regression models and life-tables. J R Stat Soc B 1972;34:187-220.
    .. [2] Efron B. The efficiency of Cox's likelihood function for censored data.
       J Am Stat Assoc 1977;72:557-565.
    .. [3] Davidson-Pilon C. lifelines: survival analysis in Python. J Open Source Softw
       2019;4(40):1317.
    """

    def __init__(self, penalizer: float = 0.0, l1_ratio: float = 0.0, alpha: float = 0.05):
        self.penalizer = penalizer
        self.l1_ratio = l1_ratio
        self.alpha = alpha

    def fit(self, X, y):
        """Fit the model.

        Parameters
        ----------
        X : DataFrame or array-like, shape (n_patients, n_features)
            Numeric covariates (encode categories first).
        y : structured array, shape (n_patients,)
            Event indicator (first field) and time (second field).

        Returns
        -------
        self
        """
        from lifelines import CoxPHFitter
        from lifelines.exceptions import ConvergenceError

        df = _as_frame(X)
        event, time = _survival_arrays(y, len(df))
        constant = [c for c in df.columns if df[c].nunique() < 2]
        if constant:
            raise InputError(f"covariate(s) {constant} take a single value; a Cox model cannot estimate them")
        data = df.reset_index(drop=True).copy()
        data[_TIME] = time
        data[_EVENT] = event.astype(int)
        fitter = CoxPHFitter(penalizer=self.penalizer, l1_ratio=self.l1_ratio, alpha=self.alpha)
        try:
            fitter.fit(data, duration_col=_TIME, event_col=_EVENT)
        except ConvergenceError as err:
            raise InputError(f"the Cox model did not converge: {err}") from err
        self.lifelines_ = fitter
        self.feature_names_in_ = np.asarray(df.columns, dtype=object)
        self.n_features_in_ = df.shape[1]
        params = fitter.params_.loc[list(df.columns)]
        self.coef_ = params.to_numpy(dtype=float)
        self.hazard_ratios_ = np.exp(params).rename("HR")
        s = fitter.summary.loc[list(df.columns)]
        lower = next(c for c in s.columns if c.startswith("exp(coef) lower"))
        upper = next(c for c in s.columns if c.startswith("exp(coef) upper"))
        self.summary_ = pd.DataFrame(
            {
                "coef": s["coef"],
                "se": s["se(coef)"],
                "HR": s["exp(coef)"],
                "HR_lower": s[lower],
                "HR_upper": s[upper],
                "z": s["z"],
                "p": s["p"],
            }
        )
        self.summary_.index.name = "covariate"
        norm_mean = fitter._norm_mean.loc[list(df.columns)].to_numpy(dtype=float)
        self.lp_reference_ = float(norm_mean @ self.coef_)
        bch = fitter.baseline_cumulative_hazard_.iloc[:, 0]
        self.baseline_cumulative_hazard_ = pd.Series(
            bch.to_numpy(dtype=float), index=bch.index.to_numpy(dtype=float), name="H0"
        )
        return self

    def predict(self, X) -> np.ndarray:
        """Linear predictor ``X @ coef_`` (not centred), higher = higher risk.

        Parameters
        ----------
        X : DataFrame or array-like, shape (n_patients, n_features)

        Returns
        -------
        ndarray, shape (n_patients,)
        """
        check_is_fitted(self, "coef_")
        df = _as_frame(X, self.feature_names_in_)
        return df.to_numpy() @ self.coef_

    def survival_at(self, linear_predictor, times) -> np.ndarray:
        """Survival probabilities of patients with the given linear predictors at ``times``.

        Parameters
        ----------
        linear_predictor : array-like, shape (n_patients,)
            Values of :meth:`predict`.
        times : array-like, shape (n_times,)
            Non-negative times; after the last training time the baseline stays constant.

        Returns
        -------
        ndarray, shape (n_patients, n_times)
        """
        check_is_fitted(self, "coef_")
        lp = np.atleast_1d(np.asarray(linear_predictor, dtype=float))
        t = np.atleast_1d(np.asarray(times, dtype=float))
        if not np.isfinite(t).all() or (t < 0).any():
            raise InputError("times must be finite and non-negative")
        if not np.isfinite(lp).all():
            raise InputError("linear_predictor has missing or infinite values")
        h0 = self.baseline_cumulative_hazard_
        cum = _step_at(h0.index.to_numpy(), h0.to_numpy(), t)
        return np.exp(-np.outer(np.exp(lp - self.lp_reference_), cum))

    def predict_survival_function(self, X, times=None):
        """Survival functions of patients.

        Parameters
        ----------
        X : DataFrame or array-like, shape (n_patients, n_features)
        times : array-like, optional
            Times at which to evaluate. Without it, one :class:`sksurv.functions.StepFunction`
            per patient over the baseline's time grid is returned (what survshap and
            scikit-survival metrics expect).

        Returns
        -------
        ndarray, shape (n_patients, n_times), or ndarray of StepFunction, shape (n_patients,)
        """
        lp = self.predict(X)
        if times is not None:
            return self.survival_at(lp, times)
        from sksurv.functions import StepFunction

        grid = self.baseline_cumulative_hazard_.index.to_numpy()
        surv = self.survival_at(lp, grid)
        return np.array([StepFunction(grid, row) for row in surv], dtype=object)

    def score(self, X, y) -> float:
        """Harrell's concordance index of :meth:`predict` on (X, y)."""
        event, time = _survival_arrays(y, None)
        return _harrell_c(event, time, self.predict(X))


# --------------------------------------------------------------------------------------------
# Coxnet with alpha by cross-validation
# --------------------------------------------------------------------------------------------
class CoxnetCV(BaseEstimator):
    """Elastic-net Cox model (scikit-survival's Coxnet) whose penalty is chosen by k-fold CV of Harrell's C.

    ``fit`` standardises the covariates (mean 0, SD 1, fitted on the training data only),
    computes the regularisation path on all training patients, then for each fold refits
    the same path on the other folds (with the fold's own standardisation) and scores
    every ``alpha`` by Harrell's C on the held-out fold. Folds are stratified by event
    status, so each fold holds events; each row is one patient.

    Parameters
    ----------
    l1_ratio : float
        Elastic-net mixing, 1 = LASSO.
    n_alphas : int
        Length of the path.
    alpha_min_ratio : float or "auto"
        Smallest alpha as a fraction of the largest, as in scikit-survival.
    cv : int
        Number of folds.
    rule : {"max", "1se"}
        ``"max"``: the alpha with the highest mean CV C-index (ties: the larger alpha);
        ``"1se"``: the largest alpha within one standard error of that maximum.
    standardize : bool
        Standardise covariates inside ``fit`` (recommended; coefficients are then per SD).
    random_state : int or None
        Seed of the fold assignment.
    tol, max_iter
        Passed to :class:`sksurv.linear_model.CoxnetSurvivalAnalysis`.

    Attributes
    ----------
    alpha_ : float
        The chosen penalty.
    best_index_ : int
        Its position in ``alphas_``.
    alphas_ : ndarray
        The path, largest first (scikit-survival may stop it before ``n_alphas``).
    cv_scores_ : ndarray, shape (cv, n_alphas)
        Harrell's C of each fold and alpha (NaN where a fold's path stopped early).
    cv_mean_, cv_se_ : ndarray, shape (n_alphas,)
        Mean and standard error over folds (NaN unless every fold reached that alpha; only
        those alphas are candidates).
    coef_ : ndarray, shape (n_features,)
        Coefficients at ``alpha_`` (per SD of each covariate when ``standardize``).
    scaler_ : StandardScaler or None
    estimator_ : sksurv.linear_model.CoxnetSurvivalAnalysis
        The path fitted on all training patients (with a baseline model).
    feature_names_in_, n_features_in_

    References
    ----------
    .. [1] Simon N, Friedman J, Hastie T, Tibshirani R. Regularization paths for Cox's
       proportional hazards model via coordinate descent. J Stat Softw 2011;39(5):1-13.
    .. [2] Harrell FE, Califf RM, Pryor DB, Lee KL, Rosati RA. Evaluating the yield of
       medical tests. JAMA 1982;247:2543-2546.
    """

    def __init__(
        self,
        l1_ratio: float = 1.0,
        n_alphas: int = 100,
        alpha_min_ratio="auto",
        cv: int = 5,
        rule: str = "max",
        standardize: bool = True,
        random_state: int | None = 0,
        tol: float = 1e-7,
        max_iter: int = 100000,
    ):
        self.l1_ratio = l1_ratio
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.cv = cv
        self.rule = rule
        self.standardize = standardize
        self.random_state = random_state
        self.tol = tol
        self.max_iter = max_iter

    def _coxnet(self, **kwargs):
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        return CoxnetSurvivalAnalysis(l1_ratio=self.l1_ratio, tol=self.tol, max_iter=self.max_iter, **kwargs)

    def _fit_path(self, X: np.ndarray, y: np.ndarray, **kwargs):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Cc]onverge.*")
                return self._coxnet(**kwargs).fit(X, y)
        except ArithmeticError as err:
            raise InputError(
                f"the Coxnet path failed numerically ({err}); raise alpha_min_ratio "
                f"(now {self.alpha_min_ratio!r}) or shorten the path"
            ) from err

    def _scale(self, df: pd.DataFrame):
        if not self.standardize:
            return None, df.to_numpy()
        scaler = StandardScaler().fit(df.to_numpy())
        return scaler, scaler.transform(df.to_numpy())

    def fit(self, X, y):
        """Choose alpha by cross-validation and fit the path on all patients.

        Parameters
        ----------
        X : DataFrame or array-like, shape (n_patients, n_features)
        y : structured array, shape (n_patients,)

        Returns
        -------
        self
        """
        if self.rule not in ("max", "1se"):
            raise ValueError(f"rule must be 'max' or '1se', got {self.rule!r}")
        df = _as_frame(X)
        event, time = _survival_arrays(y, len(df))
        ys = _structured(event, time)
        n_events = int(event.sum())
        if self.cv < 2:
            raise ValueError(f"cv must be at least 2, got {self.cv}")
        if n_events < self.cv or int((~event).sum()) < self.cv:
            raise InputError(
                f"{self.cv}-fold CV stratified by event needs at least {self.cv} events and "
                f"{self.cv} censored patients; got {n_events} events of {len(event)}"
            )
        self.scaler_, Xs = self._scale(df)
        self.estimator_ = self._fit_path(
            Xs, ys, n_alphas=self.n_alphas, alpha_min_ratio=self.alpha_min_ratio, fit_baseline_model=True
        )
        alphas = np.asarray(self.estimator_.alphas_, dtype=float)
        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
        scores = np.full((self.cv, len(alphas)), np.nan)
        for k, (tr, va) in enumerate(folds.split(Xs, event)):
            scaler, Xtr = self._scale(df.iloc[tr])
            Xva = df.iloc[va].to_numpy() if scaler is None else scaler.transform(df.iloc[va].to_numpy())
            est = self._fit_path(Xtr, ys[tr], alphas=alphas)
            # the path may stop early (glmnet's deviance-ratio rule): later alphas stay NaN
            risk = Xva @ np.asarray(est.coef_)
            for j in range(min(risk.shape[1], len(alphas))):
                scores[k, j] = _harrell_c(event[va], time[va], risk[:, j])
        complete = np.isfinite(scores).all(axis=0)
        mean = np.full(len(alphas), np.nan)
        se = np.full(len(alphas), np.nan)
        mean[complete] = scores[:, complete].mean(axis=0)
        se[complete] = scores[:, complete].std(axis=0, ddof=1) / np.sqrt(self.cv)
        best = int(np.nanargmax(mean))
        if self.rule == "1se":
            best = int(np.flatnonzero(mean >= mean[best] - se[best])[0])
        self.alphas_ = alphas
        self.cv_scores_ = scores
        self.cv_mean_ = mean
        self.cv_se_ = se
        self.best_index_ = best
        self.alpha_ = float(alphas[best])
        self.coef_ = np.asarray(self.estimator_.coef_)[:, best].astype(float)
        self.feature_names_in_ = np.asarray(df.columns, dtype=object)
        self.n_features_in_ = df.shape[1]
        return self

    def _transform(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        df = _as_frame(X, self.feature_names_in_)
        return df.to_numpy() if self.scaler_ is None else self.scaler_.transform(df.to_numpy())

    def predict(self, X) -> np.ndarray:
        """Linear predictor at ``alpha_`` (on the standardised covariates when ``standardize``).

        Parameters
        ----------
        X : DataFrame or array-like, shape (n_patients, n_features)

        Returns
        -------
        ndarray, shape (n_patients,)
        """
        return self._transform(X) @ self.coef_

    def predict_survival_function(self, X, return_array: bool = False):
        """Survival functions at ``alpha_`` (scikit-survival's Breslow baseline).

        Parameters
        ----------
        X : DataFrame or array-like, shape (n_patients, n_features)
        return_array : bool
            As in :meth:`sksurv.linear_model.CoxnetSurvivalAnalysis.predict_survival_function`.

        Returns
        -------
        ndarray of StepFunction, or ndarray (n_patients, n_unique_times)
        """
        Xs = self._transform(X)
        return self.estimator_.predict_survival_function(Xs, alpha=self.alpha_, return_array=return_array)

    def score(self, X, y) -> float:
        """Harrell's concordance index of :meth:`predict` on (X, y)."""
        event, time = _survival_arrays(y, None)
        return _harrell_c(event, time, self.predict(X))


# --------------------------------------------------------------------------------------------
# Radiomics signature (LASSO-Cox Rad-score)
# --------------------------------------------------------------------------------------------
class RadiomicsSignature(TransformerMixin, BaseEstimator):
    """LASSO-Cox radiomics signature: the selected features and their Rad-score.

    ``fit`` standardises the features (on the training patients only), fits a LASSO Cox
    path (:class:`CoxnetCV` with ``l1_ratio=1``), picks ``alpha`` by k-fold CV of Harrell's
    C and keeps the features with non-zero coefficients. ``predict`` returns the
    radiomics score ``Rad-score = sum_j coef_j * (x_j - mean_j) / scale_j``; ``transform``
    returns the selected columns, so the signature doubles as the LASSO-Cox selection step
    of a pipeline (as in the longitudinal paper's delta-radiomics model).

    Parameters
    ----------
    cv : int
        Folds of the alpha search (stratified by event).
    n_alphas : int
        Length of the LASSO path.
    alpha_min_ratio : float or "auto"
        As in scikit-survival.
    rule : {"max", "1se"}
        Alpha choice, see :class:`CoxnetCV`.
    random_state : int or None
        Seed of the folds.
    tol, max_iter
        Coordinate-descent settings.

    Attributes
    ----------
    selected_features_ : ndarray of str
        Features with a non-zero coefficient, in input order.
    coef_ : ndarray, shape (n_selected,)
        Their coefficients per SD.
    mean_, scale_ : ndarray, shape (n_selected,)
        Training mean and SD used to standardise them.
    signature_ : pandas.DataFrame
        ``coef``, ``HR_per_SD``, ``mean``, ``scale`` per selected feature (a paper's
        "selected features and coefficients" table).
    alpha_ : float
        The chosen LASSO penalty.
    coxnet_ : CoxnetCV
        The fitted path and CV results.
    feature_names_in_, n_features_in_

    References
    ----------
    .. [1] Tibshirani R. The lasso method for variable selection in the Cox model.
       Stat Med 1997;16:385-395.
    .. [2] Huang YQ, Liang CH, He L, et al. Development and validation of a radiomics
       nomogram for preoperative prediction of lymph node metastasis in colorectal cancer.
       J Clin Oncol 2016;34:2157-2164 (the Rad-score as a LASSO linear predictor).
    """

    def __init__(
        self,
        cv: int = 5,
        n_alphas: int = 100,
        alpha_min_ratio="auto",
        rule: str = "max",
        random_state: int | None = 0,
        tol: float = 1e-7,
        max_iter: int = 100000,
    ):
        self.cv = cv
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.rule = rule
        self.random_state = random_state
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X, y):
        """Select the features and fit the Rad-score.

        Parameters
        ----------
        X : DataFrame or array-like, shape (n_patients, n_features)
            Candidate features (e.g. delta-radiomics after ICC, correlation and univariate filters).
        y : structured array, shape (n_patients,)

        Returns
        -------
        self
        """
        df = _as_frame(X)
        self.coxnet_ = CoxnetCV(
            l1_ratio=1.0,
            n_alphas=self.n_alphas,
            alpha_min_ratio=self.alpha_min_ratio,
            cv=self.cv,
            rule=self.rule,
            standardize=True,
            random_state=self.random_state,
            tol=self.tol,
            max_iter=self.max_iter,
        ).fit(df, y)
        keep = np.flatnonzero(self.coxnet_.coef_ != 0.0)
        self.feature_names_in_ = np.asarray(df.columns, dtype=object)
        self.n_features_in_ = df.shape[1]
        self.selected_features_ = self.feature_names_in_[keep]
        self.coef_ = self.coxnet_.coef_[keep]
        self.mean_ = self.coxnet_.scaler_.mean_[keep]
        self.scale_ = self.coxnet_.scaler_.scale_[keep]
        self.alpha_ = self.coxnet_.alpha_
        self.signature_ = pd.DataFrame(
            {"coef": self.coef_, "HR_per_SD": np.exp(self.coef_), "mean": self.mean_, "scale": self.scale_},
            index=pd.Index(self.selected_features_, name="feature"),
        )
        if len(keep) == 0:
            warnings.warn(
                "the cross-validated LASSO-Cox kept no feature: the Rad-score is 0 for every patient "
                "(no candidate feature improved the CV C-index over the null model)",
                UserWarning,
                stacklevel=2,
            )
        return self

    def _selected(self, X) -> pd.DataFrame:
        check_is_fitted(self, "coef_")
        if isinstance(X, pd.DataFrame):
            return _as_frame(X, self.selected_features_)
        df = _as_frame(X, self.feature_names_in_)
        return df.loc[:, list(self.selected_features_)]

    def predict(self, X) -> np.ndarray:
        """Rad-score of each patient (a DataFrame needs only the selected columns).

        Parameters
        ----------
        X : DataFrame or array-like

        Returns
        -------
        ndarray, shape (n_patients,)
        """
        sel = self._selected(X).to_numpy()
        return ((sel - self.mean_) / self.scale_) @ self.coef_

    def transform(self, X):
        """The selected features (a DataFrame stays a DataFrame).

        Parameters
        ----------
        X : DataFrame or array-like

        Returns
        -------
        DataFrame or ndarray, shape (n_patients, n_selected)
        """
        sel = self._selected(X)
        if isinstance(X, pd.DataFrame):
            return X.loc[:, list(self.selected_features_)]
        return sel.to_numpy()

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the selected features."""
        check_is_fitted(self, "coef_")
        return np.asarray(self.selected_features_, dtype=object)

    def score(self, X, y) -> float:
        """Harrell's concordance index of the Rad-score on (X, y)."""
        event, time = _survival_arrays(y, None)
        return _harrell_c(event, time, self.predict(X))
