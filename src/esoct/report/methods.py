"""Methods section of the report: the study file's settings written as sentences a paper can cite."""

from __future__ import annotations

import html
import importlib.metadata
import platform
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import yaml

#: Distributions listed in the software-versions table: (display name, distribution name).
SOFTWARE = (
    ("esoct", "esoct"),
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("pandas", "pandas"),
    ("scikit-learn", "scikit-learn"),
    ("scikit-survival", "scikit-survival"),
    ("lifelines", "lifelines"),
    ("torch", "torch"),
    ("monai", "monai"),
    ("SimpleITK", "SimpleITK"),
    ("pyradiomics", "pyradiomics"),
    ("pydicom", "pydicom"),
    ("highdicom", "highdicom"),
)

#: Names of the models a study file may list.
MODEL_NAMES = {
    "resolstm": "ResoLSTM-Depth (a ResNet-18 slice encoder followed by a two-layer LSTM over the tumour slices)",
    "resnet": "a 2D ResNet-18 baseline",
    "multitask": "the nn-TransEC multitask network (3D residual U-Net encoder shared by segmentation and classification)",
    "unet": "a 3D residual U-Net",
    "rsf": "random survival forests",
    "cox": "Cox proportional-hazards regression",
}

#: Per task: (what it does, keys whose sentences this module writes itself).
_TASK_SUBJECT = {
    "tstage_binary": "T-stage (T1-2 vs T3-4) was classified",
    "tstage": "T-stage (T1-2 vs T3-4) was classified",
    "tstage4": "T-stage (T1, T2, T3, T4) was classified",
    "tstage_4class": "T-stage (T1, T2, T3, T4) was classified",
    "lnm": "Lymph-node metastasis (present vs absent) was predicted",
    "survival": "Overall survival was modelled",
    "segmentation": "The tumour, aorta, esophagus, lymph nodes and pericardium were segmented",
}

_FOLD_KEYS = ("folds", "n_folds", "n_splits")
_HANDLED = {"enabled", "endpoint", "models", "model", *_FOLD_KEYS, "cv", "n_bootstrap", "n_estimators", "preset", "seed",
            "spacing", "patch", "epochs", "iterations", "max_train_patients", "krt_size", "krt_spacing",
            "features", "tumour_weight"}


def software_versions() -> list[tuple[str, str]]:
    """Versions of Python and of the scientific packages esoct uses.

    Returns
    -------
    list of (str, str)
        ``(name, version)``; ``"not installed"`` for a package that is absent.
    """
    rows = [("python", platform.python_version())]
    for name, dist in SOFTWARE:
        try:
            rows.append((name, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return rows


def _esc(value) -> str:
    return html.escape(str(value))


def _value(value) -> str:
    """A setting's value as text: lists joined by commas, None as 'not set'."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value) or "none"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_value(v)}" for k, v in value.items()) or "none"
    return str(value)


def _key_values(settings: Mapping, skip=()) -> str:
    """Unrecognised settings as an HTML list of ``key: value`` lines ('' when none)."""
    items = [f"<li><code>{_esc(k)}</code>: {_esc(_value(v))}</li>" for k, v in settings.items() if k not in skip]
    return f"<ul class='esoct-settings'>{''.join(items)}</ul>" if items else ""


def cohort_sentences(settings: Mapping, cohort: pd.DataFrame | None) -> list[str]:
    """Sentences on the cohort, its centres, the train/test split and the seed.

    Parameters
    ----------
    settings : mapping
        The parsed study file.
    cohort : pandas.DataFrame, optional
        The manifest (``cohort.csv``), one row per patient.

    Returns
    -------
    list of str
        Plain-text sentences.
    """
    out = []
    cohort_cfg = settings.get("cohort") or {}
    test = [str(c) for c in (cohort_cfg.get("test_centers") or [])]
    if cohort is not None and len(cohort):
        n = len(cohort)
        if cohort_cfg.get("split") in ("random", "temporal") and "center" in cohort:
            from esoct.study.split import HOLDOUT, describe_split

            held = cohort["center"].astype(str) == HOLDOUT
            dates = None
            column = cohort_cfg.get("date_column")
            if column and column in cohort:
                when = pd.to_datetime(cohort.loc[held, column], errors="coerce")
                dates = (str(when.min().date()), str(when.max().date())) if when.notna().any() else None
            sites = cohort["site"].astype(str).nunique() if "site" in cohort else 1
            out.append(f"The cohort comprised {n} patients from {sites} centre(s).")
            out.append(describe_split(cohort_cfg, int(held.sum()), n, dates))
        elif "center" in cohort:
            counts = cohort["center"].astype(str).value_counts().sort_index()
            per = ", ".join(f"centre {c}: n = {k}" for c, k in counts.items())
            out.append(f"The cohort comprised {n} patients from {len(counts)} centre(s) ({per}).")
            if test:
                n_test = int(cohort["center"].astype(str).isin(test).sum())
                out.append(f"Patients of centre(s) {', '.join(test)} (n = {n_test}) formed the external test set; "
                           f"the patients of the other centres (n = {n - n_test}) formed the training set.")
            else:
                out.append("No external test centre was named.")
        else:
            out.append(f"The cohort comprised {n} patients.")
    elif test:
        out.append(f"Centre(s) {', '.join(test)} formed the external test set.")
    seed = settings.get("seed")
    if seed is not None:
        out.append(f"Every random choice (fold assignment, network initialisation, resampling) was derived "
                   f"from the seed {seed}, so the same study file reproduces the same numbers.")
    return out


def task_sentences(name: str, task: Mapping) -> str:
    """One paragraph describing a task's settings.

    Parameters
    ----------
    name : str
        Task name as in the study file (``tstage_binary``, ``tstage4``, ``lnm``, ``survival``,
        ``segmentation``; any other name is described generically).
    task : mapping
        The task's settings.

    Returns
    -------
    str
        Plain text.
    """
    subject = _TASK_SUBJECT.get(name, f"The task {name} was run")
    if name == "survival" and str(task.get("endpoint", "os")).lower() != "os":
        from esoct.survival.endpoints import endpoint_title

        title = endpoint_title(task["endpoint"])
        subject = f"{title[0].upper()}{title[1:]} was modelled"
    parts = []
    models = task.get("models", task.get("model"))
    if models:
        models = [models] if isinstance(models, str) else list(models)
        parts.append(f"{subject} with " + " and ".join(MODEL_NAMES.get(str(m).lower(), str(m)) for m in models) + ".")
    else:
        parts.append(f"{subject}.")
    fold_keys = _FOLD_KEYS if name == "survival" else (*_FOLD_KEYS, "cv")
    folds = next((task[k] for k in fold_keys if k in task), None)
    if folds is not None:
        parts.append(f"Performance was estimated by {folds}-fold patient-level stratified cross-validation "
                     "(all scans of a patient in the same fold; every data-dependent step fitted in the training folds only).")
    if "n_estimators" in task:
        parts.append(f"Each random survival forest had {task['n_estimators']} trees.")
    if "cv" in task and name == "survival":
        parts.append(f"Hyper-parameters were chosen by {task['cv']}-fold cross-validation on the training set.")
    if "n_bootstrap" in task:
        parts.append(f"95% confidence intervals came from {task['n_bootstrap']} bootstrap resamples.")
    if "preset" in task:
        parts.append(f"Training used the '{task['preset']}' preset of esoct.")
    detail = _TASK_DETAIL.get(name)
    if detail is not None:
        try:
            parts.append(detail(task))
        except (KeyError, TypeError, ValueError):  # a hand-written study.yaml may lack a key: say less
            pass
    return " ".join(parts)


def _mm(values) -> str:
    return " x ".join(f"{float(v):g}" for v in values)


_TASK_DETAIL = {
    "segmentation": lambda t: (
        "A two-stage 3D U-Net cascade (nnU-Net's 3d_lowres -> 3d_cascade_fullres, residual encoder, deep supervision) "
        "was planned from the training centres' fingerprint and trained on at most "
        f"{t['max_train_patients']} training-centre patients: stage 1 on the whole CT at the lowres spacing "
        f"({_mm(t['stage1_spacing']) + ' mm, set in the study file' if t.get('stage1_spacing') else 'the plan rule'}) "
        f"for {t['stage1_epochs']} epochs of {t['iterations']} steps (aorta, esophagus, pericardium); stage 2 on a box "
        "along stage 1's esophagus, dilated by a margin derived from the lymph-node stations, at the spacing the plan "
        f"rules chose on those boxes for {t['stage2_epochs']} epochs, with stage 1's organs as input channels "
        "(tumour, esophagus, lymph nodes). Loss: focal + soft Dice; a third of the patches centred on a foreground "
        f"voxel, the tumour and the nodes drawn {t.get('tumour_weight', 2):g} and {t.get('node_weight', 2):g} times as "
        "often as an organ. Post-processing kept one component per organ and removed node components under "
        f"{t.get('min_node_mm3', 30):g} mm^3. Every test-centre patient was segmented (sliding window, Gaussian "
        "weighting) and scored by Dice, IoU, HD95 and ASSD (MONAI's definitions), volume agreement (Pearson r, "
        "Bland-Altman) and, per lymph node, detection (Dice > 0.1 or centroid inside), sensitivity by short axis "
        "(Wilson CIs), false positives per patient and FROC. Stage-1 predictions on the training patients, not "
        "cross-fitted ones as nnU-Net uses, defined the training boxes and context channels of stage 2."),
    "tstage_4class": lambda t: (
        f"Each tumour was cropped in a KRT box of {_mm(t['krt_size'])} voxels at {_mm(t['krt_spacing'])} mm around "
        "its centre of mass (reference label map), normalised with nnU-Net's CT scheme, and classified by a residual "
        f"3D encoder with the nn-TransEC head trained for {t['epochs']} epochs with the focal loss (class weights "
        "from the training folds). Metrics: one-vs-rest AUC with DeLong CIs per stage, macro average with a "
        "bootstrap CI, precision, recall, specificity, NPV and F1 (Table 8 layout); Grad-CAM on the last encoder "
        "stage."),
    "lnm": lambda t: (
        "Features on the baseline CT: "
        + {"nodes": "per patient, the lymph nodes' count, volume, sphericity, elasticity-map (DEM) entropy and "
                    "box-counting fractal dimensions (largest node, mean over nodes)",
           "tumour": "PyRadiomics features of the tumour",
           "tumour+nodes": "PyRadiomics features of the tumour and the lymph nodes' count, volume, sphericity, "
                           "elasticity-map (DEM) entropy and fractal dimensions"}.get(t.get("features", "nodes"),
                                                                                     str(t.get("features")))
        + ". Inside each training fold: median "
        "imputation, removal of constant features, correlation filter (|r| > 0.9), standardisation, LASSO-logistic "
        "selection (penalty by inner cross-validated AUC) and logistic regression. The model refitted on all "
        "training-centre patients was applied to the external test centres with the threshold chosen by Youden's "
        "index on the training out-of-fold probabilities. AUC with DeLong CIs, threshold metrics with Wilson CIs, "
        "Brier score, calibration and decision curves."),
    "survival": lambda t: (
        "Delta radiomics ((post - pre) / pre) were filtered by inter-reader ICC >= 0.8, correlation |r| > 0.8, "
        "univariate Cox p < 0.1 and LASSO-Cox on the training centres; clinical, delta, fusion and deep-feature "
        "models were random survival forests; risk groups were cut at the training median risk; Kaplan-Meier with "
        "log-rank, adjusted Cox, time-dependent C-index and SurvSHAP(t) on the test centres."),
}


def radiomics_html(settings: Mapping, study_dir: Path | None = None) -> str:
    """The PyRadiomics settings in use, as HTML.

    Parameters
    ----------
    settings : mapping
        The parsed study file.
    study_dir : Path, optional
        Where a relative ``radiomics.params`` file is looked for.

    Returns
    -------
    str
    """
    rad = settings.get("radiomics") or {}
    params = rad.get("params")
    if params:
        text = f"Radiomics features were extracted with PyRadiomics using the parameter file <code>{_esc(Path(params).name)}</code>."
        candidates = [Path(study_dir) / params, Path(study_dir) / Path(params).name] if study_dir is not None else []
        source = next((p for p in candidates if p.is_file()), None)
        if source is None:
            return f"<p>{text} (The file was not found in the study directory; its settings are not repeated here.)</p>"
    else:
        text = ("Radiomics features were extracted with PyRadiomics using esoct's default longitudinal settings "
                "(<code>esoct/features/params/longitudinal.yaml</code>).")
        source = Path(__file__).resolve().parents[1] / "features" / "params" / "longitudinal.yaml"
    try:
        spec = yaml.safe_load(source.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return f"<p>{text}</p>"
    if not isinstance(spec, Mapping):
        return f"<p>{text}</p>"
    lines = []
    if isinstance(spec.get("imageType"), Mapping):
        lines.append(f"Image types: {', '.join(map(str, spec['imageType']))}.")
    if isinstance(spec.get("featureClass"), Mapping):
        lines.append(f"Feature classes: {', '.join(map(str, spec['featureClass']))}.")
    setting = spec.get("setting") if isinstance(spec.get("setting"), Mapping) else {}
    rest = {k: v for k, v in spec.items() if k not in ("setting", "imageType", "featureClass")}
    return (f"<p>{text} {' '.join(_esc(s) for s in lines)} Settings:</p>"
            + _key_values(setting) + _key_values(rest))


def methods_html(settings: Mapping, cohort: pd.DataFrame | None = None, study_dir: Path | None = None) -> str:
    """The report's Methods section.

    Parameters
    ----------
    settings : mapping
        The parsed study file (``study.yaml``).
    cohort : pandas.DataFrame, optional
        The manifest, for the patients per centre.
    study_dir : Path, optional
        The study directory (for a radiomics parameter file copied there).

    Returns
    -------
    str
        HTML: ``<section id="methods">`` with the cohort, one paragraph per enabled task, the
        radiomics settings, other settings as key: value lines and the software versions.
    """
    parts = ['<section id="methods"><h2>Methods</h2>']
    name = settings.get("name")
    intro = f"This report was generated by esoct from the study file of the study <em>{_esc(name)}</em>." if name else \
        "This report was generated by esoct from the study file."
    parts.append(f"<p>{intro}</p>")
    parts.append("<h3>Cohort and split</h3><p>" + _esc(" ".join(cohort_sentences(settings, cohort))) + "</p>")
    tasks = settings.get("tasks") or {}
    enabled = {k: v or {} for k, v in tasks.items() if isinstance(v, Mapping) or v is None}
    enabled = {k: v for k, v in enabled.items() if v.get("enabled", True)}
    parts.append("<h3>Tasks</h3>")
    if not enabled:
        parts.append("<p>No task was enabled.</p>")
    for task, cfg in enabled.items():
        parts.append(f'<h4>{_esc(task)}</h4><p class="esoct-task-methods" data-task="{_esc(task)}">'
                     f"{_esc(task_sentences(task, cfg))}</p>")
        extra = {k: v for k, v in cfg.items() if k not in _HANDLED}
        if extra:
            parts.append("<p>Further settings:</p>" + _key_values(extra))
    parts.append("<h3>Radiomics</h3>" + radiomics_html(settings, study_dir))
    other = {k: v for k, v in settings.items() if k not in ("name", "seed", "cohort", "radiomics", "tasks")}
    if other:
        parts.append("<h3>Other settings</h3>")
        for key, value in other.items():
            body = _key_values(value) if isinstance(value, Mapping) else f"<p>{_esc(_value(value))}</p>"
            parts.append(f"<h4>{_esc(key)}</h4>{body}")
    rows = "".join(f"<tr><td>{_esc(n)}</td><td>{_esc(v)}</td></tr>" for n, v in software_versions())
    parts.append('<h3>Software</h3><table class="esoct-table esoct-software"><thead><tr><th>package</th>'
                 f"<th>version</th></tr></thead><tbody>{rows}</tbody></table>")
    parts.append("</section>")
    return "\n".join(parts)
