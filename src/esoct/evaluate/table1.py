"""Cohort description table (a paper's Table 1): summaries per group and the test that compares them."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from esoct.errors import InputError

#: A numeric variable with more distinct values than this is continuous when its type is not given.
CONTINUOUS_MIN_DISTINCT = 10

#: Column names the table uses itself; a group level may not take one of them.
RESERVED_COLUMNS = ("variable", "level", "Overall", "p-value", "test used")

_DASH = "\u2014"


@dataclass(frozen=True)
class _Variable:
    """One row block of the table: a column name, its kind and, if continuous, its summary."""

    name: str
    kind: str  # "continuous" or "categorical"
    nonnormal: bool = False


def describe_cohort(
    df: pd.DataFrame,
    group: str | None = None,
    continuous: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    nonnormal: Sequence[str] | None = None,
    *,
    variables: Sequence[str] | None = None,
    group_order: Sequence | None = None,
    normality_alpha: float = 0.05,
    decimals: int = 1,
) -> pd.DataFrame:
    """Describe a cohort like a paper's Table 1, overall and per group, with a p-value per variable.

    Rules
    -----
    * **Variable type.** A column listed in ``continuous`` or ``nonnormal`` is continuous, one listed in
      ``categorical`` is categorical; otherwise a numeric (not boolean) column with more than
      :data:`CONTINUOUS_MIN_DISTINCT` (10) distinct values is continuous and every other column is
      categorical.
    * **Summary of a continuous variable.** ``median (Q1, Q3)`` (quartiles by linear interpolation,
      R's type 7) when the variable is listed in ``nonnormal`` or when a Shapiro-Wilk test rejects
      normality at ``normality_alpha`` in at least one group (in the whole cohort when there is no
      ``group``); only groups with at least 3 values that are not all equal are tested. Otherwise
      ``mean (SD)`` with the sample SD (``ddof=1``). ``normality_alpha=0`` turns the Shapiro-Wilk rule
      off, so only ``nonnormal`` decides.
    * **Summary of a categorical variable.** ``n (%)`` per level, the percentage of the patients of
      that column whose value is not missing.
    * **Missing values.** A variable with missing values gets a ``missing`` row with the count per
      column; summaries and tests use the values that are present.
    * **Tests** (only with ``group``): continuous mean (SD) variables by Welch's t-test for two groups
      (``scipy.stats.ttest_ind(equal_var=False)``) or one-way ANOVA (``f_oneway``) for more;
      median (Q1, Q3) variables by the Mann-Whitney U test (``mannwhitneyu``, two-sided) or
      Kruskal-Wallis (``kruskal``). Categorical variables by Fisher's exact test when the table is
      2x2 and an expected count is below 5, otherwise the chi-square test of ``chi2_contingency``
      (Yates-corrected for a 2x2 table). Levels observed in no group are left out of the test.
      When a test cannot be done (a group with fewer than 2 values, a single observed level, no
      variation) the p-value is NaN and ``test used`` says why.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient.
    group : str, optional
        Column that splits the cohort (training / external, LNM+ / LNM-). Rows with a missing group
        are left out of the whole table, so ``Overall`` describes the same patients as the groups.
    continuous, categorical : sequence of str, optional
        Columns whose type is forced.
    nonnormal : sequence of str, optional
        Continuous columns always summarised as median (Q1, Q3) and tested by rank tests.
    variables : sequence of str, optional
        Columns to describe, in this order; by default every column except ``group``.
    group_order : sequence, optional
        Order of the group levels (default: sorted; the categories' order for a categorical column).
    normality_alpha : float
        Significance level of the Shapiro-Wilk rule (0 disables it).
    decimals : int
        Decimals of means, SDs, medians, quartiles and percentages.

    Returns
    -------
    pandas.DataFrame
        Columns ``variable``, ``level``, ``Overall``, one column per group level (named ``str(level)``),
        and with ``group`` also ``p-value`` (float, NaN where not tested) and ``test used``. The first
        row is ``n``. A continuous variable takes one row whose ``level`` is ``mean (SD)`` or
        ``median (Q1, Q3)``; a categorical variable a header row with ``level`` ``n (%)`` (carrying the
        p-value) and one row per level; either may be followed by a ``missing`` row.

    Raises
    ------
    InputError
        Unknown columns, a non-numeric column declared continuous, a group level that clashes with a
        column name of the table, or no patients left.
    """
    data, columns = _split_groups(df, group, group_order)
    specs = _variable_specs(data, group, continuous, categorical, nonnormal, variables, columns, normality_alpha)
    rows = [_n_row(columns)]
    for spec in specs:
        if spec.kind == "continuous":
            rows.extend(_continuous_rows(spec, columns, decimals))
        else:
            rows.extend(_categorical_rows(spec, data[spec.name], columns, decimals))
    header = ["variable", "level", *columns]
    if group is None:
        rows = [row[: len(header)] for row in rows]
    else:
        header += ["p-value", "test used"]
    table = pd.DataFrame(rows, columns=header)
    if group is not None:
        table["p-value"] = table["p-value"].astype(float)
    return table


def _split_groups(df: pd.DataFrame, group: str | None, group_order: Sequence | None) -> tuple[pd.DataFrame, dict]:
    """Return the rows kept and ``{column name: rows of that column}`` with ``Overall`` first."""
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"describe_cohort needs a pandas DataFrame, got {type(df).__name__}")
    if group is None:
        if len(df) == 0:
            raise InputError("the cohort table has no rows")
        return df, {"Overall": df}
    if group not in df.columns:
        raise InputError(f"group column {group!r} is not in the table (columns: {list(df.columns)})")
    data = df[df[group].notna()]
    if len(data) == 0:
        raise InputError(f"group column {group!r} is missing for every patient")
    levels = _levels(data[group]) if group_order is None else list(group_order)
    unknown = set(data[group].unique()) - set(levels)
    if unknown:
        raise InputError(f"group column {group!r} has levels {sorted(map(str, unknown))} not in group_order {levels}")
    columns = {"Overall": data}
    for level in levels:
        name = str(level)
        if name in RESERVED_COLUMNS or name in columns:
            raise InputError(
                f"group level {level!r} of column {group!r} clashes with a column name of the table; recode it"
            )
        columns[name] = data[data[group] == level]
    return data, columns


def _levels(values: pd.Series) -> list:
    """Observed levels in a stable order: the categories' order, else sorted (as text when mixed)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return list(values.cat.categories)
    present = list(pd.unique(values.dropna()))
    try:
        return sorted(present)
    except TypeError:
        return sorted(present, key=str)


def _variable_specs(data, group, continuous, categorical, nonnormal, variables, columns, alpha) -> list[_Variable]:
    """Decide the kind and summary of every variable described."""
    continuous, categorical, nonnormal = (set(x or ()) for x in (continuous, categorical, nonnormal))
    names = [c for c in data.columns if c != group] if variables is None else list(variables)
    unknown = sorted(map(str, (set(names) | continuous | categorical | nonnormal) - set(data.columns)))
    if unknown:
        raise InputError(f"columns {unknown} are not in the table (columns: {list(data.columns)})")
    clash = sorted(map(str, (continuous | nonnormal) & categorical))
    if clash:
        raise InputError(f"columns {clash} are declared both continuous and categorical")
    specs = []
    for name in names:
        kind = _infer_kind(data[name], name, continuous | nonnormal, categorical)
        skewed = kind == "continuous" and (name in nonnormal or _rejects_normality(name, columns, alpha))
        specs.append(_Variable(str(name), kind, skewed))
    return specs


def _infer_kind(values: pd.Series, name: str, continuous: set, categorical: set) -> str:
    """``continuous`` or ``categorical`` from the lists, else from the dtype and distinct values."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if name in continuous:
        if not numeric:
            raise InputError(f"column {name!r} is declared continuous but holds {values.dtype} values")
        return "continuous"
    if name in categorical or not numeric:
        return "categorical"
    return "continuous" if values.nunique(dropna=True) > CONTINUOUS_MIN_DISTINCT else "categorical"


def _rejects_normality(name: str, columns: dict, alpha: float) -> bool:
    """True when Shapiro-Wilk rejects normality at ``alpha`` in a group (in the cohort without groups)."""
    if alpha <= 0:
        return False
    parts = list(columns.values())
    samples = parts[1:] if len(parts) > 1 else parts
    for part in samples:
        x = _finite(part[name])
        if len(x) >= 3 and np.ptp(x) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # n > 5000: p-value approximate
                if stats.shapiro(x).pvalue < alpha:
                    return True
    return False


def _finite(values: pd.Series) -> np.ndarray:
    """Non-missing values as a float array."""
    return values.dropna().to_numpy(dtype=float)


def _n_row(columns: dict) -> list:
    """The first row: number of patients per column."""
    return ["n", "", *[str(len(part)) for part in columns.values()], np.nan, ""]


def _fmt(value: float, decimals: int) -> str:
    """A number with ``decimals`` decimals, or a dash when undefined."""
    return _DASH if not np.isfinite(value) else f"{value:.{decimals}f}"


def _continuous_rows(spec: _Variable, columns: dict, decimals: int) -> list[list]:
    """The summary row (and the missing row) of one continuous variable."""
    samples = [_finite(part[spec.name]) for part in columns.values()]
    cells = [_continuous_cell(x, spec.nonnormal, decimals) for x in samples]
    p, test = _continuous_test(samples[1:], spec.nonnormal) if len(samples) > 1 else (np.nan, "")
    level = "median (Q1, Q3)" if spec.nonnormal else "mean (SD)"
    return [[spec.name, level, *cells, p, test], *_missing_row(spec.name, columns)]


def _continuous_cell(x: np.ndarray, nonnormal: bool, decimals: int) -> str:
    """``mean (SD)`` or ``median (Q1, Q3)`` of one column's values."""
    if len(x) == 0:
        return _DASH
    if nonnormal:
        q1, med, q3 = np.percentile(x, [25, 50, 75])
        return f"{_fmt(med, decimals)} ({_fmt(q1, decimals)}, {_fmt(q3, decimals)})"
    sd = np.std(x, ddof=1) if len(x) > 1 else np.nan
    return f"{_fmt(np.mean(x), decimals)} ({_fmt(sd, decimals)})"


def _continuous_test(samples: list[np.ndarray], nonnormal: bool) -> tuple[float, str]:
    """p-value and test name comparing a continuous variable across groups."""
    if len(samples) < 2:
        return np.nan, "not tested: one group"
    if min(len(x) for x in samples) < 2:
        return np.nan, "not tested: a group has fewer than 2 values"
    if all(np.ptp(x) == 0 for x in samples):
        return np.nan, "not tested: no variation within groups"
    if nonnormal:
        if len(samples) == 2:
            return float(stats.mannwhitneyu(*samples).pvalue), "Mann-Whitney U"
        return float(stats.kruskal(*samples).pvalue), "Kruskal-Wallis"
    if len(samples) == 2:
        return float(stats.ttest_ind(*samples, equal_var=False).pvalue), "Welch t-test"
    return float(stats.f_oneway(*samples).pvalue), "one-way ANOVA"


def _categorical_rows(spec: _Variable, values: pd.Series, columns: dict, decimals: int) -> list[list]:
    """Header row, one row per level and the missing row of one categorical variable."""
    levels = _levels(values)
    counts = np.array([[int((part[spec.name] == level).sum()) for part in columns.values()] for level in levels])
    counts = counts.reshape(len(levels), len(columns))
    present = counts.sum(axis=0)
    p, test = _categorical_test(counts[:, 1:]) if len(columns) > 1 else (np.nan, "")
    rows = [[spec.name, "n (%)", *([""] * len(columns)), p, test]]
    for level, row in zip(levels, counts):
        cells = [f"{n} ({_fmt(100.0 * n / d if d else np.nan, decimals)})" for n, d in zip(row, present)]
        rows.append([spec.name, str(level), *cells, np.nan, ""])
    return rows + _missing_row(spec.name, columns)


def _categorical_test(table: np.ndarray) -> tuple[float, str]:
    """p-value and test name for a levels x groups contingency table."""
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return np.nan, "not tested: fewer than 2 groups with values"
    if table.shape[0] < 2:
        return np.nan, "not tested: a single level observed"
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    if table.shape == (2, 2) and (expected < 5).any():
        return float(stats.fisher_exact(table).pvalue), "Fisher's exact"
    res = stats.chi2_contingency(table)
    name = "chi-square (Yates)" if res.dof == 1 else "chi-square"
    small = int((expected < 5).sum())
    if small:
        name += f" ({small} cells with expected count < 5)"
    return float(res.pvalue), name


def _missing_row(name: str, columns: dict) -> list[list]:
    """``[[name, 'missing', counts..., nan, '']]`` when the variable has missing values, else ``[]``."""
    missing = [int(part[name].isna().sum()) for part in columns.values()]
    if missing[0] == 0:
        return []
    return [[name, "missing", *map(str, missing), np.nan, ""]]


def format_p(p: float) -> str:
    """A p-value as a paper prints it: ``<0.001``, three decimals, or empty when NaN.

    Parameters
    ----------
    p : float
        The p-value.

    Returns
    -------
    str
        The formatted value.
    """
    if p is None or not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as text: p-values formatted and a variable's name only on its first row."""
    shown = table.copy()
    if "p-value" in shown:
        shown["p-value"] = shown["p-value"].map(format_p)
    repeat = shown["variable"].eq(shown["variable"].shift())
    shown.loc[repeat, "variable"] = ""
    return shown.astype(str)


def table1_to_markdown(table: pd.DataFrame) -> str:
    """Render a :func:`describe_cohort` table as a GitHub-flavoured Markdown table.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`describe_cohort`.

    Returns
    -------
    str
        Markdown text, one line per row, p-values formatted by :func:`format_p`.
    """
    shown = _display(table)
    lines = [_markdown_row(shown.columns), "|" + "|".join(["---"] * shown.shape[1]) + "|"]
    lines += [_markdown_row(row) for row in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _markdown_row(cells) -> str:
    """One Markdown table row, pipes in the cells escaped."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def table1_to_html(table: pd.DataFrame) -> str:
    """Render a :func:`describe_cohort` table as an HTML ``<table>`` (class ``esoct-table1``).

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`describe_cohort`.

    Returns
    -------
    str
        HTML text, escaped, p-values formatted by :func:`format_p`.
    """
    return _display(table).to_html(index=False, escape=True, classes="esoct-table1", border=0)
