"""The longitudinal survival study, end to end: radiomics -> delta -> selection -> six models -> Table 2 and figures.

The stages are the longitudinal paper's, each fitted on the training cohort (centres given by
the user) and applied unchanged to the external test cohort:

1. PyRadiomics features of the pre- and post-treatment tumour (:func:`extract_cohort`), and of a
   second segmentation of the pre-treatment scan for the ICC (:func:`extract_second_reading`);
2. delta-radiomics ``(post - pre) / pre`` (:func:`esoct.features.delta.delta_features`);
3. clinical covariates: age, clinical stage and the tumour volume reduction rate
   ``(V_pre - V_post) / V_pre`` from the two masks' voxel volumes;
4. delta selection on the training cohort only: ICC >= 0.8 of the pre-treatment feature between
   the two segmentations -> correlation filter |r| > 0.8 -> univariate Cox p < 0.1 -> LASSO-Cox;
5. the six presets (:func:`esoct.survival.presets.evaluate_presets`; deep-feature presets only
   when a deep-feature table is given), C-index and integrated Brier score with bootstrap CIs
   on both cohorts, p-values against the clinical model;
6. risk groups at the training median of the Fusion model, Kaplan-Meier of the test cohort with
   log-rank p, multivariable Cox of the group adjusted for the clinical covariates, and the
   time-dependent C-index curves of the test cohort.

Every stage writes its output into the study directory; features are cached by the extractor,
so a rerun recomputes only what changed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import InputError
from esoct.survival.endpoints import endpoint_columns, endpoint_title

log = logging.getLogger("esoct")

#: The radiomics shape feature the volume reduction rate is computed from (mm^3, voxel count x volume).
VOLUME_FEATURE = "original_shape_VoxelVolume"


@dataclass
class SurvivalStudy:
    """What :func:`run_survival_study` produced.

    Attributes
    ----------
    table2 : pandas.DataFrame
        The paper's Table 2: one row per cohort and model (see :func:`evaluate_presets`).
    features : pandas.DataFrame
        The model table: one row per patient (clinical, selected delta, deep features, outcome).
    selected : list of str
        Delta features kept by the selection on the training cohort.
    selection_steps : pandas.DataFrame
        How many features each selection step kept.
    km : object
        :class:`esoct.survival.risk_groups.KaplanMeierResult` of the test cohort by risk group.
    adjusted : pandas.DataFrame
        Multivariable Cox of the risk group adjusted for clinical covariates (test cohort).
    out_dir : Path
        The study directory.
    notes : list of str
        What was skipped and why (e.g. a preset without features).
    """

    table2: pd.DataFrame
    features: pd.DataFrame
    selected: list
    selection_steps: pd.DataFrame
    km: object
    adjusted: pd.DataFrame
    out_dir: Path
    notes: list = field(default_factory=list)


# --------------------------------------------------------------------------- tables


def clinical_table(manifest, radiomics: pd.DataFrame, endpoint: str = "os") -> pd.DataFrame:
    """Clinical covariates and outcome per patient: age, stage, volume reduction rate, centre, endpoint.

    Parameters
    ----------
    manifest : esoct.io.manifest.Manifest
        The cohort (columns ``age``, ``stage``, ``center``, ``<endpoint>_months``, ``<endpoint>_event``).
    radiomics : pandas.DataFrame
        Long radiomics table (``patient_id``, ``timepoint``, ...) holding :data:`VOLUME_FEATURE`.
    endpoint : str
        Time-to-event endpoint: ``os`` (default), ``dfs``, ``pfs``... (:mod:`esoct.survival.endpoints`).

    Returns
    -------
    pandas.DataFrame
        ``patient_id, center, age, stage, volume_reduction_rate, <endpoint>_months, <endpoint>_event``;
        the reduction rate is ``(V_pre - V_post) / V_pre`` (NaN without a post-treatment scan).
    """
    time_col, event_col = endpoint_columns(endpoint)
    need = ["age", "stage", time_col, event_col]
    missing = [c for c in need if c not in manifest.table.columns]
    if missing:
        raise InputError(f"the manifest lacks the column(s) {missing} needed by the survival study", manifest.path)
    if VOLUME_FEATURE not in radiomics.columns:
        raise InputError(f"the radiomics table lacks {VOLUME_FEATURE}: enable the shape class in the parameters")
    volume = radiomics.pivot_table(index="patient_id", columns="timepoint", values=VOLUME_FEATURE, aggfunc="first")
    pre = volume.get("pre", pd.Series(dtype=float))
    post = volume.get("post", pd.Series(dtype=float))
    table = manifest.table.loc[manifest.table["patient_id"].isin(manifest.patients)].copy()
    table = table[["patient_id", "center", "age", "stage", time_col, event_col]].reset_index(drop=True)
    vp = table["patient_id"].map(pre).astype(float)
    vq = table["patient_id"].map(post).astype(float)
    table.insert(4, "volume_reduction_rate", np.where(vp > 0, (vp - vq) / vp, np.nan))
    table[time_col] = pd.to_numeric(table[time_col], errors="coerce").astype(float)
    table[event_col] = pd.to_numeric(table[event_col], errors="coerce")
    return table


def selection_pipeline(reader1: pd.DataFrame | None, reader2: pd.DataFrame | None, *, icc_threshold: float = 0.8,
                       corr_threshold: float = 0.8, p_threshold: float = 0.1, seed: int = 0):
    """The paper's delta-feature selection as one scikit-learn Pipeline (fitted on a training cohort).

    Parameters
    ----------
    reader1, reader2 : pandas.DataFrame or None
        Pre-treatment features of the two segmentations, indexed by patient, columns already
        named like the delta features (``delta_<name>``); ``None`` skips the ICC step.
    icc_threshold, corr_threshold, p_threshold : float
        ICC >= 0.8, |Pearson r| > 0.8, univariate Cox p < 0.1 (the paper's values).
    seed : int
        Seed of the LASSO-Cox cross-validation folds.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``icc`` (when readers are given), ``correlation``, ``univariate_cox``, ``lasso_cox``.
    """
    from sklearn.pipeline import Pipeline

    from esoct.select.correlation import CorrelationFilter
    from esoct.select.cox import LassoCoxSelector, UnivariateCoxFilter
    from esoct.select.icc import ICCFilter

    steps = []
    if reader1 is not None and reader2 is not None:
        steps.append(("icc", ICCFilter(threshold=icc_threshold, kind="ICC(2,1)", reader1=reader1, reader2=reader2)))
    steps += [
        ("correlation", CorrelationFilter(threshold=corr_threshold)),
        ("univariate_cox", UnivariateCoxFilter(p_threshold=p_threshold)),
        ("lasso_cox", LassoCoxSelector(cv=5, random_state=seed)),
    ]
    return Pipeline(steps).set_output(transform="pandas")


def _usable_delta_columns(delta: pd.DataFrame, train_ids) -> tuple[list[str], list[str]]:
    """Delta columns finite for every training patient and not constant; the others with why."""
    cols = [c for c in delta.columns if c.startswith("delta_")]
    train = delta.loc[delta.index.isin(train_ids), cols]
    finite = np.isfinite(train.to_numpy(dtype=float))
    keep, dropped = [], []
    for j, c in enumerate(cols):
        if not finite[:, j].all():
            dropped.append(f"{c}: undefined for {int((~finite[:, j]).sum())} training patient(s)")
        elif np.nanstd(train[c].to_numpy(dtype=float)) == 0:
            dropped.append(f"{c}: constant in the training cohort")
        else:
            keep.append(c)
    return keep, dropped


def select_delta(delta: pd.DataFrame, y_train, train_ids, reader1=None, reader2=None, seed: int = 0):
    """Fit the selection pipeline on the training patients' delta features.

    Parameters
    ----------
    delta : pandas.DataFrame
        Delta features indexed by patient id (``delta_*`` columns).
    y_train : structured array
        Outcome of ``train_ids`` in that order.
    train_ids : sequence of str
        Training patients.
    reader1, reader2 : pandas.DataFrame, optional
        Pre-treatment features of the two segmentations, indexed by patient, PyRadiomics names.
    seed : int
        Seed of the LASSO-Cox CV folds.

    Returns
    -------
    (selected, steps, dropped) : (list of str, pandas.DataFrame, list of str)
        The kept delta columns, the number kept after each step, and the columns left out
        before selection (undefined or constant) with the reason.
    """
    cols, dropped = _usable_delta_columns(delta, train_ids)
    if not cols:
        raise InputError("no delta feature is defined for every training patient")
    X = delta.loc[list(train_ids), cols]
    r1 = r2 = None
    if reader1 is not None and reader2 is not None:
        r1 = reader1.rename(columns=lambda c: f"delta_{c}").reindex(columns=cols)
        r2 = reader2.rename(columns=lambda c: f"delta_{c}").reindex(columns=cols)
    pipe = selection_pipeline(r1, r2, seed=seed)
    counts = [("usable", len(cols))]
    current = X
    for name, step in pipe.steps:
        if current.shape[1] == 0:
            counts.append((name, 0))
            continue
        try:
            step.fit(current, y_train)
        except InputError as exc:  # e.g. LASSO-Cox without any feature: record, keep what we have
            log.warning("delta selection step %s: %s", name, exc)
            counts.append((name, current.shape[1]))
            continue
        current = current.loc[:, list(step.get_feature_names_out())]
        counts.append((name, current.shape[1]))
    return list(current.columns), pd.DataFrame(counts, columns=["step", "n_features"]), dropped


# --------------------------------------------------------------------------- study


def run_survival_study(
    manifest_path: str | Path,
    out_dir: str | Path,
    *,
    test_centers,
    params: str | Path | dict | None = None,
    deep_features: pd.DataFrame | None = None,
    deep=None,
    slab_settings: dict | None = None,
    n_estimators: int = 400,
    n_bootstrap: int = 1000,
    cv: int = 5,
    seed: int = 0,
    workers: int | None = None,
    scheduler=None,
    progress: bool = True,
    endpoint: str = "os",
) -> SurvivalStudy:
    """Run the longitudinal survival study on a cohort and write its tables and figures.

    Parameters
    ----------
    manifest_path : str or Path
        Cohort manifest with pre- and post-treatment scans and masks, ``age``, ``stage``,
        ``center`` and the endpoint's columns (``os_months``, ``os_event`` for OS; DESIGN.md).
    out_dir : str or Path
        Study directory: ``features/`` (radiomics, second reading, delta), ``results/survival/``
        (``table2.csv``, ``selection.csv``, ``km_test.csv``, ``adjusted_cox.csv``,
        ``metrics.json``, ``figures/*.png``).
    test_centers : str or sequence of str
        Centres of the external test cohort; every other centre trains.
    params : str, Path or dict, optional
        PyRadiomics parameters (default: the paper's set, ``params/longitudinal.yaml``).
    deep_features : pandas.DataFrame, optional
        Deep features computed elsewhere, indexed by patient (``dl_pre_*``, ``dl_post_*``).
    deep : esoct.features.deep.DeepFeatureExtractor, optional
        Template of the deep-feature network, e.g. ``DeepFeatureExtractor(head="cox", width=0.25,
        epochs=10)``: one network + PCA(10) per time point is fitted on the training centres'
        2.5D slabs only (:func:`esoct.features.deep.longitudinal_deep_features`) and applied to
        every patient. Without ``deep`` or ``deep_features`` the DL presets are skipped (and
        said so in ``notes``).
    slab_settings : dict, optional
        Overrides of the 2.5D slab settings (:data:`esoct.features.deep.DEFAULT_SLAB_SETTINGS`).
    n_estimators, n_bootstrap, cv : int
        Trees per forest (paper 400), bootstrap resamples (paper 1000), CV folds (paper 5).
    seed : int
        Seed of every random choice (perturbed masks, folds, forests, bootstrap).
    workers : int, optional
        Radiomics worker processes.
    scheduler : str or distributed.Client, optional
        Dask scheduler for the radiomics extraction (:mod:`esoct.scale.dask`).
    progress : bool
        Show progress bars.
    endpoint : str
        The time-to-event endpoint modelled: ``os`` (overall survival, the paper's), ``dfs``, ``pfs``
        or any ``<name>_months`` / ``<name>_event`` pair of the manifest.

    Returns
    -------
    SurvivalStudy
    """
    from esoct.features.cohort import extract_cohort
    from esoct.features.delta import delta_features
    from esoct.features.second_reading import extract_second_reading, reader_tables
    from esoct.io.manifest import load_manifest
    from esoct.survival.presets import PRESET_NAMES, evaluate_presets, fit_preset

    out_dir = Path(out_dir)
    feat_dir, res_dir = out_dir / "features", out_dir / "results" / "survival"
    fig_dir = res_dir / "figures"
    for d in (feat_dir, fig_dir):
        d.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(manifest_path)
    test_centers = [test_centers] if isinstance(test_centers, str) else [str(c) for c in test_centers]
    centres = sorted(set(manifest.table["center"].astype(str)))
    unknown = sorted(set(test_centers) - set(centres))
    if unknown:
        raise InputError(f"test centre(s) {unknown} are not in the manifest's centres {centres}", manifest.path)
    kw = {"params": params, "workers": workers, "scheduler": scheduler, "progress": progress}
    first = extract_cohort(manifest_path, feat_dir / "radiomics.parquet", **kw)
    second = extract_second_reading(manifest_path, feat_dir / "radiomics_reader2.parquet", seed=seed, **kw)
    reader1, reader2 = reader_tables(first.table, second.features.table)
    delta_result = delta_features(first.table)
    delta = _indexed(delta_result.table)
    delta.to_parquet(feat_dir / "delta.parquet")
    delta_result.nan_report.to_csv(feat_dir / "delta_nan_report.csv", index=False)

    time_col, event_col = endpoint_columns(endpoint)
    clinical = clinical_table(manifest, first.table, endpoint).set_index("patient_id")
    table = clinical.join(delta, how="left")
    notes = []
    if deep is not None:
        deep_table = _deep_features(manifest, clinical, test_centers, deep, slab_settings, feat_dir, progress,
                                    endpoint)
        deep_table.to_parquet(feat_dir / "deep.parquet")
        table = table.join(deep_table, how="left")
    if deep_features is not None:
        table = table.join(_indexed(deep_features), how="left")
    is_test = table["center"].astype(str).isin(test_centers)
    incomplete = table.index[table[["age", "stage", "volume_reduction_rate", time_col, event_col]].isna().any(axis=1)]
    if len(incomplete):
        notes.append(f"{len(incomplete)} patient(s) left out for missing clinical covariates, {endpoint.upper()} or post scan: "
                     f"{list(incomplete[:5])}")
    table = table.drop(index=incomplete)
    is_test = is_test.loc[table.index]
    train, test = table[~is_test], table[is_test]
    if len(train) < 2 * cv or len(test) < 5:
        raise InputError(f"too few patients: {len(train)} training, {len(test)} test (centres {test_centers})")
    y_train, y_test = _surv(train, endpoint), _surv(test, endpoint)

    selected, steps, dropped = select_delta(delta, y_train, list(train.index), reader1, reader2, seed=seed)
    notes += [f"delta feature left out before selection: {d}" for d in dropped[:20]]
    if len(dropped) > 20:
        notes.append(f"... and {len(dropped) - 20} more left out before selection")
    keep = ["center", "age", "stage", "volume_reduction_rate", time_col, event_col] + selected
    keep += [c for c in table.columns if c.startswith(("dl_pre_", "dl_post_"))]
    model_table = table[keep]
    names = [n for n in PRESET_NAMES if _preset_available(n, model_table, notes)]
    train_x = model_table.loc[train.index].reset_index()
    test_x = model_table.loc[test.index].reset_index()
    fits = {n: fit_preset(n, train_x, y_train, cv=cv, n_estimators=n_estimators, random_state=seed) for n in names}
    table2 = evaluate_presets(train_x, y_train, test_x, y_test, names=names, cv=cv, n_estimators=n_estimators,
                              n_bootstrap=n_bootstrap, random_state=seed, fits=fits)
    km, adjusted = _risk_groups(fits, train_x, test_x, y_test, seed, fig_dir)
    notes += _survshap(fits, train_x, test_x, seed, res_dir)
    _write(res_dir, table2, steps, selected, km, adjusted, notes, len(train), len(test), test_centers, endpoint)
    return SurvivalStudy(table2, model_table, selected, steps, km, adjusted, out_dir, notes)


def _deep_features(manifest, clinical: pd.DataFrame, test_centers, template, slab_settings, feat_dir: Path,
                   progress: bool, endpoint: str = "os"):
    """DL_pre / DL_post features: networks and PCAs fitted on the training centres only."""
    from esoct.features.deep import build_slab_dataset, longitudinal_deep_features, manifest_targets

    slabs = build_slab_dataset(manifest, feat_dir / "cache" / "slabs", settings=slab_settings, progress=progress,
                               failures_csv=feat_dir / "slab_failures.csv")
    train_ids = clinical.index[~clinical["center"].astype(str).isin(test_centers)].tolist()
    tables = longitudinal_deep_features(slabs, manifest_targets(manifest, endpoint=endpoint), train_ids,
                                        estimator=template)
    tables.excluded.to_csv(feat_dir / "deep_excluded.csv", index=False)
    pre = _indexed(tables.dl_pre.drop(columns="fold", errors="ignore"))
    post = _indexed(tables.dl_post.drop(columns="fold", errors="ignore"))
    return pre.join(post, how="outer")


def _indexed(df: pd.DataFrame) -> pd.DataFrame:
    return df.set_index("patient_id") if "patient_id" in df.columns else df


def _surv(df: pd.DataFrame, endpoint: str = "os") -> np.ndarray:
    from sksurv.util import Surv

    time_col, event_col = endpoint_columns(endpoint)
    return Surv.from_arrays(df[event_col].astype(bool).to_numpy(), df[time_col].to_numpy(dtype=float))


def _preset_available(name: str, table: pd.DataFrame, notes: list) -> bool:
    from esoct.survival.presets import FEATURE_GROUPS

    try:
        cols = FEATURE_GROUPS[name].resolve(table.columns)
    except InputError as exc:
        notes.append(f"model {name} skipped: {exc}")
        return False
    if not cols:
        notes.append(f"model {name} skipped: no feature of its group ({'no delta feature selected' if 'delta_' in FEATURE_GROUPS[name].prefixes else 'no deep-feature table given'})")
        return False
    return True


def _risk_groups(fits: dict, train_x: pd.DataFrame, test_x: pd.DataFrame, y_test, seed: int, fig_dir: Path):
    """Risk groups from the richest model (Fusion when present), KM + log-rank and adjusted Cox on the test cohort.

    The groups are cut at the training cohort's median risk (:class:`RiskGroups`), never refitted
    on the test cohort; the time-dependent C-index curves of every model go in one figure.
    """
    from esoct.evaluate.concordance import td_c_index_curve
    from esoct.report.figures import plot_km, plot_td_cindex
    from esoct.survival.risk_groups import RiskGroups, adjusted_cox, km_by_group

    name = "Fusion" if "Fusion" in fits else list(fits)[-1]
    fit = fits[name]
    groups = RiskGroups().fit(fit.predict(train_x)).transform(fit.predict(test_x))
    time, event = y_test["time"], y_test["event"].astype(int)
    km = km_by_group(time, event, groups, order=["low", "high"])
    _close(plot_km(time, event, groups, group_order=["low", "high"], title=f"Test cohort: {name} risk groups",
                   path=fig_dir / "km_test.png"))
    clinical = test_x[["age", "stage", "volume_reduction_rate"]].copy()
    clinical["stage"] = _stage_numbers(clinical["stage"])
    try:
        adjusted = adjusted_cox(groups, clinical, time, event, name=f"{name}_risk_group")
    except InputError as exc:  # e.g. every test patient in one risk group: say so instead of a number
        adjusted = pd.DataFrame({"note": [f"adjusted Cox not estimable: {exc}"]}, index=[f"{name}_risk_group"])
    grid = np.quantile(time[event == 1], np.linspace(0.15, 0.85, 12)) if event.sum() >= 5 else np.array([time.max()])
    ax = result = None
    for model, f in fits.items():
        curve = td_c_index_curve(y_test, f.predict(test_x), grid, n_resamples=200, seed=seed)
        result = plot_td_cindex(curve["time"], curve["c_index"], curve["low"], curve["high"], label=model, ax=ax,
                                title="Test cohort: time-dependent C-index")
        ax = result[1]
    ax.figure.savefig(fig_dir / "td_cindex_test.png", dpi=150, bbox_inches="tight")
    _close(result)
    return km, adjusted


def _survshap(fits: dict, train_x: pd.DataFrame, test_x: pd.DataFrame, seed: int, res_dir: Path,
              n_background: int = 20, n_explain: int = 8) -> list[str]:
    """SurvSHAP(t) of the richest model on a seeded sample of test patients (``survshap_importance.csv``, figure).

    Small samples keep it to seconds-minutes on a CPU (see :func:`esoct.explain.survshap.survshap_explain`).
    """
    from esoct.explain.survshap import survshap_explain
    from esoct.report.figures import plot_importance

    name = "Fusion" if "Fusion" in fits else list(fits)[-1]
    fit = fits[name]
    rng = np.random.default_rng(seed)
    cols = list(fit.columns)  # only the model's own inputs: never the outcome or the centre
    train_x, test_x = train_x[cols].copy(), test_x[cols].copy()
    for frame in (train_x, test_x):  # SurvSHAP needs numbers; the model's own step accepts the ordinal stage
        if "stage" in frame.columns:
            frame["stage"] = _stage_numbers(frame["stage"])
    background = train_x.iloc[np.sort(rng.choice(len(train_x), min(n_background, len(train_x)), replace=False))]
    explain = test_x.iloc[np.sort(rng.choice(len(test_x), min(n_explain, len(test_x)), replace=False))]
    try:
        result = survshap_explain(fit, background, explain, random_state=seed, n_permutations=10, n_times=12)
    except Exception as exc:  # noqa: BLE001 - an explanation that fails must not cost the study its tables
        return [f"SurvSHAP(t) of {name} not computed: {type(exc).__name__}: {exc}"]
    result.importance.to_csv(res_dir / "survshap_importance.csv", index=False)
    _close(plot_importance(result.importance["feature"], result.importance["importance"], top=15,
                           title=f"SurvSHAP(t) of {name}: {len(explain)} test patients",
                           path=res_dir / "figures" / "survshap_importance.png"))
    return []


def _stage_numbers(stage: pd.Series) -> pd.Series:
    from esoct.survival.presets import stage_to_ordinal

    return stage if pd.api.types.is_numeric_dtype(stage) else pd.Series(stage_to_ordinal(stage), index=stage.index)


def _close(result) -> None:
    import matplotlib.pyplot as plt

    plt.close(result[0])


def _write(res_dir, table2, steps, selected, km, adjusted, notes, n_train, n_test, test_centers, endpoint) -> None:
    table2.to_csv(res_dir / "table2.csv", index=False)
    steps.to_csv(res_dir / "selection.csv", index=False)
    pd.Series(selected, name="feature").to_csv(res_dir / "selected_delta_features.csv", index=False)
    km.medians.to_csv(res_dir / "km_test.csv")
    adjusted.to_csv(res_dir / "adjusted_cox.csv")
    doc = {
        "endpoint": endpoint,
        "endpoint_title": endpoint_title(endpoint),
        "n_train": n_train,
        "n_test": n_test,
        "test_centers": list(test_centers),
        "selected_delta_features": selected,
        "logrank_p_test": float(km.logrank_p),
        "notes": notes,
        "table2": json.loads(table2.to_json(orient="records")),
    }
    (res_dir / "metrics.json").write_text(json.dumps(doc, indent=1, default=str))


def fit_single_scan_model(
    radiomics: pd.DataFrame,
    manifest_path: str | Path,
    out_dir: str | Path,
    *,
    test_centers=(),
    params=None,
    n_features: int = 5,
    seed: int = 0,
    endpoint: str = "os",
) -> pd.DataFrame:
    """A survival risk model from the baseline scan alone, for one-patient prediction (``esoct predict``).

    The six models of the study need the post-treatment scan and clinical data; a new patient
    brings one CT. This model uses the tumour's baseline radiomics only: on the training centres,
    the ``n_features`` features with the smallest univariate Cox p-value (after dropping
    near-constant columns and one of each pair with ``|r| > 0.8``), then a ridge-penalised Cox
    model on the standardised features. Patients at or above the training median risk are
    "high risk". Saved as ``models/survival/model.skops`` (the :mod:`esoct.bundle` contract);
    its C-index on the test centres goes to ``results/survival/single_scan.csv``.

    Parameters
    ----------
    radiomics : pandas.DataFrame
        Cohort radiomics table (``patient_id``, ``timepoint``, PyRadiomics columns).
    manifest_path : str or Path
        Manifest with ``center`` and the endpoint's ``<endpoint>_months``, ``<endpoint>_event``.
    out_dir : str or Path
        Study directory.
    test_centers : sequence of str
    params : str, Path or dict, optional
        The PyRadiomics settings the table was made with (stored with the model).
    n_features : int
    seed : int
    endpoint : str
        Time-to-event endpoint (``os``, ``dfs``, ``pfs``...).

    Returns
    -------
    pandas.DataFrame
        One row per cohort: ``cohort``, ``n``, ``c_index`` with its bootstrap CI.
    """
    from esoct.io.model_store import save_model
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from esoct.evaluate.concordance import harrell_c_ci
    from esoct.features.radiomics import RadiomicsExtractor
    from esoct.select.correlation import CorrelationFilter
    from esoct.select.cox import univariate_cox
    from esoct.study.lnm import MODEL_FORMAT, feature_matrix
    from esoct.survival.cox import CoxPH

    out_dir = Path(out_dir)
    manifest = pd.read_csv(manifest_path, dtype={"patient_id": str, "center": str}).set_index("patient_id")
    X = feature_matrix(radiomics[radiomics["timepoint"] == "pre"])
    info = manifest.loc[X.index]
    time_col, event_col = endpoint_columns(endpoint)
    ok = pd.to_numeric(info[time_col], errors="coerce").notna() & pd.to_numeric(info[event_col], errors="coerce").notna()
    X, info = X[ok], info[ok]
    is_test = info["center"].astype(str).isin([str(c) for c in test_centers]).to_numpy()
    train, y_train = X[~is_test], _surv(info[~is_test], endpoint)
    train = train.replace([np.inf, -np.inf], np.nan)
    train = train.loc[:, train.notna().all()]
    train = train.loc[:, train.std() > 1e-12]
    kept = CorrelationFilter(0.8).fit(train).get_feature_names_out()
    stats = univariate_cox(train[kept].to_numpy(), y_train["event"], y_train["time"])
    order = np.argsort(np.nan_to_num(stats["p"], nan=1.0), kind="stable")
    columns = [str(kept[j]) for j in order[:n_features]]
    model = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()),
                      ("cox", CoxPH(penalizer=0.1))]).set_output(transform="pandas")
    model.fit(train[columns], y_train)
    threshold = float(np.median(model.predict(train[columns])))
    rows = []
    for name, mask in (("training centres", ~is_test), ("test centres", is_test)):
        if mask.sum() < 5:
            continue
        y = _surv(info[mask], endpoint)
        ci = harrell_c_ci(y["event"], y["time"], model.predict(X.loc[mask, columns]), seed=seed)
        rows.append({"cohort": name, "n": int(mask.sum()), "c_index": str(ci)})
    table = pd.DataFrame(rows)
    res_dir = out_dir / "results" / "survival"
    res_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(res_dir / "single_scan.csv", index=False)
    (out_dir / "models" / "survival").mkdir(parents=True, exist_ok=True)
    save_model({"format": MODEL_FORMAT, "task": "survival", "estimator": model, "columns": columns,
                 "radiomics_params": RadiomicsExtractor(params).params, "label": 1, "threshold": threshold,
                 "endpoint": endpoint,
                 "description": f"{endpoint_title(endpoint)} risk from {len(columns)} baseline tumour radiomics features "
                                "(univariate Cox ranking + ridge Cox on the training centres); high risk at or "
                                "above the training median"}, out_dir / "models" / "survival" / "model.skops")
    return table
