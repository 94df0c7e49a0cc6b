"""The YAML study file: schema, validation that reports every mistake at once, and the commented example.

A study file names the cohort manifest, the external test split, the seed and the tasks with
their models and settings. :func:`load_study` checks it completely before any work starts:
unknown keys (with the closest known key suggested), wrong types, values out of range, missing
files and impossible splits (a test centre that is not in the manifest, fewer patients of a
class than folds) are all listed in one :class:`StudyFileError`.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml

from esoct.errors import InputError
from esoct.study.split import holdout_patients

#: Tasks esoct runs and the manifest columns each needs (survival: plus its endpoint's time and event columns).
TASK_COLUMNS = {"segmentation": (), "tstage_binary": ("pT",), "tstage_4class": ("pT",), "lnm": ("lnm",),
                "survival": ("age", "stage")}

# Schema: key -> (type(s), default). A dict value is a nested section.
_SCHEMA = {
    "name": (str, "esoct-study"),
    "seed": (int, 0),
    "cohort": {
        "manifest": (str, None),
        "test_centers": (list, []),
        "split": (str, "centre"),
        "test_fraction": ((int, float), 0.3),
        "date_column": ((str, type(None)), None),
    },
    "radiomics": {
        "params": ((str, type(None)), None),
        "workers": ((int, type(None)), None),
    },
    "scale": {
        "scheduler": ((str, type(None)), "local"),
        "workers": ((int, type(None)), None),
    },
    "tasks": {
        "segmentation": {
            "enabled": (bool, True),
            "stage1_spacing": ((list, type(None)), None),
            "stage2_spacing": ((list, type(None)), None),
            "stage1_patch": ((list, type(None)), None),
            "stage2_patch": ((list, type(None)), None),
            "base_features": (int, 16),
            "memory_budget_mb": ((int, float), 150.0),
            "stage1_epochs": (int, 20),
            "stage2_epochs": (int, 40),
            "iterations": (int, 20),
            "margin_mm": ((list, type(None)), None),
            "min_node_mm3": ((int, float), 30.0),
            "max_train_patients": (int, 1000),
            "tumour_weight": ((int, float), 2.0),
            "node_weight": ((int, float), 2.0),
            "loss": (str, "ce_dice"),
        },
        "tstage_binary": {
            "enabled": (bool, True),
            "models": (list, ["resolstm", "resnet"]),
            "preset": (str, "fast"),
            "folds": (int, 5),
        },
        "tstage_4class": {
            "enabled": (bool, True),
            "folds": (int, 5),
            "epochs": (int, 15),
            "krt_size": (list, [32, 32, 32]),
            "krt_spacing": (list, [4.0, 2.0, 2.0]),
            "viewer_cases": (int, 4),
        },
        "lnm": {
            "enabled": (bool, True),
            "folds": (int, 5),
            "features": (str, "nodes"),
        },
        "survival": {
            "enabled": (bool, True),
            "endpoint": (str, "os"),
            "n_estimators": (int, 400),
            "n_bootstrap": (int, 1000),
            "cv": (int, 5),
            "deep_features": (bool, False),
            "deep_epochs": (int, 10),
            "deep_width": ((int, float), 0.25),
        },
    },
}

_CHOICES = {
    ("tasks", "lnm", "features"): {"nodes", "tumour", "tumour+nodes"},
    ("tasks", "tstage_binary", "models"): {"resolstm", "resnet"},
    ("tasks", "tstage_binary", "preset"): {"fast", "paper"},
    ("cohort", "split"): {"centre", "random", "temporal"},
    ("tasks", "segmentation", "loss"): {"ce_dice", "focal_dice"},
}
_MINIMUM = {
    ("scale", "workers"): 1,
    ("radiomics", "workers"): 1,
    ("cohort", "test_fraction"): 0.01,
    ("tasks", "segmentation", "stage1_epochs"): 1,
    ("tasks", "segmentation", "stage2_epochs"): 1,
    ("tasks", "segmentation", "iterations"): 1,
    ("tasks", "segmentation", "base_features"): 2,
    ("tasks", "segmentation", "memory_budget_mb"): 1,
    ("tasks", "segmentation", "min_node_mm3"): 0,
    ("tasks", "segmentation", "max_train_patients"): 2,
    ("tasks", "segmentation", "tumour_weight"): 1,
    ("tasks", "segmentation", "node_weight"): 1,
    ("tasks", "tstage_4class", "folds"): 2,
    ("tasks", "tstage_4class", "epochs"): 1,
    ("tasks", "tstage_4class", "viewer_cases"): 0,
    ("tasks", "lnm", "folds"): 2,
    ("tasks", "tstage_binary", "folds"): 2,
    ("tasks", "survival", "n_estimators"): 1,
    ("tasks", "survival", "n_bootstrap"): 1,
    ("tasks", "survival", "cv"): 2,
    ("tasks", "survival", "deep_epochs"): 0,
}

EXAMPLE = """\
# esoct study file: `esoct run study.yaml` runs every enabled task into a study directory.
# Paths are relative to this file. Every key is optional except cohort.manifest.
name: my-esophagus-study
seed: 0                        # every random choice (folds, networks, bootstrap) derives from it

cohort:
  manifest: cohort/manifest.csv    # one row per patient, columns in DESIGN.md (`esoct check` validates it)
  test_centers: [C]                # external test cohort for survival; the other centres train
  split: centre                    # centre: test_centers are the test set; single-centre designs: random (a seeded
                                   # hold-out of test_fraction) or temporal (the latest test_fraction by date_column)
  test_fraction: 0.3
  date_column: null                # e.g. diagnosis_date (temporal split)

radiomics:
  params: null                 # a PyRadiomics parameter file; null = the longitudinal paper's set
  workers: null                # local processes (null: one per CPU)

scale:                         # cohort-wide stages (ROI extraction, radiomics, segmentation inference) run on Dask
  scheduler: local             # local: a Dask cluster on this machine; "tcp://host:8786": that running cluster;
                               # null: no Dask (this process and local worker processes); --scheduler overrides it
  workers: null                # worker processes of the local cluster (null: one per CPU, at most 4)

tasks:
  segmentation:                # two-stage 3D U-Net cascade (nn-TransEC): trained on the training centres, scored on the test centres
    enabled: true              # stage 1: whole CT, coarse (organs); stage 2: box along the esophagus, fine (tumour, nodes)
    stage1_spacing: null       # z, y, x mm; null = nnU-Net's lowres rule on the training centres' fingerprint
    stage2_spacing: null       # null = the plan rules run on the stage-2 crops (median spacing)
    stage1_patch: null         # z, y, x voxels; null = the plan's, fitted to memory_budget_mb
    stage2_patch: null
    base_features: 16          # channels of the first stage (nnU-Net: 32), doubling up to 128
    memory_budget_mb: 150      # activation memory of one training step (sets the patch when it is null)
    stage1_epochs: 20
    stage2_epochs: 40
    iterations: 20             # optimiser steps per epoch (2 patches each)
    margin_mm: null            # crop dilation z, y, x mm around the esophagus; null = derived from the node stations
    min_node_mm3: 30           # post-processing: smaller lymph-node components are removed
    max_train_patients: 1000   # at most this many training-centre patients (file order)
    tumour_weight: 2           # foreground patches centre on the tumour this many times as often as on an organ
    node_weight: 2             # ... and on the lymph nodes
    loss: ce_dice              # ce_dice: cross-entropy + Dice (nnU-Net's default); focal_dice: the paper's focal + Dice
    # every value actually used is written to models/segmentation/stage{1,2}_plan.json
  tstage_binary:               # T1-2 vs T3-4 from 2D ROI sequences (ResoLSTM-Depth paper)
    enabled: true
    models: [resolstm, resnet]
    preset: fast               # fast (CPU, minutes) or paper (150 epochs, LR 1e-6)
    folds: 5
  tstage_4class:               # T1..T4 from the KRT crop around the tumour (nn-TransEC classifier)
    enabled: true
    folds: 5
    epochs: 15
    krt_size: [32, 32, 32]     # KRT box z, y, x in voxels
    krt_spacing: [4.0, 2.0, 2.0]   # its spacing in mm (128 x 64 x 64 mm)
    viewer_cases: 4            # patients shown in the report's case viewer with their Grad-CAM
  lnm:                         # lymph-node metastasis (0/1) from the baseline CT
    enabled: true
    folds: 5
    features: nodes            # nodes: the nodes' volume, shape, elasticity-map entropy, fractal dimensions (RLN paper);
                               # tumour: the tumour's radiomics; tumour+nodes: both
  survival:                    # time to event, the longitudinal paper's six models
    enabled: true
    endpoint: os               # os (overall survival, the paper's), dfs, pfs, or any <name>_months + <name>_event
                               # column pair of the manifest
    n_estimators: 400          # trees per random survival forest
    n_bootstrap: 1000          # resamples for the confidence intervals
    cv: 5                      # folds of the hyper-parameter search on the training centres
    deep_features: false       # also train the 2.5D deep-feature networks (DL_Pre/Post/Longitudinal)
    deep_epochs: 10
    deep_width: 0.25
"""


class StudyFileError(InputError):
    """A study file with mistakes; ``problems`` lists every one of them."""

    def __init__(self, path, problems: list[str]):
        self.problems = list(problems)
        body = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the study file:\n{body}", path)


@dataclass
class StudyConfig:
    """A validated study file.

    Attributes
    ----------
    path : Path
        The study file.
    settings : dict
        Every key of the schema, defaults filled in.
    manifest : Path
        The cohort manifest, absolute.
    """

    path: Path
    settings: dict
    manifest: Path

    def task(self, name: str) -> dict:
        """Settings of a task (``settings["tasks"][name]``)."""
        return self.settings["tasks"][name]

    @property
    def enabled_tasks(self) -> list[str]:
        """Names of the enabled tasks, in schema order."""
        return [t for t in _SCHEMA["tasks"] if self.settings["tasks"][t]["enabled"]]


def write_example(path: str | Path, overwrite: bool = False) -> Path:
    """Write the commented example study file (``esoct init``).

    Parameters
    ----------
    path : str or Path
        Destination.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError("file exists; pass --force to overwrite it", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EXAMPLE)
    return path


def load_study(path: str | Path, check_cohort: bool = True) -> StudyConfig:
    """Read and validate a study file; every mistake is reported in one error.

    Parameters
    ----------
    path : str or Path
        YAML study file.
    check_cohort : bool
        Also load the manifest and check the split against it (test centres present, enough
        patients per class for the folds, columns the enabled tasks need).

    Returns
    -------
    StudyConfig

    Raises
    ------
    StudyFileError
        Listing every problem (unknown key with a suggestion, wrong type, out-of-range value,
        missing file, impossible split).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("study file not found", path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise StudyFileError(path, [f"not valid YAML: {exc}"]) from exc
    if raw is None:
        raw = {}
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise StudyFileError(path, [f"the file must hold a mapping of keys, found a {type(raw).__name__}"])
    settings = _validate(raw, _SCHEMA, (), problems)
    manifest = None
    if settings["cohort"]["manifest"] is None:
        problems.append("cohort.manifest: missing (the cohort manifest CSV is required)")
    else:
        manifest = (path.parent / settings["cohort"]["manifest"]).resolve()
        if not manifest.is_file():
            problems.append(f"cohort.manifest: file not found: {manifest}")
    params = settings["radiomics"]["params"]
    if params is not None:
        resolved = (path.parent / params).resolve()
        if not resolved.is_file():
            problems.append(f"radiomics.params: file not found: {resolved}")
        settings["radiomics"]["params"] = str(resolved)
    settings["cohort"]["test_centers"] = [str(c) for c in settings["cohort"]["test_centers"]]
    if check_cohort and manifest is not None and manifest.is_file() and not problems:
        problems += _check_split(manifest, settings)
    if problems:
        raise StudyFileError(path, problems)
    return StudyConfig(path.resolve(), settings, manifest)


def _validate(raw: dict, schema: dict, where: tuple, problems: list) -> dict:
    out = {}
    for key in raw:
        if key not in schema:
            hint = difflib.get_close_matches(str(key), list(schema), n=1)
            known = f"did you mean {hint[0]!r}?" if hint else f"known keys: {', '.join(schema)}"
            problems.append(f"{_dotted(where + (key,))}: unknown key ({known})")
    for key, spec in schema.items():
        here = where + (key,)
        value = raw.get(key)
        if isinstance(spec, dict):
            if value is None:
                value = {}
            if not isinstance(value, dict):
                problems.append(f"{_dotted(here)}: must be a section (mapping), got {type(value).__name__}")
                value = {}
            out[key] = _validate(value, spec, here, problems)
            continue
        types, default = spec
        if key not in raw:
            out[key] = copy.deepcopy(default)
            continue
        out[key] = _check_value(value, types, here, problems, default)
    return out


def _check_value(value, types, here: tuple, problems: list, default):
    types = types if isinstance(types, tuple) else (types,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        problems.append(f"{_dotted(here)}: must be {names}, got {value!r} ({type(value).__name__})")
        return copy.deepcopy(default)
    choices = _CHOICES.get(here)
    if choices is not None:
        bad = [v for v in (value if isinstance(value, list) else [value]) if v not in choices]
        if bad:
            problems.append(f"{_dotted(here)}: {bad} not allowed; choose from {sorted(choices)}")
    minimum = _MINIMUM.get(here)
    if minimum is not None and value is not None and value < minimum:
        problems.append(f"{_dotted(here)}: must be at least {minimum}, got {value}")
    if here in _POSITIVE and value is not None and not value > 0:
        problems.append(f"{_dotted(here)}: must be greater than 0, got {value}")
    if here in _NON_EMPTY and isinstance(value, list) and not value:
        problems.append(f"{_dotted(here)}: must name at least one, got an empty list")
    return value


#: Keys whose value must be greater than 0, and lists that must not be empty.
_POSITIVE = {("tasks", "survival", "deep_width")}
_NON_EMPTY = {("tasks", "tstage_binary", "models")}


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last silently)."""


def _no_duplicates(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _check_split(manifest_path: Path, settings: dict) -> list[str]:
    """Problems of the split against the manifest: unknown test centres, too few patients per class."""
    import pandas as pd

    from esoct.io.manifest import load_manifest

    try:
        manifest = load_manifest(manifest_path)
    except InputError as exc:
        return [f"cohort.manifest: {exc}"]
    table = manifest.table[manifest.table["patient_id"].isin(manifest.patients)]
    problems = []
    tasks = settings["tasks"]
    for task, columns in TASK_COLUMNS.items():
        missing = [c for c in columns if c not in table.columns]
        if tasks[task]["enabled"] and missing:
            problems.append(f"tasks.{task}: the manifest lacks the column(s) {missing}")
    endpoint_problems = _check_endpoint(tasks["survival"], table.columns)
    problems += endpoint_problems
    test = settings["cohort"]["test_centers"]
    if settings["cohort"]["split"] != "centre":
        if test:
            return problems + [f"cohort.test_centers: {test} given with split: {settings['cohort']['split']}; "
                               f"name test centres only with split: centre"]
        try:
            table, test = split_table(table, settings)
        except InputError as exc:
            return problems + [f"cohort.split: {exc.problem}"]
    centres = sorted(table["center"].astype(str).unique())
    unknown = sorted(set(test) - set(centres))
    if unknown:
        problems.append(f"cohort.test_centers: {unknown} not in the manifest's centres {centres}")
    elif tasks["survival"]["enabled"] and (not test or set(test) == set(centres)):
        problems.append(f"cohort.test_centers: the survival task needs an external test centre and at least one "
                        f"training centre; the manifest has {centres}")
    if tasks["tstage_4class"]["enabled"] and "pT" in table.columns:
        folds = tasks["tstage_4class"]["folds"]
        counts = table["pT"].astype(str).str.upper().str.extract(r"(T[1-4])")[0].value_counts()
        for cls in ("T1", "T2", "T3", "T4"):
            if counts.get(cls, 0) < folds:
                problems.append(f"tasks.tstage_4class.folds: {folds} folds need at least {folds} patients of {cls}, "
                                f"the manifest has {counts.get(cls, 0)}")
    if tasks["lnm"]["enabled"] and "lnm" in table.columns:
        folds = tasks["lnm"]["folds"]
        train = table[~table["center"].astype(str).isin(test)]
        counts = pd.to_numeric(train["lnm"], errors="coerce").value_counts()
        # each outer fold's training part runs the LASSO's own inner CV, which needs every class in
        # each inner fold: about (folds - 1) / folds of a class reaches an outer training part
        from esoct.study.lnm import INNER_FOLDS as inner

        need = max(folds, -(-inner * folds // max(folds - 1, 1)))  # ceil
        for cls in (0, 1):
            if counts.get(cls, 0) < need:
                problems.append(f"tasks.lnm.folds: {folds} outer folds with the LASSO's {inner} inner folds need at "
                                f"least {need} training-centre patients with lnm = {cls}, the manifest has "
                                f"{counts.get(cls, 0)}; lower tasks.lnm.folds or add patients")
    if tasks["survival"]["enabled"] and test and not unknown and not endpoint_problems:
        problems += _check_survival_size(table, tasks["survival"], test)
    for key, n in (("segmentation", "stage1_spacing"), ("segmentation", "stage2_spacing"), ("segmentation", "stage1_patch"),
                   ("segmentation", "stage2_patch"), ("segmentation", "margin_mm"), ("tstage_4class", "krt_size"),
                   ("tstage_4class", "krt_spacing")):
        value = tasks[key][n]
        if value is None:
            continue
        if len(value) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value):
            problems.append(f"tasks.{key}.{n}: must be three positive numbers (z, y, x), got {value!r}")
    if tasks["tstage_binary"]["enabled"] and "pT" in table.columns:
        folds = tasks["tstage_binary"]["folds"]
        groups = table["pT"].astype(str).str.upper().str.extract(r"T([1-4])")[0].map(
            {"1": "T1-2", "2": "T1-2", "3": "T3-4", "4": "T3-4"})
        counts = groups.value_counts()
        for cls in ("T1-2", "T3-4"):
            if counts.get(cls, 0) < folds:
                problems.append(f"tasks.tstage_binary.folds: {folds} folds need at least {folds} patients of {cls}, "
                                f"the manifest has {counts.get(cls, 0)}")
    return problems


def split_table(table, settings: dict):
    """The manifest table as the tasks see it under ``cohort.split``, and the test "centres".

    ``split: centre`` returns the table and ``cohort.test_centers`` unchanged; ``random`` and
    ``temporal`` relabel ``center`` as development / holdout (:mod:`esoct.study.split`) and return
    ``["holdout"]``.
    """
    from esoct.study.split import HOLDOUT, relabel

    cohort = settings["cohort"]
    if cohort["split"] == "centre":
        return table, list(cohort["test_centers"])
    survival = settings["tasks"]["survival"]
    stratify = f"{survival['endpoint']}_event" if survival["enabled"] else None
    return relabel(table, holdout_patients(table, cohort["split"], fraction=float(cohort["test_fraction"]),
                                           seed=int(settings["seed"]), date_column=cohort["date_column"],
                                           stratify=stratify)), [HOLDOUT]


def _check_survival_size(table, task: dict, test: list) -> list[str]:
    """The survival task's own minimum (its C-index and curves need >= 5 test patients with an event
    among them, and 2 x cv training patients), counted on the patients with the endpoint given."""
    import pandas as pd

    from esoct.survival.endpoints import endpoint_columns

    time_col, event_col = endpoint_columns(task["endpoint"])
    have = table[pd.to_numeric(table[time_col], errors="coerce").notna()
                 & pd.to_numeric(table[event_col], errors="coerce").notna()]
    is_test = have["center"].astype(str).isin(test)
    n_test, n_train, cv = int(is_test.sum()), int((~is_test).sum()), int(task["cv"])
    events = int(pd.to_numeric(have.loc[is_test, event_col], errors="coerce").sum())
    problems = []
    if n_test < 5:
        problems.append(f"tasks.survival: the test centre(s) {test} have {n_test} patient(s) with "
                        f"{task['endpoint'].upper()}; at least 5 are needed (add patients or test centres)")
    elif events == 0:
        problems.append(f"tasks.survival: no {task['endpoint'].upper()} event among the {n_test} test patients; "
                        f"the C-index is undefined")
    if n_train < 2 * cv:
        problems.append(f"tasks.survival.cv: {cv} folds need at least {2 * cv} training-centre patients with "
                        f"{task['endpoint'].upper()}, the manifest has {n_train}")
    return problems


def _check_endpoint(task: dict, columns) -> list[str]:
    """The survival endpoint must name a time + event column pair of the manifest."""
    from esoct.survival.endpoints import endpoint_columns, manifest_endpoints

    if not task["enabled"]:
        return []
    try:
        needed = endpoint_columns(task["endpoint"])
    except ValueError as exc:
        return [f"tasks.survival.endpoint: {exc}"]
    missing = [c for c in needed if c not in columns]
    if not missing:
        return []
    available = manifest_endpoints(columns)
    return [f"tasks.survival.endpoint: {task['endpoint']!r} needs the manifest column(s) {missing}; "
            f"endpoints in the manifest: {', '.join(available) or 'none'}"]


def _dotted(parts: tuple) -> str:
    return ".".join(str(p) for p in parts)
