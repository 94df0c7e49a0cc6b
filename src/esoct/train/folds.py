"""Patient-level cross-validation folds, stratified by class, saved so that a rerun uses the same ones."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from esoct.errors import InputError


def patient_folds(patient_ids: Sequence[str], labels: Sequence, n_splits: int = 5, seed: int = 0) -> pd.DataFrame:
    """Assign each patient to one test fold, stratified by ``labels``.

    With 5 folds every patient is tested once and each training set holds 80 % of the
    patients (the papers' 80/20 split). Patients are shuffled with ``seed``.

    Parameters
    ----------
    patient_ids : sequence of str
        Unique patient identifiers (one per patient, not per scan).
    labels : sequence
        Class of each patient (stratification); any hashable values.
    n_splits : int
        Number of folds.
    seed : int
        Shuffling seed.

    Returns
    -------
    pandas.DataFrame
        Columns ``patient_id``, ``label``, ``fold`` (0..n_splits-1), in the input order.
    """
    ids = [str(p) for p in patient_ids]
    labels = list(labels)
    if len(ids) != len(labels):
        raise InputError(f"{len(ids)} patient ids but {len(labels)} labels")
    dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique()
    if dup.size:
        raise InputError(f"patient ids must be unique for patient-level folds; repeated: {list(dup[:5])}")
    counts = pd.Series(labels).value_counts()
    if counts.min() < n_splits:
        raise InputError(
            f"class {counts.idxmin()!r} has {counts.min()} patients, fewer than the {n_splits} folds; "
            "merge classes or use fewer folds"
        )
    fold = np.empty(len(ids), dtype=int)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(ids)), [str(v) for v in labels])):
        fold[test] = k
    return pd.DataFrame({"patient_id": ids, "label": labels, "fold": fold})


def save_folds(folds: pd.DataFrame, path: str | Path, seed: int) -> None:
    """Write folds as JSON (``{"seed", "n_splits", "folds": {patient_id: fold}, "labels": {...}}``)."""
    doc = {
        "seed": int(seed),
        "n_splits": int(folds["fold"].max()) + 1,
        "folds": {str(p): int(f) for p, f in zip(folds["patient_id"], folds["fold"])},
        "labels": {str(p): _plain(v) for p, v in zip(folds["patient_id"], folds["label"])},
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1))


def load_or_make_folds(
    path: str | Path, patient_ids: Sequence[str], labels: Sequence, n_splits: int = 5, seed: int = 0
) -> pd.DataFrame:
    """Reuse the folds saved at ``path`` when they cover the same patients; otherwise make and save them.

    Saved folds for a different set of patients, labels or fold count are refused rather than
    silently replaced, so a study never mixes two fold assignments.

    Parameters
    ----------
    path : str or Path
        JSON file (see :func:`save_folds`).
    patient_ids, labels, n_splits, seed
        As in :func:`patient_folds`.

    Returns
    -------
    pandas.DataFrame
        Columns ``patient_id``, ``label``, ``fold``.
    """
    path = Path(path)
    ids = [str(p) for p in patient_ids]
    if path.is_file():
        doc = json.loads(path.read_text())
        saved = doc.get("folds", {})
        if set(saved) != set(ids) or doc.get("n_splits") != n_splits:
            raise InputError(
                f"saved folds cover {len(saved)} patients in {doc.get('n_splits')} folds, but this run has "
                f"{len(ids)} patients in {n_splits} folds; delete the file to make new folds",
                path,
            )
        changed = [p for p, v in zip(ids, labels) if doc.get("labels", {}).get(p) != _plain(v)]
        if changed:
            raise InputError(f"labels changed since the folds were saved for patients {changed[:5]}", path)
        return pd.DataFrame({"patient_id": ids, "label": list(labels), "fold": [saved[p] for p in ids]})
    folds = patient_folds(ids, labels, n_splits, seed)
    save_folds(folds, path, seed)
    return folds


def fold_split(folds: pd.DataFrame, k: int) -> tuple[list[str], list[str]]:
    """Training and test patient ids of fold ``k``."""
    test = folds["fold"] == k
    return folds.loc[~test, "patient_id"].tolist(), folds.loc[test, "patient_id"].tolist()


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
