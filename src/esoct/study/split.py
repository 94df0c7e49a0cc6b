"""Single-centre designs: a seeded random or a temporal hold-out instead of an external test centre.

Every task of a study scores its models on the patients of ``cohort.test_centers`` and trains on
the others. A single-centre cohort has no second centre, so the study file may ask for

* ``split: random`` -- a seeded random hold-out of ``test_fraction`` of the patients, stratified by
  the survival endpoint's event indicator when the survival task is on (TRIPOD type 2a);
* ``split: temporal`` -- the latest ``test_fraction`` of the patients by ``date_column``
  (diagnosis or scan date), the design TRIPOD calls temporal validation (type 2b): patients on
  the cut-off date all go to the hold-out, so the split never depends on row order.

:func:`holdout_patients` picks the hold-out; :func:`write_split_manifest` writes the manifest the
tasks then read, with ``center`` set to ``development`` / ``holdout`` and the original centre kept in
``site``, so every task's centre-based split is this split.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import InputError
from esoct.io.manifest import IMAGE_COLUMNS

#: The ``center`` values of a random or temporal split.
DEVELOPMENT, HOLDOUT = "development", "holdout"
SPLITS = ("centre", "random", "temporal")


def holdout_patients(table: pd.DataFrame, method: str, *, fraction: float = 0.3, seed: int = 0,
                     date_column: str | None = None, stratify: str | None = None) -> list[str]:
    """The patients held out for testing.

    Parameters
    ----------
    table : pandas.DataFrame
        The manifest, one row per patient (``patient_id`` column).
    method : {"random", "temporal"}
    fraction : float
        Share of the patients held out, in (0, 1); the hold-out has ``ceil(fraction * n)`` patients
        (temporal: more when several patients share the cut-off date).
    seed : int
        Seed of the random split.
    date_column : str, optional
        Column of dates (anything :func:`pandas.to_datetime` reads) for the temporal split.
    stratify : str, optional
        Column whose classes the random split keeps in proportion (ignored when a class has fewer
        than 2 patients).

    Returns
    -------
    list of str
        Patient ids of the hold-out, in manifest order.

    Raises
    ------
    InputError
        Unknown method, a fraction outside (0, 1), a missing date column or dates that cannot be
        read (naming the patients).
    """
    ids = table["patient_id"].astype(str).tolist()
    if method not in ("random", "temporal"):
        raise InputError(f"split {method!r}: choose 'random' or 'temporal' (or 'centre' with test_centers)")
    if not 0.0 < fraction < 1.0:
        raise InputError(f"test_fraction must lie between 0 and 1, got {fraction}")
    n_test = max(1, math.ceil(fraction * len(ids)))
    if n_test >= len(ids):
        raise InputError(f"a hold-out of {fraction:.0%} leaves no training patient among {len(ids)}")
    if method == "temporal":
        dates = _dates(table, date_column)
        cutoff = dates.sort_values(kind="stable").iloc[len(ids) - n_test]
        held = set(dates.index[dates >= cutoff])
        if len(held) >= len(ids):
            raise InputError(f"every patient is on or after the cut-off date {cutoff.date()}; the temporal split "
                             f"needs earlier patients to train on")
        return [p for p in ids if p in held]
    from sklearn.model_selection import train_test_split

    labels = None
    if stratify is not None and stratify in table.columns:
        labels = table[stratify].astype(str).to_numpy()
        if pd.Series(labels).value_counts().min() < 2:
            labels = None
    _, test = train_test_split(np.asarray(ids), test_size=n_test, random_state=seed, stratify=labels)
    held = set(test.tolist())
    return [p for p in ids if p in held]


def _dates(table: pd.DataFrame, column: str | None) -> pd.Series:
    if not column:
        raise InputError("the temporal split needs cohort.date_column (a column of diagnosis or scan dates)")
    if column not in table.columns:
        raise InputError(f"cohort.date_column: the manifest has no column {column!r}")
    dates = pd.to_datetime(table[column], errors="coerce")
    dates.index = table["patient_id"].astype(str)
    bad = dates.index[dates.isna()].tolist()
    if bad:
        raise InputError(f"cohort.date_column {column!r}: no readable date for patient(s) {', '.join(bad)}")
    return dates


def relabel(table: pd.DataFrame, holdout: list[str]) -> pd.DataFrame:
    """A copy of ``table`` with ``center`` = development / holdout and the original centre in ``site``."""
    table = table.copy()
    if "site" not in table.columns:
        table.insert(table.columns.get_loc("center") + 1, "site", table["center"])
    held = set(map(str, holdout))
    table["center"] = [HOLDOUT if p in held else DEVELOPMENT for p in table["patient_id"].astype(str)]
    return table


def write_split_manifest(manifest_path: str | Path, holdout: list[str], out: str | Path) -> Path:
    """Write the manifest the tasks read: ``center`` = development / holdout, the old centre in ``site``.

    Image paths are written absolute, so the new manifest works from any folder.

    Parameters
    ----------
    manifest_path : str or Path
        The study's manifest.
    holdout : list of str
        Patient ids of the hold-out (:func:`holdout_patients`).
    out : str or Path
        CSV to write (its folder is created).

    Returns
    -------
    Path
    """
    from esoct.io.manifest import load_manifest

    manifest = load_manifest(manifest_path)
    table = manifest.table.copy()
    for column in IMAGE_COLUMNS:
        if column in table.columns:
            table[column] = [None if manifest.resolve(row, column) is None else str(manifest.resolve(row, column))
                             for _, row in table.iterrows()]
    table = relabel(table, holdout)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return out


def describe_split(cohort_settings: dict, n_holdout: int, n: int, dates: tuple | None = None) -> str:
    """One methods sentence on a random or temporal split.

    Parameters
    ----------
    cohort_settings : dict
        The study file's ``cohort`` section.
    n_holdout, n : int
        Hold-out and cohort size.
    dates : tuple of str, optional
        First and last date of the hold-out (temporal split).
    """
    share = cohort_settings.get("test_fraction", 0.3)
    if cohort_settings.get("split") == "temporal":
        when = f" (diagnosed {dates[0]} to {dates[1]})" if dates else ""
        return (f"Temporal validation: the latest {share:.0%} of the patients by {cohort_settings.get('date_column')} "
                f"(n = {n_holdout}{when}) formed the test set, the earlier patients (n = {n - n_holdout}) the "
                f"training set; no patient of the test set was used to choose any setting.")
    return (f"A random hold-out of {share:.0%} of the patients (n = {n_holdout}; seeded, stratified by the event "
            f"indicator where the survival task ran) formed the test set, the other patients (n = {n - n_holdout}) "
            f"the training set; no patient of the test set was used to choose any setting.")
