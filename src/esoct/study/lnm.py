"""Lymph-node metastasis from the tumour's pre-treatment radiomics: cross-validation, external test, model file.

Pipeline (every data-dependent step inside the training fold): the lymph nodes' features on the
baseline CT (label 4: count, volume, sphericity, elasticity-map entropy, fractal dimensions;
:mod:`esoct.features.nodes`; the RLN paper's approach, the default) and/or the PyRadiomics features of
the tumour (label 1) -> median imputation -> near-constant features dropped ->
|r| > 0.9 correlation filter -> standardisation -> LASSO-logistic selection (C by inner
cross-validated AUC, at least one feature kept) -> logistic regression. Patient-level stratified
folds on the training centres give out-of-fold probabilities; the model refitted on every training
patient predicts the external test centres, with the threshold chosen (Youden) on the training
out-of-fold probabilities only.

Outputs in the study directory: ``features/radiomics_lnm.parquet``, ``features/nodes.parquet``, ``results/lnm/`` (``folds.json``,
``predictions.csv``, ``metrics.csv``, ``selected_features.csv``, ``metrics.json``, figures ROC,
calibration, decision curve, confusion) and ``models/lnm/model.skops`` (the contract of
:mod:`esoct.bundle`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import InputError

MODEL_FORMAT = "esoct-radiomics-model/1"

#: Feature sets of the LNM model: the nodes' own features (the RLN paper), the tumour's radiomics, or both.
FEATURE_SETS = ("nodes", "tumour", "tumour+nodes")


@dataclass
class LnmStudy:
    """What :func:`run_lnm_study` produced.

    Attributes
    ----------
    predictions : pandas.DataFrame
        ``patient_id``, ``center``, ``cohort`` ("cv" or "test"), ``fold``, ``lnm``, ``p_lnm``.
    metrics : pandas.DataFrame
        One row per cohort: n, AUC with DeLong CI, threshold metrics, Brier score.
    selected : list of str
        Features of the final model.
    failures : dict
        Patient id -> reason (feature extraction).
    """

    predictions: pd.DataFrame
    metrics: pd.DataFrame
    selected: list
    failures: dict


#: Inner folds of the LASSO's penalty choice (checked by the study file: every class in each).
INNER_FOLDS = 3


def lnm_pipeline(seed: int = 0, inner_cv: int = INNER_FOLDS):
    """The LNM classifier as one scikit-learn pipeline (fit it on training patients only).

    Parameters
    ----------
    seed : int
        Seed of the LASSO's inner folds and solver.
    inner_cv : int
        Inner folds of the LASSO penalty choice.

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``predict_proba(X)[:, 1]`` is the probability of nodal metastasis; ``X`` is a DataFrame
        of PyRadiomics feature columns.
    """
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from esoct.select.binary import LassoLogisticSelector
    from esoct.select.correlation import CorrelationFilter

    return Pipeline([
        ("impute", SimpleImputer(strategy="median")),
        ("variance", VarianceThreshold(1e-12)),
        ("correlation", CorrelationFilter(0.9)),
        ("scale", StandardScaler()),
        ("lasso", LassoLogisticSelector(Cs=15, cv=inner_cv, random_state=seed)),
        ("logistic", LogisticRegression(max_iter=2000)),
    ]).set_output(transform="pandas")


def feature_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Numeric PyRadiomics feature columns of a cohort table, indexed by patient (diagnostics dropped)."""
    data = table.set_index("patient_id")
    keep = [c for c in data.columns if c.startswith("original_") or c.startswith("wavelet") or c.startswith("log-")]
    return data[keep].apply(pd.to_numeric, errors="coerce").astype(float)


def run_lnm_study(
    manifest_path: str | Path,
    out: str | Path,
    *,
    test_centers=(),
    params=None,
    folds: int = 5,
    seed: int = 0,
    workers: int | None = None,
    scheduler=None,
    progress: bool = True,
    features: str = "nodes",
) -> LnmStudy:
    """Run the lymph-node metastasis task of a study.

    Parameters
    ----------
    manifest_path : str or Path
        Cohort manifest with ``lnm`` (0/1) and the baseline image and mask.
    out : str or Path
        Study directory.
    test_centers : sequence of str
        External test centres (may be empty: cross-validation only).
    params : str, Path or dict, optional
        PyRadiomics parameter file (default: esoct's longitudinal settings).
    folds : int
        Patient-level stratified folds on the training centres.
    seed : int
        Folds, inner selection, bootstrap.
    workers : int, optional
        Local processes of the feature extraction.
    scheduler : optional
        Dask scheduler address or client for the feature extraction.
    progress : bool
        Progress bars.
    features : {"nodes", "tumour", "tumour+nodes"}
        ``nodes`` (default, as the RLN paper): the lymph nodes' features (label 4: count, volume,
        sphericity, elasticity-map entropy, fractal dimensions; :mod:`esoct.features.nodes`);
        ``tumour``: PyRadiomics features of the tumour; ``tumour+nodes``: both.

    Returns
    -------
    LnmStudy
    """
    from esoct.io.model_store import save_model

    from esoct.features.cohort import extract_cohort
    from esoct.features.radiomics import RadiomicsExtractor
    from esoct.train.folds import fold_split, load_or_make_folds

    out = Path(out)
    res_dir, model_dir = out / "results" / "lnm", out / "models" / "lnm"
    res_dir.mkdir(parents=True, exist_ok=True)
    manifest = pd.read_csv(manifest_path, dtype={"patient_id": str, "center": str})
    if features not in FEATURE_SETS:
        raise InputError(f"LNM features must be one of {FEATURE_SETS}, got {features!r}")
    failures, parts = {}, []
    if "tumour" in features:
        tumour = extract_cohort(manifest_path, out / "features" / "radiomics_lnm.parquet", params=params,
                                timepoints=("pre",), workers=workers, scheduler=scheduler, progress=progress,
                                cache_dir=out / "features" / "cache" / "radiomics",
                                failures_csv=out / "features" / "failures_lnm.csv", label=1)
        failures.update({r.patient_id: r.reason for r in tumour.failures.itertuples()})
        parts.append(feature_matrix(tumour.table[tumour.table["timepoint"] == "pre"]))
    node_settings = None
    if "nodes" in features:
        from esoct.features.nodes import NodeSettings, node_features_cohort

        node_settings = NodeSettings()
        nodes = node_features_cohort(manifest_path, settings=node_settings, progress=progress,
                                     failures_csv=out / "features" / "failures_nodes.csv")
        nodes.table.to_parquet(out / "features" / "nodes.parquet")
        failures.update({r.patient_id: r.reason for r in nodes.failures.itertuples()})
        parts.append(nodes.table.set_index("patient_id").astype(float))
    X = parts[0] if len(parts) == 1 else parts[0].join(parts[1], how="inner")
    info = manifest.set_index("patient_id").loc[X.index]
    y = pd.to_numeric(info["lnm"], errors="coerce")
    usable = y.notna()
    for pid in y.index[~usable]:
        failures[pid] = f"patient {pid}: lnm is missing or not 0/1"
    X, y, info = X[usable], y[usable].astype(int), info[usable]
    is_test = info["center"].astype(str).isin([str(c) for c in test_centers]).to_numpy()
    X_train, y_train = X[~is_test], y[~is_test]
    if y_train.nunique() < 2:
        raise InputError("the training centres hold only one LNM class; the task needs both", manifest_path)

    fold_table = load_or_make_folds(res_dir / "folds.json", list(X_train.index), list(y_train), n_splits=folds,
                                    seed=seed)
    oof = pd.Series(np.nan, index=X_train.index)
    fold_of = pd.Series(-1, index=X_train.index)
    for k in range(folds):
        train_ids, test_ids = fold_split(fold_table, k)
        model = lnm_pipeline(seed + k).fit(X_train.loc[train_ids], y_train.loc[train_ids])
        oof.loc[test_ids] = model.predict_proba(X_train.loc[test_ids])[:, 1]
        fold_of.loc[test_ids] = k

    final = lnm_pipeline(seed).fit(X_train, y_train)
    selected = list(final.named_steps["lasso"].selected_features_)
    from esoct.evaluate.threshold import youden_threshold

    threshold = float(youden_threshold(y_train.to_numpy(), oof.to_numpy()))
    rows = [pd.DataFrame({"patient_id": X_train.index, "center": info.loc[~is_test, "center"].to_numpy(),
                          "cohort": "cv", "fold": fold_of.to_numpy(), "lnm": y_train.to_numpy(),
                          "p_lnm": oof.to_numpy()})]
    if is_test.any():
        p_test = final.predict_proba(X[is_test])[:, 1]
        rows.append(pd.DataFrame({"patient_id": X.index[is_test], "center": info.loc[is_test, "center"].to_numpy(),
                                  "cohort": "test", "fold": -1, "lnm": y[is_test].to_numpy(), "p_lnm": p_test}))
    predictions = pd.concat(rows, ignore_index=True)
    predictions.to_csv(res_dir / "predictions.csv", index=False)

    metrics, doc = _metrics(predictions, threshold, seed)
    metrics.to_csv(res_dir / "metrics.csv", index=False)
    coef = final.named_steps["logistic"].coef_.ravel()
    pd.DataFrame({"feature": selected, "coefficient_per_sd": coef}).to_csv(res_dir / "selected_features.csv",
                                                                           index=False)
    pd.DataFrame(sorted(failures.items()), columns=["patient_id", "reason"]).to_csv(res_dir / "failures.csv",
                                                                                   index=False)
    doc.update({"threshold_youden_cv": threshold, "selected_features": selected, "n_features_in": int(X.shape[1]),
                "folds": folds, "seed": seed, "test_centers": [str(c) for c in test_centers],
                "failures": failures})
    (res_dir / "metrics.json").write_text(json.dumps(doc, indent=1, default=float))
    _figures(predictions, threshold, res_dir / "figures", folds)

    model_dir.mkdir(parents=True, exist_ok=True)
    save_model({"format": MODEL_FORMAT, "task": "lnm", "estimator": final, "columns": list(X.columns),
                 "radiomics_params": RadiomicsExtractor(params).params if "tumour" in features else None,
                 "label": 1, "threshold": threshold,
                 "node_settings": None if node_settings is None else dataclasses.asdict(node_settings),
                 "description": f"probability of lymph-node metastasis from baseline features ({features}; "
                                "LASSO-logistic selection + logistic regression), threshold Youden on the "
                                "training centres' out-of-fold probabilities"}, model_dir / "model.skops")
    return LnmStudy(predictions, metrics, selected, failures)


def _metrics(predictions: pd.DataFrame, threshold: float, seed: int) -> tuple[pd.DataFrame, dict]:
    from esoct.evaluate.calibration import brier
    from esoct.evaluate.roc import auc_ci
    from esoct.evaluate.threshold import threshold_metrics

    rows, doc = [], {"cohorts": {}}
    for cohort, part in predictions.groupby("cohort", sort=False):
        y, p = part["lnm"].to_numpy(), part["p_lnm"].to_numpy()
        name = "cross-validation (training centres)" if cohort == "cv" else "external test"
        if len(np.unique(y)) < 2:
            rows.append({"cohort": name, "n": len(y), "events": int(y.sum()), "auc": "n/a (one class)"})
            continue
        auc = auc_ci(y, p)
        tm = threshold_metrics(y, p, threshold=threshold, seed=seed)
        br = brier(y, p, seed=seed)
        rows.append({"cohort": name, "n": len(y), "events": int(y.sum()), "auc": str(auc),
                     **{m: str(getattr(tm, m)) for m in ("accuracy", "sensitivity", "specificity", "ppv", "npv")},
                     "brier": str(br)})
        doc["cohorts"][cohort] = {"n": int(len(y)), "auc": auc.as_dict(), "threshold": tm.as_dict(),
                                  "brier": br.as_dict()}
    return pd.DataFrame(rows), doc


def _figures(predictions: pd.DataFrame, threshold: float, fig_dir: Path, folds: int) -> None:
    from esoct.evaluate.decision_curve import net_benefit
    from esoct.evaluate.threshold import confusion
    from esoct.report.figures import plot_calibration, plot_confusion, plot_decision_curve, plot_roc_folds

    cv = predictions[predictions["cohort"] == "cv"]
    pairs = [(f["lnm"].to_numpy(), f["p_lnm"].to_numpy()) for _, f in cv.groupby("fold")
             if f["lnm"].nunique() == 2]
    if pairs:
        plot_roc_folds(pairs, title=f"LNM: ROC per fold ({folds}-fold CV)", path=fig_dir / "roc_cv.png")
    test = predictions[predictions["cohort"] == "test"]
    main = test if test["lnm"].nunique() == 2 else cv
    label = "external test" if main is test else "cross-validation"
    y, p = main["lnm"].to_numpy(), main["p_lnm"].to_numpy()
    plot_calibration(y, p, n_bins=5, strategy="quantile", label="LNM model", title=f"LNM: calibration ({label})",
                     path=fig_dir / "calibration.png")
    nb = net_benefit(y, p)
    plot_decision_curve(nb["threshold"], nb["net_benefit_model"], nb["net_benefit_all"], label="LNM model",
                        title=f"LNM: decision curve ({label})", path=fig_dir / "decision_curve.png")
    cm = confusion(y, (p >= threshold).astype(int), labels=[0, 1])
    plot_confusion(np.asarray(cm), ["N0", "N+"], title=f"LNM at the CV Youden threshold ({label})",
                   path=fig_dir / "confusion.png")
