"""Lymph-node DEM / fractal features, an LNM radiomics model and delta-radiomics survival signal on a phantom cohort.

Reports, with the machine and the wall time of each part:

(a) node features (esoct.features.nodes: DEM entropy, fractal dimensions, shape), metastatic vs
    non-metastatic patients: Mann-Whitney U p-value and AUC (DeLong 95 % CI) of each, as the RLN
    paper reports them (AUC > 0.5: higher in metastatic patients);
(b) an LNM model: PyRadiomics original-image features (shape, first order, GLCM; the small
    parameter set ``SMALL_PARAMS`` below) of the tumour and of the lymph nodes, with and without
    the node DEM features; median imputation, scaling, correlation filter (|r| > 0.8) and LASSO
    logistic selection fitted inside each training fold, then logistic regression; stratified
    5-fold cross-validated AUC (pooled out-of-fold AUC with DeLong 95 % CI, and mean +/- SD over folds);
(c) delta-radiomics: the same original-image features of the tumour pre- and post-treatment,
    ``(post - pre) / pre`` (esoct.features.delta), univariate Cox Wald p-values against
    os_months / os_event; the top features and how many reach p < 0.05.

The phantom is used as generated (no parameter is tuned here). Run:
``.venv/bin/python bench/phantom_features.py [--patients 300] [--out DIR] [--seed 2026] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

sys.path.insert(0, str(Path(__file__).parent))
from bench_phantom import machine  # noqa: E402

SMALL_PARAMS = {
    "setting": {
        "binWidth": 25,
        "resampledPixelSpacing": [1, 1, 1],
        "interpolator": "sitkBSpline",
        "padDistance": 5,
        "label": 1,
        "normalize": False,
        "minimumROIDimensions": 2,
        "additionalInfo": False,
    },
    "imageType": {"Original": {}},
    "featureClass": {"shape": None, "firstorder": None, "glcm": None},
}


def part_a(nodes: pd.DataFrame, lnm: pd.Series) -> pd.DataFrame:
    """Mann-Whitney p and AUC (DeLong CI) of every node aggregate, metastatic vs not."""
    from scipy.stats import mannwhitneyu

    from esoct.evaluate.roc import auc_ci

    rows = []
    table = nodes.set_index("patient_id").join(lnm, how="inner")
    for col in [c for c in nodes.columns if c.startswith("node_") and c != "node_count"] + ["node_count"]:
        sub = table[[col, "lnm"]].dropna()
        y, x = sub["lnm"].to_numpy(int), sub[col].to_numpy(float)
        if len(np.unique(y)) < 2 or np.ptp(x) == 0:
            continue
        p = mannwhitneyu(x[y == 1], x[y == 0], alternative="two-sided").pvalue
        ci = auc_ci(y, x)
        rows.append({"feature": col, "n": len(y), "median_lnm1": np.median(x[y == 1]), "median_lnm0": np.median(x[y == 0]),
                     "mw_p": p, "auc": ci.estimate, "auc_low": ci.low, "auc_high": ci.high})
    return pd.DataFrame(rows).sort_values("mw_p")


class LogisticOrPrior(ClassifierMixin, BaseEstimator):
    """Logistic regression; when the fold's selection kept no feature, the training prevalence (AUC 0.5).

    Defined here (a benchmark helper, not part of esoct) so that a LASSO that keeps nothing in one
    fold scores that fold as an uninformative model instead of stopping the whole cross-validation.
    """

    def __init__(self, max_iter: int = 2000):
        self.max_iter = max_iter

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y)
        self.classes_ = np.unique(y)
        self.prior_ = float(np.mean(y == self.classes_[1]))
        self.model_ = LogisticRegression(max_iter=self.max_iter).fit(X, y) if np.shape(X)[1] else None
        return self

    def predict_proba(self, X):
        if self.model_ is not None:
            return self.model_.predict_proba(X)
        p = np.full(np.shape(X)[0], self.prior_)
        return np.column_stack([1 - p, p])


def lnm_pipeline():
    """Imputation, scaling, correlation filter and LASSO selection inside the fold, then logistic regression."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from esoct.select import CorrelationFilter, LassoLogisticSelector

    return Pipeline([
        ("impute", SimpleImputer(strategy="median").set_output(transform="pandas")),
        ("scale", StandardScaler().set_output(transform="pandas")),
        ("corr", CorrelationFilter(threshold=0.8)),
        ("lasso", LassoLogisticSelector(Cs=20, cv=5, random_state=0)),
        ("clf", LogisticOrPrior(max_iter=2000)),
    ])


def part_b(models: dict[str, pd.DataFrame], lnm: pd.Series, seed: int) -> pd.DataFrame:
    """5-fold cross-validated AUC of each feature set."""
    from esoct.evaluate.roc import auc_ci
    from esoct.select import cross_validated_auc

    import warnings

    rows = []
    for name, X in models.items():
        X = X.loc[:, X.notna().mean() > 0.5]
        y = lnm.reindex(X.index).to_numpy(int)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="No features were selected")
                res = cross_validated_auc(lnm_pipeline(), X, y, cv=5, seed=seed)
        except Exception as exc:  # noqa: BLE001 - reported, the other models go on
            rows.append({"model": name, "n_features": X.shape[1], "error": f"{type(exc).__name__}: {exc}"})
            continue
        ci = auc_ci(y, res.oof.to_numpy())
        rows.append({"model": name, "n_features": X.shape[1], "pooled_auc": res.pooled_auc, "auc_low": ci.low,
                     "auc_high": ci.high, "fold_mean": res.mean_auc, "fold_sd": res.std_auc,
                     "selected_all_data": _selected(X, y)})
    return pd.DataFrame(rows)


def _selected(X: pd.DataFrame, y: np.ndarray) -> str:
    """Features the pipeline selects when fitted on every patient (for reading only; the AUC is cross-validated)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No features were selected")
        model = lnm_pipeline().fit(X, y)
    kept = np.asarray(X.columns)[model.named_steps["corr"].get_support()]  # names before the LASSO
    names = list(kept[model.named_steps["lasso"].get_support()])
    return f"{len(names)}: " + ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")


def part_c(tumour: pd.DataFrame, clinical: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Univariate Cox p-values of the delta features."""
    from esoct.features.delta import delta_features
    from esoct.select.cox import univariate_cox

    delta = delta_features(tumour)
    table = delta.table.set_index("patient_id").join(clinical[["os_months", "os_event"]], how="inner")
    feats = [c for c in delta.table.columns if c.startswith("delta_")]
    usable = [c for c in feats if table[c].notna().all() and table[c].std() > 0]
    res = univariate_cox(table[usable].to_numpy(float), table["os_event"].to_numpy(bool), table["os_months"].to_numpy(float))
    sd = table[usable].std().to_numpy()
    out = pd.DataFrame({"feature": usable, "hr_per_sd": np.exp(res["coef"] * sd), "wald_p": res["p"]}).sort_values("wald_p")
    info = {"n_patients": len(table), "n_delta": len(feats), "n_usable": len(usable),
            "n_nan_cells": len(delta.nan_report), "n_p_lt_0.05": int((out["wald_p"] < 0.05).sum()),
            "n_p_lt_0.1": int((out["wald_p"] < 0.1).sum())}
    return out, info


def main() -> None:
    from esoct.features.cohort import extract_cohort
    from esoct.features.nodes import node_features_cohort
    from esoct.phantom.cohort import generate_cohort

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=None, help="cohort and feature folder (default: a temporary one)")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    tmp = None if args.out else tempfile.TemporaryDirectory()
    root = Path(args.out or tmp.name)
    cohort = root / "cohort"
    times = {}
    t0 = time.perf_counter()
    if not (cohort / "manifest.csv").is_file():
        generate_cohort(cohort, args.patients, seed=args.seed, workers=args.workers, progress=False)
    times["phantom"] = time.perf_counter() - t0
    clinical = pd.read_csv(cohort / "manifest.csv", dtype={"patient_id": str}).set_index("patient_id")
    lnm = clinical["lnm"].astype(int)
    print(f"cohort: {len(clinical)} patients (seed {args.seed}), LNM {int(lnm.sum())} / {len(lnm)}, "
          f"events {int(clinical['os_event'].sum())}")

    t0 = time.perf_counter()
    nodes = node_features_cohort(cohort / "manifest.csv")
    times["node features"] = time.perf_counter() - t0
    print(f"\n(a) node features, metastatic vs not ({len(nodes.table)} patients, {len(nodes.nodes)} nodes, "
          f"{len(nodes.failures)} failures)")
    print(part_a(nodes.table, lnm).to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    t0 = time.perf_counter()
    kw = dict(params=SMALL_PARAMS, workers=args.workers, progress=False)
    tum = extract_cohort(cohort / "manifest.csv", root / "feat" / "tumour.parquet", timepoints=("pre", "post"), label=1, **kw)
    nod = extract_cohort(cohort / "manifest.csv", root / "feat" / "nodes.parquet", timepoints=("pre",), label=4, **kw)
    times["radiomics"] = time.perf_counter() - t0
    tum_pre = tum.table[tum.table["timepoint"] == "pre"].drop(columns="timepoint").set_index("patient_id").add_prefix("tumour_")
    nod_pre = nod.table.drop(columns="timepoint").set_index("patient_id").add_prefix("nodes_")
    dem = nodes.table.set_index("patient_id")
    radiomics = tum_pre.join(nod_pre, how="inner")
    t0 = time.perf_counter()
    models = {"tumour + node radiomics": radiomics, "node DEM/fractal only": dem,
              "radiomics + node DEM/fractal": radiomics.join(dem, how="inner")}
    print(f"\n(b) LNM model, 5-fold CV, selection inside the folds ({len(tum.failures) + len(nod.failures)} radiomics failures)")
    print(part_b(models, lnm, args.seed).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    times["LNM CV"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cox, info = part_c(tum.table, clinical)
    times["delta + Cox"] = time.perf_counter() - t0
    print(f"\n(c) delta-radiomics vs overall survival, univariate Cox: {info}")
    print(cox.head(10).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("\nwall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + f"; total {sum(times.values()):.1f} s")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
