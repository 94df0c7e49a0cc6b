"""Intraclass correlation between two readers, the ICC filter and reproducible mask perturbations."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from esoct.errors import InputError
from esoct.select.correlation import _feature_names

ICC_KINDS = ("ICC(1,1)", "ICC(2,1)", "ICC(3,1)")
PERTURBATIONS = ("erode", "dilate", "contour")
MIN_PATIENTS = 3  # fewer paired readings than this give no usable ICC


def icc(table_a, table_b, kind: str = "ICC(3,1)"):
    """Single-rater intraclass correlation of every feature between two readings.

    Each row is a patient (subject), each column a feature; ``table_a`` holds the first
    reader's (or the original mask's) values, ``table_b`` the second reader's (or the
    perturbed mask's). The coefficients come from the mean squares of a two-way ANOVA
    (subjects x readers), computed for all features at once. A patient with a missing
    (NaN) value in either table is left out of that feature only.

    Parameters
    ----------
    table_a, table_b : pandas.DataFrame or array-like of shape (n_patients, n_features)
        The two readings. DataFrames are matched by index (patient) and column (feature),
        in any order, and must hold the same patients and the same features; arrays are
        matched by position and must have the same shape.
    kind : {"ICC(3,1)", "ICC(2,1)", "ICC(1,1)"}, default "ICC(3,1)"
        ``"ICC(3,1)"``: two-way mixed effects, consistency, single rater (fixed readers);
        ``"ICC(2,1)"``: two-way random effects, absolute agreement, single rater;
        ``"ICC(1,1)"``: one-way random effects, single rater.

    Returns
    -------
    pandas.Series or numpy.ndarray of shape (n_features,)
        The ICC of each feature (a Series indexed by feature name when ``table_a`` is a
        DataFrame). NaN for a feature with fewer than 2 complete patients or no variance
        at all (e.g. a constant feature).

    Raises
    ------
    InputError
        If the tables hold different patients or features, or ``kind`` is unknown.

    References
    ----------
    .. [1] Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater
       reliability. Psychol Bull. 1979;86(2):420-428.
    .. [2] Koo TK, Li MY. A guideline of selecting and reporting intraclass correlation
       coefficients for reliability research. J Chiropr Med. 2016;15(2):155-163.
    """
    _check_kind(kind)
    a, b, names = _paired_arrays(table_a, table_b)
    values = _icc_from_ratings(np.stack([a, b], axis=1), kind)
    return values if names is None else pd.Series(values, index=names, name=kind)


def _check_kind(kind: str) -> None:
    if kind not in ICC_KINDS:
        raise InputError(f"unknown ICC kind {kind!r}; choose one of {', '.join(ICC_KINDS)}")


def _paired_arrays(table_a, table_b):
    """Two float arrays of equal shape, matched by patient and feature; and the feature names."""
    if isinstance(table_a, pd.DataFrame) and isinstance(table_b, pd.DataFrame):
        table_b = _align_reader2(table_a, table_b, allow_subset=False)
        return _as_float(table_a), _as_float(table_b), np.asarray(table_a.columns, dtype=object)
    a, b = _as_float(table_a), _as_float(table_b)
    if a.ndim != 2 or a.shape != b.shape:
        raise InputError(f"the two readings must be 2D tables of the same shape, got {a.shape} and {b.shape}")
    return a, b, None


def _as_float(table) -> np.ndarray:
    try:
        return np.asarray(table, dtype=float)
    except (TypeError, ValueError) as err:
        raise InputError(f"feature tables must be numeric: {err}") from None


def _align_reader2(x: pd.DataFrame, reader2: pd.DataFrame, allow_subset: bool) -> pd.DataFrame:
    """``reader2`` reordered like ``x``; errors name the patients or features that do not match.

    With ``allow_subset`` the patients of ``x`` without a second reading are dropped from
    the result (the reproducibility subset) and extra patients of ``reader2`` are ignored.
    """
    for label, table in (("first reading", x), ("second reading", reader2)):
        if table.index.has_duplicates:
            dup = table.index[table.index.duplicated()].unique()[:5].tolist()
            raise InputError(f"{label}: patient ids repeat in the index ({dup}); one row per patient is needed")
    missing_cols = x.columns.difference(reader2.columns, sort=False).tolist()
    extra_cols = reader2.columns.difference(x.columns, sort=False).tolist()
    if missing_cols or extra_cols:
        raise InputError(
            "the second reading has different features: "
            f"missing {_head(missing_cols)}, unexpected {_head(extra_cols)}"
        )
    missing = x.index.difference(reader2.index, sort=False)
    extra = reader2.index.difference(x.index, sort=False)
    if allow_subset:
        common = x.index[x.index.isin(reader2.index)]
        if len(common) < MIN_PATIENTS:
            raise InputError(
                f"only {len(common)} of the {len(x)} patients have a second reading (at least "
                f"{MIN_PATIENTS} needed); patients without one: {_head(missing.tolist())}"
            )
        return reader2.loc[common, x.columns]
    if len(missing) or len(extra):
        raise InputError(
            "the second reading has different patients: "
            f"missing {_head(missing.tolist())}, unexpected {_head(extra.tolist())}"
        )
    return reader2.loc[x.index, x.columns]


def _head(items: list, n: int = 5) -> str:
    shown = ", ".join(map(str, items[:n]))
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return f"[{shown}{more}]"


def _icc_from_ratings(ratings: np.ndarray, kind: str) -> np.ndarray:
    """ICC of each feature from ``ratings`` of shape (n_patients, n_readers, n_features)."""
    complete = ~np.isnan(ratings).any(axis=1)  # (n, p)
    y = np.where(complete[:, None, :], ratings, np.nan)
    n = complete.sum(axis=0).astype(float)  # patients per feature
    k = float(ratings.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # features with no complete patient
        grand = np.nanmean(y, axis=(0, 1))
        ss_total = np.nansum((y - grand) ** 2, axis=(0, 1))
        ss_rows = k * np.nansum((np.nanmean(y, axis=1) - grand) ** 2, axis=0)
        ss_cols = n * np.sum((np.nanmean(y, axis=0) - grand) ** 2, axis=0)
        ms_rows = ss_rows / (n - 1)
        ms_cols = ss_cols / (k - 1)
        ms_error = (ss_total - ss_rows - ss_cols) / ((n - 1) * (k - 1))
        ms_within = (ss_total - ss_rows) / (n * (k - 1))
        if kind == "ICC(1,1)":
            value = (ms_rows - ms_within) / (ms_rows + (k - 1) * ms_within)
        elif kind == "ICC(2,1)":
            value = (ms_rows - ms_error) / (ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n)
        else:
            value = (ms_rows - ms_error) / (ms_rows + (k - 1) * ms_error)
    value[(n < 2) | ~np.isfinite(value)] = np.nan
    return value


class ICCFilter(SelectorMixin, BaseEstimator):
    """Keep the features whose inter-reader ICC is at least ``threshold``.

    The second reader's feature table can be given in two ways, both of which work in a
    :class:`~sklearn.pipeline.Pipeline` and in cross-validation:

    * as the ``reader2`` constructor argument, a DataFrame indexed by patient id like
      ``X``: ``fit`` looks up the second reading of exactly the patients of the
      ``X`` it is given, so inside a cross-validation fold only that fold's patients are
      used. Patients of ``X`` without a second reading are left out of the ICC (the
      reproducibility subset); ``reader2``'s other patients are ignored. This is the
      recommended form.
    * as a fit parameter, ``fit(X, y, reader2=R2)``, with rows matched to ``X`` (by index
      for DataFrames, by position for arrays); in a pipeline pass ``step__reader2=R2``
      to ``Pipeline.fit`` (or request it with ``set_fit_request(reader2=True)`` under
      scikit-learn metadata routing), and it is split with ``X`` in each fold. It
      overrides the constructor argument.

    Parameters
    ----------
    threshold : float, default 0.8
        Features with ICC >= threshold are kept (Koo & Li: 0.75-0.9 is "good").
    kind : {"ICC(3,1)", "ICC(2,1)", "ICC(1,1)"}, default "ICC(3,1)"
        The ICC form, see :func:`icc`.
    reader2 : pandas.DataFrame, optional
        Second reading, indexed by patient id, with the same feature columns as ``X``.
    reader1 : pandas.DataFrame, optional
        First reading, when ``X`` is not itself the first reading: e.g. ``X`` holds
        delta features and the ICC is that of the same-named pre-treatment features of
        two readers. ``X`` then only says which patients (the fold) and which features;
        the ICC uses the patients of ``X`` found in both readings.

    Attributes
    ----------
    scores_ : ndarray of shape (n_features_in_,)
        ICC of each feature (NaN ones are not kept).
    support_ : ndarray of bool
        Mask of the kept features.
    selected_features_ : ndarray of str
        Names of the kept features.
    n_patients_icc_ : int
        Number of patients the ICC was computed on.

    References
    ----------
    .. [1] Shrout PE, Fleiss JL. Psychol Bull. 1979;86(2):420-428.
    .. [2] Koo TK, Li MY. J Chiropr Med. 2016;15(2):155-163.
    """

    def __init__(self, threshold: float = 0.8, kind: str = "ICC(3,1)", reader2: pd.DataFrame | None = None,
                 reader1: pd.DataFrame | None = None):
        self.threshold = threshold
        self.kind = kind
        self.reader2 = reader2
        self.reader1 = reader1

    def fit(self, X, y=None, reader2=None):
        """Compute the ICC of every feature of ``X`` against the second reading.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_patients, n_features)
            First reading.
        y : ignored
        reader2 : pandas.DataFrame or array-like, optional
            Second reading matched to ``X`` (see the class docstring); overrides the
            constructor's ``reader2``.

        Returns
        -------
        self
        """
        _check_kind(self.kind)
        second = self.reader2 if reader2 is None else reader2
        if second is None:
            raise InputError(
                "ICCFilter needs the second reader's feature table: ICCFilter(reader2=table) or "
                "fit(X, reader2=table); without a second reader, extract features from perturbed_masks()"
            )
        first, second = self._paired(X, second)
        validate_data(self, X, ensure_all_finite="allow-nan", dtype=float)
        self.n_patients_icc_ = len(first)
        self.scores_ = _icc_from_ratings(np.stack([first, second], axis=1), self.kind)
        self.support_ = np.nan_to_num(self.scores_, nan=-np.inf) >= self.threshold
        self.selected_features_ = _feature_names(self)[self.support_]
        return self

    def _paired(self, X, second):
        if isinstance(X, pd.DataFrame):
            if not isinstance(second, pd.DataFrame):
                raise InputError("X is a DataFrame, so the second reading must be a DataFrame indexed by patient id")
            first = X if self.reader1 is None else _first_reading(X, self.reader1)
            second = _align_reader2(first, second, allow_subset=True)
            return _as_float(first.loc[second.index]), _as_float(second)
        if self.reader1 is not None:
            raise InputError("reader1 needs X as a DataFrame indexed by patient id")
        first, second = _as_float(X), _as_float(second)
        if first.shape != second.shape:
            raise InputError(
                f"the second reading has shape {second.shape} but X has {first.shape}; with arrays "
                "rows are matched by position, so pass DataFrames indexed by patient id in cross-validation"
            )
        return first, second

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def _first_reading(X: pd.DataFrame, reader1: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``reader1`` for the patients of ``X``, with the columns of ``X``."""
    missing = X.columns.difference(reader1.columns, sort=False).tolist()
    if missing:
        raise InputError(f"the first reading (reader1) lacks features of X: {_head(missing)}")
    if reader1.index.has_duplicates:
        raise InputError("first reading (reader1): patient ids repeat in the index; one row per patient is needed")
    return reader1.loc[X.index[X.index.isin(reader1.index)], X.columns]


def perturbed_masks(mask, seed: int, n: int = 3, kinds=PERTURBATIONS, radius: int = 1, flip_fraction: float = 0.5):
    """Reproducible perturbations of a binary mask, a stand-in for a second reader.

    Perturbation ``i`` is of kind ``kinds[i % len(kinds)]``:

    * ``"erode"``: binary erosion by ``radius`` voxels (6-connected structuring element,
      iterated), the reader who draws tight;
    * ``"dilate"``: binary dilation by ``radius`` voxels, the reader who draws wide;
    * ``"contour"``: contour noise: every voxel of the boundary band (within ``radius``
      voxels of the contour, inside or outside) is flipped with probability
      ``flip_fraction``, then holes are filled.

    Radii are in voxels: resample to isotropic spacing first when the spacing matters.

    Parameters
    ----------
    mask : array-like of shape (z, y, x) (or 2D)
        Segmentation; non-zero voxels are foreground.
    seed : int
        Seed of the contour noise; the same seed gives the same masks.
    n : int, default 3
        Number of perturbed masks.
    kinds : sequence of {"erode", "dilate", "contour"}, default all three
        Perturbations, used in turn.
    radius : int, default 1
        Erosion / dilation radius and width of the contour band, in voxels.
    flip_fraction : float, default 0.5
        Probability that a boundary-band voxel is flipped by contour noise.

    Returns
    -------
    list of numpy.ndarray of bool
        ``n`` masks of the shape of ``mask``.

    Raises
    ------
    InputError
        If the mask is empty, a perturbation leaves it empty (too small to erode), or an
        argument is out of range.
    """
    base = np.asarray(mask) != 0
    _check_perturbation_args(base, n, kinds, radius, flip_fraction)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        perturbed = _perturb(base, kind, radius, flip_fraction, rng)
        if not perturbed.any():
            raise InputError(
                f"perturbation {i} ({kind}, radius {radius}) leaves the mask empty: "
                f"the mask ({int(base.sum())} voxels) is too small"
            )
        out.append(perturbed)
    return out


def _check_perturbation_args(base, n, kinds, radius, flip_fraction) -> None:
    if not base.any():
        raise InputError("the mask is empty: nothing to perturb")
    unknown = [k for k in kinds if k not in PERTURBATIONS]
    if unknown or not len(kinds):
        raise InputError(f"unknown perturbations {unknown}; choose from {', '.join(PERTURBATIONS)}")
    if n < 1 or radius < 1 or not 0 < flip_fraction <= 1:
        raise InputError(f"need n >= 1, radius >= 1 and 0 < flip_fraction <= 1, got {n}, {radius}, {flip_fraction}")


def _perturb(base: np.ndarray, kind: str, radius: int, flip_fraction: float, rng) -> np.ndarray:
    structure = ndimage.generate_binary_structure(base.ndim, 1)
    if kind == "erode":
        return ndimage.binary_erosion(base, structure, iterations=radius)
    if kind == "dilate":
        return ndimage.binary_dilation(base, structure, iterations=radius)
    inner = ndimage.binary_erosion(base, structure, iterations=radius, border_value=0)
    outer = ndimage.binary_dilation(base, structure, iterations=radius)
    band = outer & ~inner
    flip = band & (rng.random(base.shape) < flip_fraction)
    return ndimage.binary_fill_holes(base ^ flip)
