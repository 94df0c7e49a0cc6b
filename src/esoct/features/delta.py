"""Delta-radiomics: the relative change of every feature between the pre- and post-treatment scans."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from esoct.errors import InputError

ID_COLUMNS = ("patient_id", "timepoint")
NAN_REPORT_COLUMNS = ("patient_id", "feature", "reason")
PREFIX = "delta_"

# reasons, in the order they are checked (the first that applies is reported)
NO_PRE = "no pre-treatment row for this patient"
NO_POST = "no post-treatment row for this patient"
PRE_NAN = "pre value is NaN"
PRE_INF = "pre value is infinite"
POST_NAN = "post value is NaN"
POST_INF = "post value is infinite"
PRE_ZERO = "pre value is 0 (relative change undefined)"
OVERFLOW = "relative change overflows (pre value too close to 0)"
_REASONS = (NO_PRE, NO_POST, PRE_NAN, PRE_INF, POST_NAN, POST_INF, PRE_ZERO, OVERFLOW)


@dataclass
class DeltaResult:
    """Outcome of :func:`delta_features`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per patient (order of first appearance in the input): ``patient_id``, then
        ``delta_<feature>`` for every feature, ``(post - pre) / pre`` (a fraction: -0.25 is a 25 %
        decrease). NaN where undefined, never infinite.
    nan_report : pandas.DataFrame
        ``patient_id, feature, reason``: one row per NaN of ``table`` (``feature`` is the input
        feature name, without the prefix), sorted like ``table``'s rows and columns.
    skipped_columns : list of str
        Non-numeric input columns that were not treated as features (e.g. ``center``).
    """

    table: pd.DataFrame
    nan_report: pd.DataFrame
    skipped_columns: list = field(default_factory=list)


def delta_features(
    features: pd.DataFrame | str | Path,
    *,
    columns: list[str] | None = None,
    pre: str = "pre",
    post: str = "post",
    prefix: str = PREFIX,
) -> DeltaResult:
    """Delta-radiomics features ``DRF = (RF_post - RF_pre) / RF_pre`` per patient and feature.

    Parameters
    ----------
    features : pandas.DataFrame, str or Path
        The long table :func:`esoct.features.cohort.extract_cohort` writes (or its Parquet /
        CSV file): ``patient_id``, ``timepoint``, then one column per feature (PyRadiomics
        names, e.g. ``original_firstorder_Entropy``). Rows of other time points are ignored.
    columns : list of str, optional
        Features to use; default: every numeric column other than ``patient_id`` and ``timepoint``.
    pre, post : str
        The ``timepoint`` values of the baseline and the post-treatment scan.
    prefix : str
        Prefix of the output columns (default ``"delta_"``).

    Returns
    -------
    DeltaResult
        The wide table and the report of every NaN with its reason: a patient missing a time
        point, a NaN or infinite pre or post value, a pre value of 0, or an overflowing ratio.

    Raises
    ------
    InputError
        The file cannot be read, ``patient_id`` / ``timepoint`` or a requested column is
        missing, a requested column is not numeric, or a patient has more than one row for the
        same time point (naming the patients).

    References
    ----------
    .. [1] Fave X et al. Delta-radiomics features for the prediction of patient outcomes in
       non-small cell lung cancer. Sci Rep. 2017;7:588.
    .. [2] seeds/longitudinal-survival-crossformer-rsf.txt: DRF = (RF_post - RF_pre) / RF_pre.

    Examples
    --------
    >>> long = pd.DataFrame({"patient_id": ["a", "a"], "timepoint": ["pre", "post"],
    ...                      "original_shape_MeshVolume": [100.0, 75.0]})
    >>> delta_features(long).table
      patient_id  delta_original_shape_MeshVolume
    0          a                            -0.25
    """
    path = None
    if isinstance(features, (str, Path)):
        path = Path(features)
        features = _read(path)
    table = features
    missing = [c for c in ID_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"the feature table lacks the column(s) {', '.join(missing)}", path)
    names, skipped = _feature_columns(table, columns, path)
    ids = table["patient_id"].astype(str)
    tps = table["timepoint"].astype(str)
    _check_duplicates(ids, tps, (pre, post), path)
    patients = list(dict.fromkeys(ids))
    values = table[names].apply(pd.to_numeric, errors="coerce").astype(float)
    values.index = ids.to_numpy()
    before = values[(tps == pre).to_numpy()].reindex(patients)
    after = values[(tps == post).to_numpy()].reindex(patients)
    has_pre = np.isin(patients, ids[tps == pre].to_numpy())
    has_post = np.isin(patients, ids[tps == post].to_numpy())
    a, b = before.to_numpy(), after.to_numpy()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        delta = (b - a) / a
    codes = _reason_codes(a, b, delta, has_pre, has_post)
    delta[codes >= 0] = np.nan
    out = pd.DataFrame(delta, columns=[prefix + n for n in names])
    out.insert(0, "patient_id", patients)
    return DeltaResult(out, _report(codes, patients, names), skipped)


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError("feature table not found", path)
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"patient_id": str})
    except Exception as exc:  # noqa: BLE001 - reported in the user's terms
        raise InputError(f"cannot read the feature table: {type(exc).__name__}: {exc}", path) from None


def _feature_columns(table: pd.DataFrame, columns, path) -> tuple[list[str], list[str]]:
    others = [c for c in table.columns if c not in ID_COLUMNS]
    if columns is None:
        numeric = pd.api.types.is_numeric_dtype
        names = [c for c in others if numeric(table[c]) and not pd.api.types.is_bool_dtype(table[c])]
        return names, [c for c in others if c not in names]
    columns = list(columns)
    absent = [c for c in columns if c not in table.columns or c in ID_COLUMNS]
    if absent:
        raise InputError(f"feature column(s) not in the table: {', '.join(map(str, absent[:10]))}", path)
    text = [c for c in columns if not pd.api.types.is_numeric_dtype(table[c])]
    if text:
        raise InputError(f"feature column(s) are not numeric: {', '.join(map(str, text[:10]))}", path)
    return columns, []


def _check_duplicates(ids: pd.Series, tps: pd.Series, used: tuple[str, str], path) -> None:
    keys = pd.DataFrame({"patient_id": ids, "timepoint": tps})
    keys = keys[keys["timepoint"].isin(used)]
    dup = keys[keys.duplicated(keep=False)].drop_duplicates()
    if len(dup):
        pairs = ", ".join(f"{p} ({t})" for p, t in dup.head(10).itertuples(index=False))
        more = f" and {len(dup) - 10} more" if len(dup) > 10 else ""
        first = str(dup["patient_id"].iloc[0]) if len(dup) == 1 else None
        raise InputError(f"more than one row for the same patient and time point: {pairs}{more}", path, first)


def _reason_codes(a, b, delta, has_pre, has_post) -> np.ndarray:
    """Index into ``_REASONS`` of each cell's first applicable reason, -1 where the delta is fine."""
    conditions = [
        np.broadcast_to(~has_pre[:, None], a.shape),
        np.broadcast_to(~has_post[:, None], a.shape),
        np.isnan(a),
        np.isinf(a),
        np.isnan(b),
        np.isinf(b),
        a == 0,
        ~np.isfinite(delta),
    ]
    return np.select(conditions, np.arange(len(conditions)), default=-1)


def _report(codes: np.ndarray, patients: list[str], names: list[str]) -> pd.DataFrame:
    rows, cols = np.nonzero(codes >= 0)
    return pd.DataFrame(
        {
            "patient_id": np.asarray(patients, dtype=object)[rows],
            "feature": np.asarray(names, dtype=object)[cols],
            "reason": np.asarray(_REASONS, dtype=object)[codes[rows, cols]],
        },
        columns=list(NAN_REPORT_COLUMNS),
    )
