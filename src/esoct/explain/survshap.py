"""SurvSHAP(t) explanations of survival models (the survshap package): per-patient curves and global importance."""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from esoct.errors import InputError


@dataclass
class SurvShapResult:
    """SurvSHAP(t) of a set of patients (returned by :func:`survshap_explain`).

    Attributes
    ----------
    curves : pandas.DataFrame
        Long format, one row per patient, feature and time: ``patient`` (the index label of
        ``X_explain``), ``feature``, ``time``, ``value`` (the feature's contribution to the
        patient's survival probability S(t), relative to the background mean).
    importance : pandas.DataFrame
        ``feature``, ``importance`` = mean over patients and over the time grid of
        ``|SurvSHAP(t)|``, sorted decreasing (the paper's Figure 4, left).
    over_time : pandas.DataFrame
        Mean ``|SurvSHAP(t)|`` over patients; index feature (importance order), columns times
        (the paper's Figure 4, right).
    times : ndarray
        The evaluation times.
    baseline : ndarray
        Mean predicted survival of the background patients at ``times``.
    prediction : pandas.DataFrame
        Predicted survival of each explained patient at ``times`` (index patient).
    method : str
        survshap calculation method used ("kernel" or "sampling").
    """

    curves: pd.DataFrame
    importance: pd.DataFrame
    over_time: pd.DataFrame
    times: np.ndarray
    baseline: np.ndarray
    prediction: pd.DataFrame
    method: str


def _default_times(model, X_background: pd.DataFrame, n_times: int, function: str) -> np.ndarray:
    """``n_times`` quantiles (5 %..95 %) of the time grid of the model's own predicted functions."""
    predict = model.predict_survival_function if function == "sf" else model.predict_cumulative_hazard_function
    fn = predict(X_background.iloc[:1])[0]
    grid = np.asarray(fn.x, dtype=float)
    grid = grid[grid > 0] if (grid > 0).any() else grid
    return np.unique(np.quantile(grid, np.linspace(0.05, 0.95, n_times)))


def survshap_explain(
    model,
    X_background: pd.DataFrame,
    X_explain: pd.DataFrame,
    times=None,
    random_state: int | None = 0,
    *,
    y_background=None,
    method: str = "auto",
    n_permutations: int = 25,
    max_exact_features: int = 10,
    n_times: int = 20,
    function: str = "sf",
) -> SurvShapResult:
    """SurvSHAP(t) of each patient in ``X_explain`` against the background ``X_background``.

    Wraps ``survshap.SurvivalModelExplainer`` and ``survshap.PredictSurvSHAP``. The model
    needs ``predict_survival_function(X)`` returning step functions (scikit-survival
    estimators and pipelines, :class:`esoct.survival.cox.CoxPH`,
    :class:`esoct.survival.presets.PresetFit`). Pass only the columns the model uses.

    Cost, in rows the model must predict: ``"kernel"`` (exact Kernel SHAP over all
    coalitions) needs ``n_explain * 2**p * n_background``; ``"sampling"`` (average over
    ``n_permutations`` random feature orders) needs ``n_explain * n_permutations * (p + 1)
    * n_background``. With a 400-tree forest one predicted row costs roughly 0.1-1 ms plus
    survshap's per-function Python overhead, so 50 background x 50 explained patients x 30
    features with 25 permutations is about 2 million rows: minutes to an hour. Keep the
    background small (20-100 patients, as survshap itself advises) and explain a sample.

    Parameters
    ----------
    model : estimator
        Fitted survival model.
    X_background : pandas.DataFrame
        Reference patients (the "average patient" the contributions are measured from).
    X_explain : pandas.DataFrame
        Patients to explain; same columns. Its index labels name the patients.
    times : array-like, optional
        Evaluation times; default ``n_times`` quantiles (5 %..95 %) of the model's time grid.
    random_state : int or None
        Seed of the permutations (each patient gets its own stream). numpy's global random
        state, which survshap reseeds, is restored afterwards.
    y_background : structured array, optional
        Outcome of the background patients; survshap only uses it in its own plots, a
        placeholder is used when absent.
    method : {"auto", "kernel", "sampling"}
        ``"auto"``: exact ``"kernel"`` when ``p <= max_exact_features``, else ``"sampling"``.
        (survshap 0.4.2's per-patient ``"treeshap"`` is broken and not offered.)
    n_permutations : int
        Random orders per patient for ``"sampling"`` (survshap's ``B``).
    max_exact_features : int
        Largest ``p`` for which ``"auto"`` uses the exact method.
    n_times : int
        Size of the default time grid.
    function : {"sf", "chf"}
        Explain the survival function or the cumulative hazard.

    Returns
    -------
    SurvShapResult

    References
    ----------
    .. [1] Krzyzinski M, Spytek M, Baniecki H, Biecek P. SurvSHAP(t): time-dependent
       explanations of machine learning survival models. Knowl Based Syst 2023;262:110234.
    .. [2] Lundberg SM, Lee SI. A unified approach to interpreting model predictions.
       NeurIPS 2017.
    """
    from survshap import PredictSurvSHAP, SurvivalModelExplainer

    from esoct.survival.cox import _as_frame, _structured

    if not isinstance(X_background, pd.DataFrame) or not isinstance(X_explain, pd.DataFrame):
        raise InputError("X_background and X_explain must be pandas DataFrames (feature names are reported)")
    if list(X_background.columns) != list(X_explain.columns):
        raise InputError("X_background and X_explain must have the same columns in the same order")
    if function not in ("sf", "chf"):
        raise ValueError(f"function must be 'sf' or 'chf', got {function!r}")
    if X_explain.index.has_duplicates:
        raise InputError("X_explain has duplicated index labels; they name the patients and must be unique")
    background = _as_frame(X_background, what="X_background").reset_index(drop=True)
    explain = _as_frame(X_explain, what="X_explain")
    labels = list(explain.index)
    explain = explain.reset_index(drop=True)
    p = background.shape[1]
    if method == "auto":
        method = "kernel" if p <= max_exact_features else "sampling"
    if method not in ("kernel", "sampling"):
        raise ValueError(f"method must be 'auto', 'kernel' or 'sampling', got {method!r}")
    if y_background is None:
        y_background = _structured(np.ones(len(background), dtype=bool), np.ones(len(background)))
    grid = _default_times(model, background, n_times, function) if times is None else np.asarray(times, dtype=float)
    grid = np.atleast_1d(grid)

    explainer = SurvivalModelExplainer(model, background, y_background)
    if random_state is None:
        seeds = [None] * len(explain)
    else:
        seeds = np.random.SeedSequence(random_state).generate_state(len(explain))
    rows, preds = [], []
    baseline = None
    state = np.random.get_state()
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("always")
            for i in range(len(explain)):
                ex = PredictSurvSHAP(
                    function_type=function,
                    calculation_method=method,
                    B=n_permutations,
                    random_state=None if seeds[i] is None else int(seeds[i]),
                    aggregation_method="mean_abs",
                )
                ex.fit(explainer, explain.iloc[[i]], timestamps=grid)
                res = ex.result[ex.result["B"] == 0]
                tcols = [c for c in res.columns if isinstance(c, str) and c.startswith("t = ")]
                values = res[tcols].to_numpy(dtype=float)
                for feat, vals in zip(res["variable_name"], values):
                    rows.append(pd.DataFrame({"patient": labels[i], "feature": feat, "time": grid, "value": vals}))
                preds.append(np.asarray(ex.predicted_function, dtype=float))
                baseline = np.asarray(ex.baseline_function, dtype=float)
    finally:
        np.random.set_state(state)
    for w in caught:
        if "background data samples" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    curves = pd.concat(rows, ignore_index=True)
    feature_pos = {f: k for k, f in enumerate(background.columns)}
    patient_pos = {lab: k for k, lab in enumerate(labels)}
    curves = (
        curves.assign(_p=curves["patient"].map(patient_pos), _f=curves["feature"].map(feature_pos))
        .sort_values(["_p", "_f", "time"], kind="stable")
        .drop(columns=["_p", "_f"])
        .reset_index(drop=True)
    )
    over_time = curves.assign(abs_value=curves["value"].abs()).pivot_table(
        index="feature", columns="time", values="abs_value", aggfunc="mean"
    )
    importance = over_time.mean(axis=1).sort_values(ascending=False, kind="stable")
    over_time = over_time.loc[importance.index]
    return SurvShapResult(
        curves=curves,
        importance=importance.rename("importance").rename_axis("feature").reset_index(),
        over_time=over_time,
        times=grid,
        baseline=baseline,
        prediction=pd.DataFrame(np.vstack(preds), index=pd.Index(labels, name="patient"), columns=grid),
        method=method,
    )
