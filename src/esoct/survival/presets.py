"""The longitudinal paper's six survival models: presets over feature groups, CV-tuned, tabulated like its Table 2."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from esoct.errors import InputError
from esoct.survival.cox import _as_frame, _harrell_c, _structured, _survival_arrays
from esoct.survival.forest import PAPER_NODESIZE, paper_rsf


@dataclass(frozen=True)
class FeatureGroup:
    """Columns of a feature group: explicit names first, then every column starting with a prefix.

    Attributes
    ----------
    columns : tuple of str
        Required columns, in this order (all must be present).
    prefixes : tuple of str
        Column-name prefixes; matching columns follow in the table's order.
    """

    columns: tuple = ()
    prefixes: tuple = ()

    def resolve(self, available) -> list:
        """The group's columns among ``available`` (a missing explicit column is an error)."""
        available = list(available)
        missing = [c for c in self.columns if c not in available]
        if missing:
            raise InputError(f"the feature table lacks the column(s) {missing}")
        chosen = list(self.columns)
        chosen += [c for c in available if c not in chosen and any(c.startswith(p) for p in self.prefixes)]
        return chosen


#: Clinical covariates of the paper's clinical model: age (years), clinical stage (ordinal,
#: see :func:`stage_to_ordinal`) and tumour volume reduction rate ((V_pre - V_post) / V_pre).
CLINICAL_COLUMNS = ("age", "stage", "volume_reduction_rate")

#: The paper's six models. Deep-feature columns are the PCA components of each time point
#: (``dl_pre_pca_1..10``, ``dl_post_pca_1..10`` from :mod:`esoct.features.deep`), delta-radiomics columns the selected DRFs
#: (``delta_<pyradiomics name>``). Fusion concatenates all selected groups.
FEATURE_GROUPS = {
    "Clinical": FeatureGroup(columns=CLINICAL_COLUMNS),
    "Delta_radiomics": FeatureGroup(prefixes=("delta_",)),
    "DL_Pre": FeatureGroup(prefixes=("dl_pre_",)),
    "DL_Post": FeatureGroup(prefixes=("dl_post_",)),
    "DL_Longitudinal": FeatureGroup(prefixes=("dl_pre_", "dl_post_")),
    "Fusion": FeatureGroup(columns=CLINICAL_COLUMNS, prefixes=("delta_", "dl_pre_", "dl_post_")),
}

PRESET_NAMES = tuple(FEATURE_GROUPS)

#: Default hyper-parameter grid: randomForestSRC nodesize in {10, 15} (see
#: :func:`esoct.survival.forest.nodesize_params`); kept small, 5-fold CV refits it per value.
DEFAULT_PARAM_GRID = {"rsf__min_samples_split": [2 * PAPER_NODESIZE, 30]}

_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4}
_STAGE_RE = re.compile(r"(IV|III|II|I|[0-4])([ABC])?")


def stage_to_ordinal(values) -> np.ndarray:
    """AJCC clinical stage as an ordinal number: main stage plus a tenth per sub-stage letter.

    ``0 -> 0``, ``I -> 1``, ``IA -> 1.1``, ``IIB -> 2.2``, ``III -> 3``, ``IVA -> 4.1``,
    ``IVB -> 4.2``. Accepts roman or arabic numerals, any case, an optional "stage" word;
    numbers pass through unchanged. The coding is fixed (never learnt from the data), so
    training and test cohorts get the same numbers.

    Parameters
    ----------
    values : array-like
        Stage labels or numbers.

    Returns
    -------
    ndarray of float
    """
    series = values if isinstance(values, pd.Series) else pd.Series(list(values))
    out = np.empty(len(series), dtype=float)
    for i, (label, v) in enumerate(series.items()):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            raise InputError(f"clinical stage is missing (row {label!r})")
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            out[i] = float(v)
            continue
        text = re.sub(r"\s+", "", str(v).upper().replace("STAGE", ""))
        m = _STAGE_RE.fullmatch(text)
        if m is None:
            raise InputError(f"clinical stage {v!r} (row {label!r}) is not an AJCC stage (0, I-IV with optional A/B/C)")
        main = int(m.group(1)) if m.group(1).isdigit() else _ROMAN[m.group(1)]
        out[i] = main + {"": 0, "A": 1, "B": 2, "C": 3}[m.group(2) or ""] / 10
    return out


class PresetFeatures(TransformerMixin, BaseEstimator):
    """Select a preset's columns from a feature table and encode clinical stage as ordinal.

    Parameters
    ----------
    preset : str
        Key of ``groups``.
    groups : dict, optional
        ``{name: FeatureGroup}``; default :data:`FEATURE_GROUPS`.
    stage_column : str
        Column converted by :func:`stage_to_ordinal` when it is not numeric.

    Attributes
    ----------
    columns_ : list of str
        The columns used, fixed at fit time.
    """

    def __init__(self, preset: str = "Fusion", groups: dict | None = None, stage_column: str = "stage"):
        self.preset = preset
        self.groups = groups
        self.stage_column = stage_column

    def fit(self, X, y=None):
        """Resolve the preset's columns in ``X`` (a DataFrame)."""
        groups = FEATURE_GROUPS if self.groups is None else self.groups
        if self.preset not in groups:
            raise InputError(f"unknown preset {self.preset!r}; choose one of {list(groups)}")
        if not isinstance(X, pd.DataFrame):
            raise InputError("presets select columns by name: pass a pandas DataFrame")
        cols = groups[self.preset].resolve(X.columns)
        if not cols:
            prefixes = groups[self.preset].prefixes
            raise InputError(f"preset {self.preset!r} found no column in the table (prefixes {prefixes})")
        self.columns_ = cols
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X) -> pd.DataFrame:
        """The preset's columns as floats (stage encoded), checked finite."""
        check_is_fitted(self, "columns_")
        if not isinstance(X, pd.DataFrame):
            raise InputError("presets select columns by name: pass a pandas DataFrame")
        missing = [c for c in self.columns_ if c not in X.columns]
        if missing:
            raise InputError(f"preset {self.preset!r}: the table lacks the column(s) {missing}")
        df = X.loc[:, self.columns_].copy()
        if self.stage_column in df.columns and not pd.api.types.is_numeric_dtype(df[self.stage_column]):
            df[self.stage_column] = stage_to_ordinal(df[self.stage_column])
        return _as_frame(df, what=f"preset {self.preset!r} features")

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """The preset's columns."""
        check_is_fitted(self, "columns_")
        return np.asarray(self.columns_, dtype=object)


def _harrell_c_scorer(estimator, X, y) -> float:
    """GridSearchCV scorer: Harrell's C of ``estimator.predict(X)``."""
    event, time = _survival_arrays(y)
    return _harrell_c(event, time, estimator.predict(X))


def _check_patients(df: pd.DataFrame, what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"{what} must be a pandas DataFrame (one row per patient)")
    if "patient_id" in df.columns and df["patient_id"].duplicated().any():
        dup = df.loc[df["patient_id"].duplicated(), "patient_id"].iloc[0]
        raise InputError(f"{what}: one row per patient expected, this patient appears more than once", patient=str(dup))


@dataclass
class PresetFit:
    """A preset tuned by cross-validation and refitted on the whole training cohort.

    Attributes
    ----------
    name : str
        Preset name.
    columns : list of str
        Features the model uses.
    model : sklearn.pipeline.Pipeline
        ``PresetFeatures -> PaperRandomSurvivalForest``, refitted with ``best_params``.
    best_params : dict
        The chosen hyper-parameters.
    cv_c_index : float
        Mean Harrell's C over the CV folds at ``best_params``.
    cv_results : pandas.DataFrame
        ``GridSearchCV.cv_results_``.
    """

    name: str
    columns: list
    model: Pipeline
    best_params: dict
    cv_c_index: float
    cv_results: pd.DataFrame = field(repr=False)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Risk score (the forest's summed cumulative hazard), higher = worse."""
        return self.model.predict(X)

    def predict_survival_function(self, X: pd.DataFrame, return_array: bool = False):
        """Survival functions (scikit-survival StepFunctions, or an array with ``return_array``)."""
        return self.model.predict_survival_function(X, return_array=return_array)


def fit_preset(
    name: str,
    train_df: pd.DataFrame,
    y_train,
    *,
    cv: int = 5,
    param_grid: dict | list | None = None,
    random_state: int | None = 0,
    n_estimators: int = 400,
    n_jobs: int | None = None,
    groups: dict | None = None,
) -> PresetFit:
    """Tune a preset's random survival forest by k-fold CV on the training cohort and refit it.

    The pipeline is :class:`PresetFeatures` (column choice, stage coding) followed by
    :func:`~esoct.survival.forest.paper_rsf`. Hyper-parameters are chosen by
    :class:`~sklearn.model_selection.GridSearchCV` maximising Harrell's C over ``cv``
    folds stratified by event status (each row is one patient, so folds are patient-level;
    a duplicated ``patient_id`` is an error), then the best setting is refitted on the
    whole training cohort. Nothing of the test cohort is seen.

    Parameters
    ----------
    name : str
        One of :data:`PRESET_NAMES` (or a key of ``groups``).
    train_df : pandas.DataFrame
        Training feature table, one row per patient.
    y_train : structured array
        Training outcome (event, time).
    cv : int
        Number of folds (the paper: 5).
    param_grid : dict or list of dict, optional
        Grid over the forest's parameters; keys may omit the ``rsf__`` prefix. Default
        :data:`DEFAULT_PARAM_GRID` (nodesize 10 or 15).
    random_state : int or None
        Seed of the folds and of the forest.
    n_estimators : int
        Trees per forest (the paper: 400; fewer in tests).
    n_jobs : int or None
        Threads of each forest.
    groups : dict, optional
        Feature groups, default :data:`FEATURE_GROUPS`.

    Returns
    -------
    PresetFit

    References
    ----------
    .. [1] Hu X, et al. Longitudinal CT-based deep learning radiomics ... J Cancer 2026;17:808
       ("The optimal hyperparameters of the models were determined based on five-fold
       cross-validation").
    """
    _check_patients(train_df, "train_df")
    event, time = _survival_arrays(y_train, len(train_df), "y_train")
    if cv < 2:
        raise ValueError(f"cv must be at least 2, got {cv}")
    if event.sum() < cv:
        raise InputError(f"{cv}-fold CV needs at least {cv} events in the training cohort, got {int(event.sum())}")
    y = _structured(event, time)
    features = PresetFeatures(name, groups=groups).fit(train_df)
    pipe = Pipeline(
        [
            ("features", PresetFeatures(name, groups=groups)),
            ("rsf", paper_rsf(random_state=random_state, n_estimators=n_estimators, n_jobs=n_jobs)),
        ]
    )
    grid = DEFAULT_PARAM_GRID if param_grid is None else param_grid
    grids = [grid] if isinstance(grid, dict) else list(grid)
    grids = [{(k if "__" in k else f"rsf__{k}"): list(v) for k, v in g.items()} for g in grids]
    folds = list(StratifiedKFold(n_splits=cv, shuffle=True, random_state=random_state).split(np.zeros(len(y)), event))
    search = GridSearchCV(pipe, grids, scoring=_harrell_c_scorer, cv=folds, refit=True, error_score="raise")
    search.fit(train_df, y)
    return PresetFit(
        name=name,
        columns=list(features.columns_),
        model=search.best_estimator_,
        best_params={k.removeprefix("rsf__"): v for k, v in search.best_params_.items()},
        cv_c_index=float(search.best_score_),
        cv_results=pd.DataFrame(search.cv_results_),
    )


def _default_times(time_train: np.ndarray, time_test: np.ndarray, n: int = 25) -> np.ndarray:
    """Evaluation grid for the integrated Brier score: 10th pooled percentile to the smaller 80th cohort percentile.

    The start is raised to the first follow-up time of either cohort when that is later: the
    IPCW Brier score is only defined within each cohort's follow-up (a small external cohort whose
    earliest time lies above the pooled 10th percentile would otherwise be refused).
    """
    lo = float(np.percentile(np.concatenate([time_train, time_test]), 10))
    lo = max(lo, float(np.min(time_test)), float(np.min(time_train)))
    hi = float(min(np.percentile(time_train, 80), np.percentile(time_test, 80)))
    if not hi > lo:
        raise InputError(
            f"cannot build a time grid for the integrated Brier score "
            f"(10th percentile {lo:g} >= 80th {hi:g}); pass times="
        )
    return np.unique(np.linspace(lo, hi, n))


def _survival_matrix(fit: PresetFit, X: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """S(t | x) of each patient at ``times`` (n_patients, n_times)."""
    fns = fit.predict_survival_function(X)
    return np.vstack([fn(times) for fn in fns])


def _paired_p(diff: np.ndarray) -> float:
    """Two-sided percentile-bootstrap p-value of a paired difference (smallest value 2 / (B + 1))."""
    d = diff[np.isfinite(diff)]
    if len(d) == 0:
        return float("nan")
    b = len(d)
    p = 2 * min((1 + np.sum(d <= 0)) / (b + 1), (1 + np.sum(d >= 0)) / (b + 1))
    return float(min(1.0, p))


def _cohort_metrics(
    risks: dict,
    survs: dict,
    event: np.ndarray,
    time: np.ndarray,
    y_train_struct: np.ndarray,
    times: np.ndarray,
    n_bootstrap: int,
    rng: np.random.Generator,
    reference: str | None,
) -> pd.DataFrame:
    """C-index and iBS of each model with paired bootstrap CIs and p-values against ``reference``."""
    from sksurv.metrics import integrated_brier_score

    y_cohort = _structured(event, time)

    def ibs(idx, surv, strict=False):
        try:
            return float(integrated_brier_score(y_train_struct, y_cohort[idx], surv[idx], times))
        except ValueError as err:
            if strict:
                raise InputError(f"integrated Brier score over times {times.min():g}-{times.max():g}: {err}") from err
            return float("nan")  # a resample whose follow-up does not cover the time grid

    def cindex(idx, risk):
        if not event[idx].any():
            return float("nan")
        return _harrell_c(event[idx], time[idx], risk[idx])

    n = len(event)
    all_idx = np.arange(n)
    boots = rng.integers(0, n, size=(n_bootstrap, n))
    names = list(risks)
    c_boot = {m: np.array([cindex(b, risks[m]) for b in boots]) for m in names}
    i_boot = {m: np.array([ibs(b, survs[m]) for b in boots]) for m in names}
    rows = []
    for m in names:
        c_lo, c_hi = np.nanpercentile(c_boot[m], [2.5, 97.5]) if n_bootstrap else (np.nan, np.nan)
        i_lo, i_hi = np.nanpercentile(i_boot[m], [2.5, 97.5]) if n_bootstrap else (np.nan, np.nan)
        compare = reference is not None and m != reference and reference in risks and n_bootstrap
        rows.append(
            {
                "model": m,
                "n": n,
                "events": int(event.sum()),
                "c_index": cindex(all_idx, risks[m]),
                "c_index_lower": float(c_lo),
                "c_index_upper": float(c_hi),
                "c_index_p": _paired_p(c_boot[m] - c_boot[reference]) if compare else float("nan"),
                "ibs": ibs(all_idx, survs[m], strict=True),
                "ibs_lower": float(i_lo),
                "ibs_upper": float(i_hi),
                "ibs_p": _paired_p(i_boot[m] - i_boot[reference]) if compare else float("nan"),
                "n_bootstrap_valid": int(np.sum(np.isfinite(c_boot[m]) & np.isfinite(i_boot[m]))),
            }
        )
    return pd.DataFrame(rows)


def evaluate_presets(
    train_df: pd.DataFrame,
    y_train,
    test_df: pd.DataFrame,
    y_test,
    names=PRESET_NAMES,
    *,
    reference: str | None = "Clinical",
    cv: int = 5,
    param_grid: dict | list | None = None,
    n_estimators: int = 400,
    n_bootstrap: int = 1000,
    times=None,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    fits: dict | None = None,
) -> pd.DataFrame:
    """Fit the presets on the training cohort and tabulate them on both cohorts, like the paper's Table 2.

    For each cohort and model: Harrell's C (scikit-survival ``concordance_index_censored``)
    and the integrated Brier score (scikit-survival ``integrated_brier_score``, IPCW with
    the censoring distribution of the training cohort, over ``times``), each with a 95 %
    percentile bootstrap CI (``n_bootstrap`` resamples of patients, seeded), and a paired
    bootstrap p-value against ``reference``: the same resamples are used for all models and
    the p-value is the two-sided percentile-bootstrap test of the difference,
    ``2 * min(P*(d <= 0), P*(d >= 0))`` with the +1 correction. Resamples without events or
    whose follow-up does not cover ``times`` are skipped (``n_bootstrap_valid``).

    Training-cohort numbers are apparent (resubstitution) and optimistic for a forest; the
    honest training estimate is ``cv_c_index``, the mean C over the CV folds of the tuned
    setting.

    Parameters
    ----------
    train_df, test_df : pandas.DataFrame
        Feature tables, one row per patient (e.g. centre A and centre B).
    y_train, y_test : structured array
        Outcomes (event, time).
    names : sequence of str
        Presets to fit, in table order.
    reference : str or None
        Model the p-values compare with (the paper: Clinical).
    cv, param_grid, n_estimators, random_state, n_jobs
        See :func:`fit_preset`.
    n_bootstrap : int
        Bootstrap resamples (the paper: 1000).
    times : array-like, optional
        Time grid of the integrated Brier score; default 25 points from the 10th percentile
        of all observed times to the smaller of the two cohorts' 80th percentiles.
    fits : dict, optional
        Already fitted ``{name: PresetFit}``; missing presets are fitted.

    Returns
    -------
    pandas.DataFrame
        One row per cohort ("train", "test") and model: ``cohort, model, n, events,
        c_index, c_index_lower, c_index_upper, c_index_p, ibs, ibs_lower, ibs_upper, ibs_p,
        n_bootstrap_valid, cv_c_index, best_params``.

    References
    ----------
    .. [1] Harrell FE, Lee KL, Mark DB. Multivariable prognostic models. Stat Med
       1996;15:361-387.
    .. [2] Graf E, Schmoor C, Sauerbrei W, Schumacher M. Assessment and comparison of
       prognostic classification schemes for survival data. Stat Med 1999;18:2529-2545.
    .. [3] Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall 1993.
    """
    names = list(names)
    if reference is not None and reference not in names:
        raise InputError(f"reference model {reference!r} is not among the presets {names}")
    _check_patients(test_df, "test_df")
    _check_patients(train_df, "train_df")
    if "patient_id" in train_df.columns and "patient_id" in test_df.columns:
        shared = set(train_df["patient_id"]) & set(test_df["patient_id"])
        if shared:
            raise InputError(f"{len(shared)} patient(s) are in both cohorts, e.g. {min(map(str, shared))!r}")
    ev_tr, t_tr = _survival_arrays(y_train, len(train_df), "y_train")
    ev_te, t_te = _survival_arrays(y_test, len(test_df), "y_test")
    if not ev_te.any():
        raise InputError("y_test: all patients are censored; the C-index is undefined")
    grid = _default_times(t_tr, t_te) if times is None else np.unique(np.asarray(times, dtype=float))
    if grid.max() >= t_tr.max():
        raise InputError(f"times must stay below the last training time {t_tr.max():g}")
    fits = dict(fits or {})
    for name in names:
        if name not in fits:
            fits[name] = fit_preset(
                name,
                train_df,
                y_train,
                cv=cv,
                param_grid=param_grid,
                random_state=random_state,
                n_estimators=n_estimators,
                n_jobs=n_jobs,
            )
    y_train_struct = _structured(ev_tr, t_tr)
    tables = []
    for k, (cohort, df, ev, t) in enumerate((("train", train_df, ev_tr, t_tr), ("test", test_df, ev_te, t_te))):
        risks = {m: fits[m].predict(df) for m in names}
        survs = {m: _survival_matrix(fits[m], df, grid) for m in names}
        rng = np.random.default_rng(None if random_state is None else [random_state, k])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            table = _cohort_metrics(risks, survs, ev, t, y_train_struct, grid, n_bootstrap, rng, reference)
        table.insert(0, "cohort", cohort)
        table["cv_c_index"] = [fits[m].cv_c_index if cohort == "train" else np.nan for m in names]
        table["best_params"] = [", ".join(f"{p}={v}" for p, v in fits[m].best_params.items()) for m in names]
        tables.append(table)
    return pd.concat(tables, ignore_index=True)
