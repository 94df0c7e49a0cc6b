"""`esoct run`: execute the enabled tasks of a validated study file into a study directory.

The runner only sequences the task pipelines (one module each in :mod:`esoct.study`), shows one
progress display for the whole run, and keeps what is done:

* a task that completed leaves ``results/<task>/done.json`` with the hash of everything it
  depends on (its settings, the seed, the split, the radiomics settings and the manifest's
  bytes); a rerun with the same hash skips it, so a second run redoes nothing;
* inside a task every stage caches its own work (per-scan radiomics, ROI and KRT crops, fold
  predictions, epoch checkpoints), so a run killed in the middle resumes where it stopped;
* a task that fails is recorded in ``results/<task>/error.txt`` and ``results/run.json``, the
  other tasks still run, and the exit code says so.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from esoct.progress import inner_progress, showing_inner_progress

from esoct.study.config import StudyConfig

log = logging.getLogger("esoct")

#: Folder under ``results/`` of each task.
RESULT_DIRS = {"segmentation": "segmentation", "tstage_binary": "tstage", "tstage_4class": "tstage4", "lnm": "lnm",
               "survival": "survival"}


@dataclass
class StudyRun:
    """What :func:`run_study` did: per task ``"ok"``, ``"cached"`` or the error, and the wall time in seconds."""

    out: Path
    status: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    failed_patients: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every task completed (now or in an earlier run) without a failed patient."""
        return all(s in ("ok", "cached") for s in self.status.values()) and not any(self.failed_patients.values())


def task_key(config: StudyConfig, task: str) -> str:
    """Hash of everything a task's results depend on (settings, seed, split, radiomics, manifest bytes)."""
    s = config.settings
    doc = {"task": task, "settings": s["tasks"][task], "seed": s["seed"], "cohort": s["cohort"]["test_centers"],
           "radiomics": s["radiomics"]["params"], "manifest": _sha256(config.manifest)}
    if s["radiomics"]["params"]:
        doc["radiomics_file"] = _sha256(Path(s["radiomics"]["params"]))
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def run_study(config: StudyConfig, out: str | Path, *, progress: bool = True, scheduler=None) -> StudyRun:
    """Run every enabled task of ``config`` into the study directory ``out``.

    Parameters
    ----------
    config : StudyConfig
        From :func:`esoct.study.config.load_study`.
    out : str or Path
        Study directory (DESIGN.md layout); ``study.yaml`` and ``cohort.csv`` are copied into it.
    progress : bool
        Show the progress display: one bar over the tasks of the run and, under it, a bar with its
        ETA for each long step of the running task (training, per-patient extraction, folds).
    scheduler : str or distributed.Client, optional
        Dask scheduler for the cohort-wide stages (ROI extraction, radiomics, segmentation
        inference); overrides the study file's ``scale.scheduler`` (default ``"local"``: a local
        cluster for the run). ``"none"`` runs without Dask.

    Returns
    -------
    StudyRun

    Raises
    ------
    esoct.errors.StudyLockedError
        Another esoct process is running into ``out``.
    """
    from esoct.study.lock import study_lock

    with study_lock(out):  # a second run into the same directory is refused, not interleaved
        return _run_locked(config, Path(out), progress, scheduler)


def _run_locked(config: StudyConfig, out: Path, progress: bool, scheduler) -> StudyRun:
    from tqdm.auto import tqdm

    shutil.copyfile(config.path, out / "study.yaml")
    config = apply_split(config, out)
    shutil.copyfile(config.manifest, out / "cohort.csv")
    _write_settings(config, out)
    run = StudyRun(out)
    started = _now()
    tasks = config.enabled_tasks
    scheduler = scheduler if scheduler is not None else config.settings["scale"]["scheduler"]
    if isinstance(scheduler, str) and scheduler.lower() in ("none", "null"):
        scheduler = None
    bar = tqdm(total=len(tasks), desc="study", unit="task", disable=not progress,
               bar_format="{desc}: {n_fmt}/{total_fmt} tasks |{bar}| {elapsed}{postfix}")
    with _client(scheduler, config.settings["scale"]["workers"]) as client, showing_inner_progress(progress):
        for task in tasks:
            bar.set_postfix_str(task)
            run.status[task], run.seconds[task] = _run_task(config, out, task, client)
            run.failed_patients[task] = failed_patients(out, task)
            bar.update(1)
            _write_run_json(out, run, started)
    bar.set_postfix_str("done")
    bar.close()
    return run


def _run_task(config: StudyConfig, out: Path, task: str, client) -> tuple[str, float]:
    res_dir = out / "results" / RESULT_DIRS[task]
    done, error_file = res_dir / "done.json", res_dir / "error.txt"
    key = task_key(config, task)
    if done.is_file() and json.loads(done.read_text()).get("key") == key:
        log.info("task %s: complete in an earlier run, reused", task)
        return "cached", 0.0
    done.unlink(missing_ok=True)
    _start_task(out, task, key)
    start = time.perf_counter()
    try:
        _TASKS[task](config, out, client)
        error_file.unlink(missing_ok=True)
        seconds = time.perf_counter() - start
        done.write_text(json.dumps({"key": key, "finished": _now(), "seconds": round(seconds, 1)}, indent=1))
        return "ok", seconds
    except Exception as exc:  # noqa: BLE001 - a failed task is recorded and the others run
        error_file.parent.mkdir(parents=True, exist_ok=True)
        error_file.write_text(traceback.format_exc())
        log.error("task %s failed: %s", task, exc)
        return f"{type(exc).__name__}: {exc}", time.perf_counter() - start


#: Work folders of a task besides ``results/<task>`` and ``models/<task>`` that depend on its settings.
_TASK_WORK = {"segmentation": ("cache/segmentation",)}


def _start_task(out: Path, task: str, key: str) -> None:
    """Mark a task as started with ``key``; the work of a run with other settings is set aside first.

    An interrupted run with the same key keeps its partial work (folds, checkpoints) and resumes.
    A run with other settings cannot reuse it (saved folds, fold predictions and checkpoints belong
    to those settings), so its results and models move to ``previous/<task>/`` (replacing an older
    copy) rather than being deleted, and its settings-dependent work folders are removed. Caches
    keyed by their own inputs (radiomics per scan, ROI crops) are kept.
    """
    name = RESULT_DIRS[task]
    res_dir = out / "results" / name
    started = res_dir / "started.json"
    if started.is_file() and json.loads(started.read_text()).get("key") != key:
        previous = out / "previous" / name
        log.warning("task %s: settings changed since the last run; its results move to %s", task, previous)
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir(parents=True)
        for kind, folder in (("results", res_dir), ("models", out / "models" / name)):
            if folder.is_dir():
                shutil.move(str(folder), str(previous / kind))
        for work in _TASK_WORK.get(task, ()):
            shutil.rmtree(out / work, ignore_errors=True)
    res_dir.mkdir(parents=True, exist_ok=True)
    started.write_text(json.dumps({"key": key, "started": _now()}, indent=1))


class _client:
    """Context manager: a Dask client for ``scheduler`` (None: no Dask, local processes as configured)."""

    def __init__(self, scheduler, workers=None):
        self.scheduler, self.workers, self._cm = scheduler, workers, None

    def __enter__(self):
        if self.scheduler is None:
            return None
        from esoct.scale.dask import dask_client

        self._cm = dask_client(self.scheduler, self.workers)
        return self._cm.__enter__()

    def __exit__(self, *exc):
        if self._cm is not None:
            return self._cm.__exit__(*exc)
        return False


def apply_split(config: StudyConfig, out: Path) -> StudyConfig:
    """The study as its tasks run it: under ``cohort.split: random | temporal`` the manifest they read is
    ``out/split/manifest.csv`` (``center`` = development / holdout, :mod:`esoct.study.split`) and the test
    "centre" is ``holdout``; ``split: centre`` returns ``config`` unchanged.
    """
    import dataclasses

    from esoct.io.manifest import load_manifest
    from esoct.study.config import split_table
    from esoct.study.split import HOLDOUT, write_split_manifest

    if config.settings["cohort"]["split"] == "centre":
        return config
    table = load_manifest(config.manifest).table
    relabelled, _ = split_table(table, config.settings)
    holdout = relabelled.loc[relabelled["center"] == HOLDOUT, "patient_id"].astype(str).tolist()
    manifest = write_split_manifest(config.manifest, holdout, Path(out) / "split" / "manifest.csv")
    settings = copy.deepcopy(config.settings)
    settings["cohort"]["test_centers"] = [HOLDOUT]
    return dataclasses.replace(config, settings=settings, manifest=manifest)


def _write_settings(config: StudyConfig, out: Path) -> None:
    """``results/settings.json`` (every setting, defaults filled in) and a copy of the radiomics parameter file.

    The study directory then documents itself: the report's methods section reads these.
    """
    settings = json.loads(json.dumps(config.settings))
    params = settings["radiomics"]["params"]
    if params:
        shutil.copyfile(params, out / Path(params).name)
        settings["radiomics"]["params"] = Path(params).name
    settings["cohort"]["manifest"] = "cohort.csv"
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "results" / "settings.json").write_text(json.dumps(settings, indent=1))


def failed_patients(out: Path, task: str) -> list[str]:
    """Patients a task could not use, from its ``failures.csv`` files (results, and features for survival)."""
    import pandas as pd

    files = [out / "results" / RESULT_DIRS[task] / "failures.csv"]
    if task == "survival":
        files.append(out / "features" / "failures.csv")
    ids: set = set()
    for f in files:
        if f.is_file() and f.stat().st_size:
            table = pd.read_csv(f, dtype=str)
            if "patient_id" in table.columns:
                ids |= set(table["patient_id"].dropna())
    return sorted(ids)


def _write_run_json(out: Path, run: StudyRun, started: str) -> None:
    import esoct

    doc = {"esoct_version": esoct.__version__, "started": started, "finished": _now(),
           "tasks": {t: {"status": run.status[t], "seconds": round(run.seconds[t], 1),
                         "failed_patients": run.failed_patients.get(t, [])} for t in run.status}}
    path = out / "results" / "run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ tasks
def _segmentation(config: StudyConfig, out: Path, client) -> None:
    from esoct.study.report_spec import write_report_spec
    from esoct.study.segmentation import run_segmentation_study

    t = config.task("segmentation")
    result = run_segmentation_study(config.manifest, out, test_centers=config.settings["cohort"]["test_centers"],
                                    settings=cascade_settings(t), seed=config.settings["seed"], progress=inner_progress(),
                                    scheduler=client)
    n = result.per_patient["patient_id"].nunique() if not result.per_patient.empty else 0
    metrics = json.loads((out / "results" / "segmentation" / "metrics.json").read_text())
    plans = metrics.get("plans", {})

    def plan_text(stage: str) -> str:
        p = plans.get(stage)
        return "" if p is None else f"{' x '.join(f'{v:g}' for v in p['spacing'])} mm, patch {' x '.join(map(str, p['patch']))}"

    write_report_spec(out / "results" / "segmentation", "Segmentation (two-stage 3D U-Net cascade, nn-TransEC)", 1,
                      f"Stage 1 ({plan_text('stage1')}) segmented aorta, esophagus and pericardium on the whole CT; "
                      f"stage 2 ({plan_text('stage2')}) segmented tumour, esophagus and lymph nodes in a box along "
                      f"stage 1's esophagus dilated by {' x '.join(f'{v:g}' for v in cascade_settings(t).margin())} mm "
                      "(z x y x x; from the node stations). Both were planned and trained on the training centres only "
                      f"and segmented the {n} test patients. Dice, IoU, HD95 and ASSD per class equal MONAI's "
                      "definitions; a lymph node counts as detected when a predicted component overlaps it with "
                      "Dice > 0.1 or has its centroid inside it.",
                      [("summary.csv", "Final (stage 2 pasted into stage 1): mean (SD) per class, test patients"),
                       ("stage1_summary.csv", "Stage 1 alone (tumour counted as esophagus): mean (SD) per class"),
                       ("node_detection.csv", "Lymph nodes per node: sensitivity by short axis (Wilson 95 % CI), "
                                              "false positives per patient"),
                       ("stations.csv", "Lymph nodes per station"),
                       ("volume_agreement.csv", "Volume agreement with the reference (Pearson r, Bland-Altman)")],
                      [("figures/volume_agreement.png", "Volumes: correlation (top) and Bland-Altman (bottom)",
                        "bland_altman"),
                       ("figures/froc.png", "Lymph-node FROC (minimum predicted node volume varied)", "froc"),
                       ("figures/learning_curves.png", "Training loss of both stages", "learning_curves")])


def cascade_settings(task: dict):
    """The study file's ``tasks.segmentation`` as :class:`esoct.segment.cascade_training.CascadeSettings`."""
    from esoct.segment.cascade_training import CascadeSettings

    def triple(key):
        return None if task.get(key) is None else tuple(task[key])

    return CascadeSettings(
        stage1_spacing=triple("stage1_spacing"), stage2_spacing=triple("stage2_spacing"),
        stage1_patch=triple("stage1_patch"), stage2_patch=triple("stage2_patch"),
        base_features=int(task["base_features"]), memory_budget_mb=float(task["memory_budget_mb"]),
        stage1_epochs=int(task["stage1_epochs"]), stage2_epochs=int(task["stage2_epochs"]),
        iterations=int(task["iterations"]), margin_mm=triple("margin_mm"), min_node_mm3=float(task["min_node_mm3"]),
        max_train_patients=int(task["max_train_patients"]),
        class_weights={1: float(task["tumour_weight"]), 4: float(task["node_weight"])}, loss=str(task["loss"]))


def _tstage_binary(config: StudyConfig, out: Path, client) -> None:
    import pandas as pd

    from esoct.study.report_spec import write_report_spec
    from esoct.study.roi_extraction import extract_cohort_rois
    from esoct.tstage.cv import MODEL_NAMES, cross_validate
    from esoct.tstage.data import load_roi_sequences
    from esoct.tstage.presets import get_preset

    task = config.task("tstage_binary")
    preset = get_preset(task["preset"])
    rois = out / "cache" / "rois"
    roi_run = extract_cohort_rois(config.manifest, rois, kinds=("slices",), scheduler=client, progress=inner_progress())
    manifest = pd.read_csv(config.manifest, dtype={"patient_id": str})
    seqs = load_roi_sequences(rois, dict(zip(manifest["patient_id"], manifest["pT"])), size=preset.image_size,
                              failures=roi_run.failures)
    result = cross_validate(seqs, out, preset=preset, models=tuple(task["models"]), n_splits=task["folds"],
                            seed=config.settings["seed"], progress=inner_progress())
    res = out / "results" / "tstage"
    _tstage_comparison(result).to_csv(res / "comparison.csv", index=False)
    tables = [("comparison.csv", "Pooled out-of-fold AUC per model (DeLong 95 % CI) and the paired DeLong test")]
    for model in result.per_fold["model"].unique():
        result.table(model).to_csv(res / f"table_{model}.csv", index=False)
        tables.append((f"table_{model}.csv", f"{model}: per-fold metrics with mean (Table 1 layout)"))
    captions = {"roc": "ROC curves of the folds with their mean", "confusion": "Confusion matrix, pooled out-of-fold",
                "tsne": "t-SNE of the sequence features, test patients of each fold",
                "gradcam": "Grad-CAM on layer4: correct and wrong cases, each by the fold model that did not see it"}
    figures = []
    for kind in ("roc", "confusion", "tsne", "gradcam"):
        for p in sorted((res / "figures").glob(f"{kind}_*.png")):
            model = MODEL_NAMES.get(p.stem.split("_", 1)[1], p.stem.split("_", 1)[1])
            figures.append((f"figures/{p.name}", f"{model}: {captions[kind]}", kind))
    write_report_spec(res, "T-stage, T1-2 vs T3-4 (ResoLSTM-Depth)", 2,
                      f"2D axial ROI sequences through the tumour; {', '.join(task['models'])} with the "
                      f"{task['preset']} preset; {task['folds']}-fold patient-level stratified cross-validation; "
                      "AUC CIs and the paired comparison by DeLong's method.", tables, figures)


def _tstage_comparison(result):
    """Pooled out-of-fold AUC of each model with its DeLong CI, then the paired DeLong test between them."""
    import pandas as pd

    from esoct.tstage.cv import MODEL_NAMES

    rows = []
    for model, pooled in result.pooled.items():
        rows.append({"model": MODEL_NAMES.get(model, model), "n": pooled["n"], "AUC (95 % CI)": str(pooled["auc"]),
                     **{m: round(float(pooled[m]), 3) for m in ("accuracy", "sensitivity", "specificity", "f1")
                        if m in pooled}})
    d = result.delong
    if d is not None:
        rows.append({"model": "ResoLSTM-Depth minus ResNet-18 (DeLong)", "n": rows[0]["n"] if rows else None,
                     "AUC (95 % CI)": f"{d.difference.estimate:+.3f} ({d.difference.low:+.3f} to "
                                      f"{d.difference.high:+.3f}), z = {d.z:.2f}, p = {d.p_value:.4f}"})
    return pd.DataFrame(rows)


def _tstage_4class(config: StudyConfig, out: Path, client) -> None:
    from esoct.study.report_spec import write_report_spec
    from esoct.study.tstage4 import Tstage4Settings, run_tstage4_study

    t = config.task("tstage_4class")
    settings = Tstage4Settings(folds=t["folds"], epochs=t["epochs"], krt_size=tuple(t["krt_size"]),
                               krt_spacing=tuple(t["krt_spacing"]), viewer_cases=t["viewer_cases"])
    run_tstage4_study(config.manifest, out, settings=settings, seed=config.settings["seed"], progress=inner_progress())
    write_report_spec(out / "results" / "tstage4", "T-stage, T1 / T2 / T3 / T4 (KRT classifier)", 3,
                      f"KRT crop of {t['krt_size']} voxels at {t['krt_spacing']} mm around the tumour; residual 3D "
                      f"encoder with the nn-TransEC head, focal loss; {t['folds']}-fold patient-level stratified "
                      "cross-validation; one-vs-rest AUC with DeLong CIs (macro average: bootstrap).",
                      [("table8.csv", "Per-stage metrics, pooled out-of-fold (Table 8 layout)"),
                       ("confusion.csv", "Confusion matrix (rows: reference)")],
                      [("figures/confusion.png", "Confusion matrix, out-of-fold", "confusion")])


def _lnm(config: StudyConfig, out: Path, client) -> None:
    from esoct.study.lnm import run_lnm_study
    from esoct.study.report_spec import write_report_spec

    s, t = config.settings, config.task("lnm")
    run_lnm_study(config.manifest, out, test_centers=s["cohort"]["test_centers"], params=s["radiomics"]["params"],
                  folds=t["folds"], seed=s["seed"], workers=s["radiomics"]["workers"], scheduler=client,
                  progress=inner_progress(), features=t["features"])
    write_report_spec(out / "results" / "lnm", "Lymph-node metastasis", 4,
                      {"nodes": "Lymph-node features of the baseline CT (count, volume, sphericity, elasticity-map "
                                 "entropy, fractal dimensions)", "tumour": "Tumour radiomics of the baseline CT",
                       "tumour+nodes": "Tumour radiomics and lymph-node features of the baseline CT"}[t["features"]]
                      + "; imputation, correlation filter, LASSO-logistic selection "
                      f"and logistic regression fitted inside each of {t['folds']} patient-level folds of the training "
                      "centres, then refitted on all of them for the external test centres; the threshold is "
                      "Youden's on the training out-of-fold probabilities.",
                      [("metrics.csv", "Cross-validation and external test: AUC (DeLong CI), threshold metrics "
                                       "(Wilson CIs), Brier score"),
                       ("selected_features.csv", "Features of the final model")],
                      [("figures/roc_cv.png", "ROC per fold", "roc"),
                       ("figures/calibration.png", "Calibration", "calibration"),
                       ("figures/decision_curve.png", "Decision curve", "decision_curve"),
                       ("figures/confusion.png", "Confusion matrix", "confusion")])


def _survival(config: StudyConfig, out: Path, client) -> None:
    import pandas as pd

    from esoct.study.report_spec import write_report_spec
    from esoct.study.survival import fit_single_scan_model, run_survival_study
    from esoct.survival.endpoints import endpoint_title

    s, task = config.settings, config.task("survival")
    deep = None
    if task["deep_features"]:
        from esoct.features.deep import DeepFeatureExtractor

        deep = DeepFeatureExtractor(head="cox", width=float(task["deep_width"]), epochs=task["deep_epochs"],
                                    seed=s["seed"])
    run_survival_study(config.manifest, out, test_centers=s["cohort"]["test_centers"], params=s["radiomics"]["params"],
                       deep=deep, n_estimators=task["n_estimators"], n_bootstrap=task["n_bootstrap"], cv=task["cv"],
                       seed=s["seed"], workers=s["radiomics"]["workers"], scheduler=client, progress=inner_progress(),
                       endpoint=task["endpoint"])
    radiomics = pd.read_parquet(out / "features" / "radiomics.parquet")
    fit_single_scan_model(radiomics, config.manifest, out, test_centers=s["cohort"]["test_centers"],
                          params=s["radiomics"]["params"], seed=s["seed"], endpoint=task["endpoint"])
    title = endpoint_title(task["endpoint"])
    write_report_spec(out / "results" / "survival", f"{title[0].upper()}{title[1:]} (longitudinal radiomics)", 5,
                      "Pre- and post-treatment tumour radiomics, delta features, ICC >= 0.8 between readers, "
                      "correlation filter, univariate Cox and LASSO-Cox on the training centres; six random "
                      "survival forest models; C-index with bootstrap CIs on the external test centres; risk groups "
                      "at the training median risk.",
                      [("table2.csv", "C-index per model and cohort (Table 2 layout)"),
                       ("selection.csv", "Feature selection steps"),
                       ("adjusted_cox.csv", "Risk group adjusted for clinical covariates (test centres)"),
                       ("single_scan.csv", "Baseline-scan model used by esoct predict: C-index"),
                       ("survshap_importance.csv", "SurvSHAP(t) importance")],
                      [("figures/km_test.png", "Kaplan-Meier by risk group, test centres", "km"),
                       ("figures/td_cindex_test.png", "Time-dependent C-index, test centres", "td_cindex"),
                       ("figures/survshap_importance.png", "SurvSHAP(t) importance", "survshap")])


_TASKS = {"segmentation": _segmentation, "tstage_binary": _tstage_binary, "tstage_4class": _tstage_4class,
          "lnm": _lnm, "survival": _survival}
