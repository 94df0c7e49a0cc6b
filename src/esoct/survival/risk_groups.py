"""Risk groups by the training median, Kaplan-Meier by group with log-rank p, and the adjusted Cox of a risk score."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from esoct.errors import InputError
from esoct.survival.cox import CoxPH, _as_frame, _structured


def _risk_vector(risk, what: str = "risk") -> np.ndarray:
    """A 1-D float array of finite risk scores (a single-column 2-D input is accepted)."""
    arr = np.asarray(risk, dtype=float) if not isinstance(risk, pd.DataFrame) else risk.to_numpy(dtype=float)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InputError(f"{what} must be one score per patient (1-D), got shape {arr.shape}")
    if len(arr) == 0:
        raise InputError(f"{what} is empty")
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise InputError(f"{what} has {len(bad)} missing or infinite score(s), first at position {int(bad[0])}")
    return arr


def _time_event(time, event, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Checked time (float, >= 0, finite) and event (bool from 0/1 or bool)."""
    t = np.asarray(time, dtype=float).ravel()
    e_raw = np.asarray(event).ravel()
    if len(t) != len(e_raw):
        raise InputError(f"time has {len(t)} values but event has {len(e_raw)}")
    if n is not None and len(t) != n:
        raise InputError(f"time/event have {len(t)} patients but the scores or covariates have {n}")
    if not np.isfinite(t).all():
        raise InputError(f"time has missing or infinite values (position {int(np.flatnonzero(~np.isfinite(t))[0])})")
    if (t < 0).any():
        raise InputError(f"time has negative values (position {int(np.flatnonzero(t < 0)[0])})")
    if e_raw.dtype != bool and not np.isin(e_raw, (0, 1)).all():
        raise InputError("event must be 0/1 or boolean")
    return t, e_raw.astype(bool)


def median_split(train_risk) -> float:
    """The median risk of the training cohort, the threshold between low- and high-risk groups.

    Parameters
    ----------
    train_risk : array-like, shape (n_patients,)
        Risk scores of the training cohort (higher = worse prognosis).

    Returns
    -------
    float
        ``numpy.median(train_risk)``.
    """
    return float(np.median(_risk_vector(train_risk, "train_risk")))


class RiskGroups(TransformerMixin, BaseEstimator):
    """Low/high risk groups split at the training cohort's median risk, applied unchanged to any cohort.

    A patient is ``labels[1]`` ("high") when the score is strictly above ``threshold_``,
    else ``labels[0]`` ("low"): patients tied with the median are low risk. ``transform``
    never refits, so the test cohort is cut at the *training* median, as in the papers.

    Parameters
    ----------
    labels : tuple of str
        Names of the (low, high) groups.

    Attributes
    ----------
    threshold_ : float
        Median of the training scores.
    n_train_ : int
        Number of training patients.
    """

    def __init__(self, labels: tuple = ("low", "high")):
        self.labels = labels

    def fit(self, X, y=None):
        """Store the training median.

        Parameters
        ----------
        X : array-like, shape (n_patients,) or (n_patients, 1)
            Training risk scores.
        y : ignored

        Returns
        -------
        self
        """
        if len(self.labels) != 2:
            raise ValueError(f"labels must be (low, high), got {self.labels!r}")
        risk = _risk_vector(X, "training risk")
        self.threshold_ = median_split(risk)
        self.n_train_ = len(risk)
        return self

    def transform(self, X) -> np.ndarray:
        """Group label of each patient.

        Parameters
        ----------
        X : array-like, shape (n_patients,) or (n_patients, 1)
            Risk scores of any cohort.

        Returns
        -------
        ndarray of str, shape (n_patients,)
        """
        check_is_fitted(self, "threshold_")
        risk = _risk_vector(X)
        low, high = self.labels
        return np.where(risk > self.threshold_, high, low).astype(object)


@dataclass
class KaplanMeierResult:
    """Kaplan-Meier curves of groups and their log-rank comparison (returned by :func:`km_by_group`).

    Attributes
    ----------
    groups : list
        Group labels in plotting order.
    fitters : dict
        ``{group: lifelines.KaplanMeierFitter}``.
    table : pandas.DataFrame
        Long table, one row per group and distinct time (time 0 included): ``group, time,
        n_at_risk, n_events, n_censored, survival, lower, upper`` (95 % CI, lifelines'
        exponential Greenwood, i.e. log(-log) transformed).
    medians : pandas.DataFrame
        Per group: ``n, events, median, lower, upper`` (median survival and its 95 % CI;
        ``inf`` when the curve or its bound never falls to 0.5).
    logrank_statistic, logrank_p : float
        Log-rank chi-square and p-value (NaN when fewer than two groups; see ``note``).
    logrank_df : int
        Degrees of freedom (groups - 1).
    note : str
        Why the test is NaN, if it is.
    """

    groups: list
    fitters: dict
    table: pd.DataFrame
    medians: pd.DataFrame
    logrank_statistic: float
    logrank_p: float
    logrank_df: int
    note: str = ""
    _time: np.ndarray = field(default=None, repr=False)
    _groups: np.ndarray = field(default=None, repr=False)

    def at_risk(self, times) -> pd.DataFrame:
        """Number at risk (time >= t) of each group at ``times``, the table under a KM plot.

        Parameters
        ----------
        times : array-like

        Returns
        -------
        pandas.DataFrame
            Index: group; columns: times.
        """
        t = np.asarray(times, dtype=float)
        rows = {g: [(self._time[self._groups == g] >= ti).sum() for ti in t] for g in self.groups}
        return pd.DataFrame.from_dict(rows, orient="index", columns=list(t))


def _group_order(groups: pd.Series, order) -> list:
    if order is not None:
        missing = set(groups.unique()) - set(order)
        if missing:
            raise InputError(f"groups {sorted(map(str, missing))} are not in order={list(order)}")
        return [g for g in order if (groups == g).any()]
    if isinstance(groups.dtype, pd.CategoricalDtype):
        return [g for g in groups.cat.categories if (groups == g).any()]
    values = list(pd.unique(groups))
    if set(values) <= {"low", "high"}:
        return [g for g in ("low", "high") if g in values]
    return sorted(values, key=str)


def km_by_group(time, event, groups, order=None, alpha: float = 0.05) -> KaplanMeierResult:
    """Kaplan-Meier estimate per group and the log-rank test between groups (lifelines).

    Parameters
    ----------
    time : array-like, shape (n_patients,)
        Follow-up times (non-negative).
    event : array-like, shape (n_patients,)
        1/True = event observed, 0/False = censored.
    groups : array-like, shape (n_patients,)
        Group label of each patient (e.g. :class:`RiskGroups` output).
    order : sequence, optional
        Order of the groups; default: categorical order, ("low", "high"), else sorted.
    alpha : float
        1 - confidence level of the survival and median intervals.

    Returns
    -------
    KaplanMeierResult

    References
    ----------
    .. [1] Kaplan EL, Meier P. Nonparametric estimation from incomplete observations.
       J Am Stat Assoc 1958;53:457-481.
    .. [2] Mantel N. Evaluation of survival data and two new rank order statistics arising
       in its consideration. Cancer Chemother Rep 1966;50:163-170.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test, multivariate_logrank_test
    from lifelines.utils import median_survival_times

    t, e = _time_event(time, event)
    g = groups.reset_index(drop=True) if isinstance(groups, pd.Series) else pd.Series(np.asarray(groups, dtype=object))
    if len(g) != len(t):
        raise InputError(f"groups has {len(g)} labels but time has {len(t)} patients")
    if g.isna().any():
        first = int(np.flatnonzero(g.isna())[0])
        raise InputError(f"groups has {int(g.isna().sum())} missing label(s), first at position {first}")
    names = _group_order(g, order)
    garr = g.to_numpy(dtype=object)

    fitters, tables, medians = {}, [], []
    for name in names:
        m = garr == name
        kmf = KaplanMeierFitter(alpha=alpha).fit(t[m], e[m], label=str(name))
        fitters[name] = kmf
        et = kmf.event_table
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_
        tables.append(
            pd.DataFrame(
                {
                    "group": name,
                    "time": et.index.to_numpy(dtype=float),
                    "n_at_risk": et["at_risk"].to_numpy(),
                    "n_events": et["observed"].to_numpy(),
                    "n_censored": et["censored"].to_numpy(),
                    "survival": sf.loc[et.index].to_numpy(),
                    "lower": ci.iloc[:, 0].loc[et.index].to_numpy(),
                    "upper": ci.iloc[:, 1].loc[et.index].to_numpy(),
                }
            )
        )
        med_ci = median_survival_times(ci)
        medians.append(
            {
                "group": name,
                "n": int(m.sum()),
                "events": int(e[m].sum()),
                "median": float(kmf.median_survival_time_),
                "lower": float(med_ci.iloc[0, 0]),
                "upper": float(med_ci.iloc[0, 1]),
            }
        )

    note = ""
    if len(names) < 2:
        stat, p, df = float("nan"), float("nan"), 0
        note = "log-rank test needs at least two groups; only one is present"
    elif not e.any():
        stat, p, df = float("nan"), float("nan"), len(names) - 1
        note = "log-rank test undefined: no events in any group"
    elif len(names) == 2:
        a, b = garr == names[0], garr == names[1]
        res = logrank_test(t[a], t[b], e[a], e[b])
        stat, p, df = float(res.test_statistic), float(res.p_value), 1
    else:
        keep = np.isin(garr, names)
        res = multivariate_logrank_test(t[keep], garr[keep], e[keep])
        stat, p, df = float(res.test_statistic), float(res.p_value), int(res.degrees_of_freedom)

    return KaplanMeierResult(
        groups=names,
        fitters=fitters,
        table=pd.concat(tables, ignore_index=True),
        medians=pd.DataFrame(medians).set_index("group"),
        logrank_statistic=stat,
        logrank_p=p,
        logrank_df=df,
        note=note,
        _time=t,
        _groups=garr,
    )


def adjusted_cox(
    risk_score,
    clinical_df: pd.DataFrame,
    time,
    event,
    *,
    name: str = "risk_score",
    penalizer: float = 0.0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Multivariable Cox model of a risk score adjusted for clinical covariates.

    Categorical (object, category, bool-like string) clinical columns are dummy-coded
    against their first level, named ``column[level]``; encode ordinal variables such as
    clinical stage as numbers beforehand. A risk score given as group labels
    ("low"/"high") enters as the indicator ``name[high]``, so its HR is high vs low.

    Parameters
    ----------
    risk_score : array-like, shape (n_patients,)
        Continuous score or low/high group labels.
    clinical_df : pandas.DataFrame
        Clinical covariates, one row per patient (same order as ``risk_score``).
    time, event : array-like, shape (n_patients,)
        Follow-up time and event indicator.
    name : str
        Name of the risk-score row.
    penalizer : float
        lifelines ridge/elastic-net penalty (0 for the ordinary model).
    alpha : float
        1 - confidence level of the HR intervals.

    Returns
    -------
    pandas.DataFrame
        :attr:`CoxPH.summary_` of the model (``coef, se, HR, HR_lower, HR_upper, z, p``),
        the risk score's row(s) first.

    References
    ----------
    .. [1] Cox DR. Regression models and life-tables. J R Stat Soc B 1972;34:187-220.
    """
    if not isinstance(clinical_df, pd.DataFrame):
        raise InputError("clinical_df must be a pandas DataFrame with one row per patient")
    clinical = clinical_df.reset_index(drop=True)
    n = len(clinical)
    raw = np.asarray(risk_score, dtype=object).ravel()
    if len(raw) != n:
        raise InputError(f"risk_score has {len(raw)} values but clinical_df has {n} rows")
    if n and all(isinstance(v, str) for v in raw):
        levels = set(raw)
        if not levels <= {"low", "high"}:
            raise InputError(f"risk_score labels must be 'low'/'high', got {sorted(levels)}")
        risk = pd.DataFrame({f"{name}[high]": (raw == "high").astype(float)})
    else:
        risk = pd.DataFrame({name: _risk_vector(raw.astype(float), "risk_score")})
    if name in clinical.columns:
        raise InputError(f"clinical_df already has a column named {name!r}; pass another name=")
    cat_cols = [
        c
        for c in clinical.columns
        if not pd.api.types.is_numeric_dtype(clinical[c]) and not pd.api.types.is_bool_dtype(clinical[c])
    ]
    if cat_cols:
        dummies = pd.get_dummies(clinical[cat_cols].astype("category"), prefix_sep="[", drop_first=True, dtype=float)
        dummies.columns = [f"{c}]" for c in dummies.columns]
        clinical = pd.concat([clinical.drop(columns=cat_cols), dummies], axis=1)
    X = _as_frame(pd.concat([risk, clinical], axis=1), what="risk score + clinical covariates")
    t, e = _time_event(time, event, n)
    model = CoxPH(penalizer=penalizer, alpha=alpha).fit(X, _structured(e, t))
    return model.summary_
