"""Table 1: summaries computed by hand, p-values equal to scipy's, test-choice rules, missing counts, real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from esoct.errors import InputError
from esoct.evaluate.table1 import (
    describe_cohort,
    format_p,
    table1_to_html,
    table1_to_markdown,
)


def _row(table: pd.DataFrame, variable: str, level: str) -> pd.Series:
    """The single row of ``variable`` / ``level``."""
    hit = table[(table["variable"] == variable) & (table["level"] == level)]
    assert len(hit) == 1, (variable, level, table)
    return hit.iloc[0]


@pytest.fixture()
def small() -> pd.DataFrame:
    """Twelve patients in two groups; ``age`` has one missing value in group B."""
    return pd.DataFrame(
        {
            "cohort": ["A"] * 6 + ["B"] * 6,
            "age": [50.0, 55, 60, 62, 58, 70, 45, 48, 52, 49, 51, np.nan],
            "volume": [10.0, 12, 15, 30, 80, 11, 20, 22, 25, 90, 21, 23],
            "sex": ["M", "F", "M", "M", "F", "M", "F", "F", "M", "F", "F", "F"],
            "location": ["upper", "middle", "lower", "middle", "middle", "lower",
                         "upper", "upper", "middle", "lower", "upper", "middle"],
        }
    )


def test_continuous_mean_sd_by_hand_and_welch_p(small):
    table = describe_cohort(small, group="cohort", continuous=["age", "volume"], nonnormal=["volume"],
                            categorical=["sex", "location"], normality_alpha=0)
    age = _row(table, "age", "mean (SD)")
    # group A: mean 59.1667, SD sqrt(228.8333 / 5) = 6.7651; group B (one missing): mean 49.0, SD 2.7386
    assert age["A"] == "59.2 (6.8)"
    assert age["B"] == "49.0 (2.7)"
    a = small.loc[small.cohort == "A", "age"].to_numpy()
    b = small.loc[small.cohort == "B", "age"].dropna().to_numpy()
    both = np.r_[a, b]
    assert age["Overall"] == f"{both.mean():.1f} ({both.std(ddof=1):.1f})"
    assert age["test used"] == "Welch t-test"
    assert abs(age["p-value"] - stats.ttest_ind(a, b, equal_var=False).pvalue) < 1e-12
    missing = _row(table, "age", "missing")
    assert (missing["Overall"], missing["A"], missing["B"]) == ("1", "0", "1")
    assert _row(table, "n", "")[["Overall", "A", "B"]].tolist() == ["12", "6", "6"]


def test_nonnormal_median_iqr_and_mann_whitney_p(small):
    table = describe_cohort(small, group="cohort", nonnormal=["volume"], decimals=2)
    vol = _row(table, "volume", "median (Q1, Q3)")
    # group A sorted: 10 11 12 15 30 80 -> median 13.5, Q1 = 11.25, Q3 = 26.25 (linear interpolation)
    assert vol["A"] == "13.50 (11.25, 26.25)"
    a = small.loc[small.cohort == "A", "volume"]
    b = small.loc[small.cohort == "B", "volume"]
    assert vol["test used"] == "Mann-Whitney U"
    assert abs(vol["p-value"] - stats.mannwhitneyu(a, b).pvalue) < 1e-12
    assert not (table["level"] == "missing").loc[table["variable"] == "volume"].any()


def test_categorical_counts_percent_and_fisher_for_small_2x2(small):
    table = describe_cohort(small, group="cohort", categorical=["sex"], variables=["sex"])
    assert _row(table, "sex", "M")[["Overall", "A", "B"]].tolist() == ["5 (41.7)", "4 (66.7)", "1 (16.7)"]
    assert _row(table, "sex", "F")[["Overall", "A", "B"]].tolist() == ["7 (58.3)", "2 (33.3)", "5 (83.3)"]
    head = _row(table, "sex", "n (%)")
    assert head["test used"] == "Fisher's exact"
    assert abs(head["p-value"] - stats.fisher_exact([[2, 5], [4, 1]]).pvalue) < 1e-12
    assert np.isnan(_row(table, "sex", "M")["p-value"])


def test_chi_square_with_yates_for_large_2x2_and_plain_for_3_levels():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"g": rng.integers(0, 2, 300), "x": rng.integers(0, 2, 300), "y": rng.integers(0, 3, 300)})
    table = describe_cohort(df, group="g", categorical=["x", "y"])
    tab_x = pd.crosstab(df.x, df.g).to_numpy()
    tab_y = pd.crosstab(df.y, df.g).to_numpy()
    head_x, head_y = _row(table, "x", "n (%)"), _row(table, "y", "n (%)")
    assert head_x["test used"] == "chi-square (Yates)"
    assert abs(head_x["p-value"] - stats.chi2_contingency(tab_x).pvalue) < 1e-12
    assert head_y["test used"] == "chi-square"
    assert abs(head_y["p-value"] - stats.chi2_contingency(tab_y).pvalue) < 1e-12


def test_three_groups_use_anova_and_kruskal():
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"g": np.repeat(["a", "b", "c"], 30), "x": rng.normal(size=90), "z": rng.exponential(size=90)})
    table = describe_cohort(df, group="g", continuous=["x"], nonnormal=["z"], normality_alpha=0)
    samples = [df.loc[df.g == k] for k in "abc"]
    x, z = _row(table, "x", "mean (SD)"), _row(table, "z", "median (Q1, Q3)")
    assert x["test used"] == "one-way ANOVA"
    assert abs(x["p-value"] - stats.f_oneway(*[s.x for s in samples]).pvalue) < 1e-12
    assert z["test used"] == "Kruskal-Wallis"
    assert abs(z["p-value"] - stats.kruskal(*[s.z for s in samples]).pvalue) < 1e-12


def test_shapiro_wilk_rule_chooses_the_summary():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"g": np.repeat([0, 1], 60), "normal": rng.normal(50, 5, 120), "skewed": rng.lognormal(0, 1, 120)})
    assert max(stats.shapiro(df.loc[df.g == k, "normal"]).pvalue for k in (0, 1)) > 0.05
    assert min(stats.shapiro(df.loc[df.g == k, "skewed"]).pvalue for k in (0, 1)) < 0.05
    table = describe_cohort(df, group="g")
    assert _row(table, "normal", "mean (SD)")["test used"] == "Welch t-test"
    assert _row(table, "skewed", "median (Q1, Q3)")["test used"] == "Mann-Whitney U"
    off = describe_cohort(df, group="g", normality_alpha=0)
    assert _row(off, "skewed", "mean (SD)")["test used"] == "Welch t-test"


def test_type_inference_by_distinct_values_dtype_and_bool():
    df = pd.DataFrame({"eleven": np.arange(22) % 11, "ten": np.arange(22) % 10,
                       "text": ["a", "b"] * 11, "flag": [True, False] * 11})
    table = describe_cohort(df, normality_alpha=0)
    assert list(table.columns) == ["variable", "level", "Overall"]
    assert _row(table, "eleven", "mean (SD)")["Overall"] == f"{df.eleven.mean():.1f} ({df.eleven.std():.1f})"
    assert (table["variable"] == "ten").sum() == 11  # header + 10 levels
    assert _row(table, "text", "a")["Overall"] == "11 (50.0)"
    assert _row(table, "flag", "True")["Overall"] == "11 (50.0)"


def test_untestable_cases_give_nan_with_reason():
    df = pd.DataFrame({"g": ["a", "a", "a", "b"], "x": [1.0, 2.0, 3.0, 4.0], "c": ["u", "u", "u", "u"]})
    table = describe_cohort(df, group="g", continuous=["x"], categorical=["c"], normality_alpha=0)
    x, c = _row(table, "x", "mean (SD)"), _row(table, "c", "n (%)")
    assert np.isnan(x["p-value"]) and "fewer than 2 values" in x["test used"]
    assert x["b"] == "4.0 (\u2014)"
    assert np.isnan(c["p-value"]) and "single level" in c["test used"]


def test_rows_without_group_are_left_out():
    df = pd.DataFrame({"g": ["a", "b", None, "a", "b"], "c": ["u", "v", "u", "v", "u"]})
    table = describe_cohort(df, group="g", categorical=["c"])
    assert _row(table, "n", "")["Overall"] == "4"


def test_bad_input_is_named():
    df = pd.DataFrame({"g": ["Overall", "b"], "c": ["u", "v"]})
    with pytest.raises(InputError, match="clashes"):
        describe_cohort(df, group="g")
    with pytest.raises(InputError, match="not in the table"):
        describe_cohort(df, variables=["nope"])
    with pytest.raises(InputError, match="declared continuous"):
        describe_cohort(df, continuous=["c"])


def test_real_data_rossi_by_financial_aid():
    lifelines = pytest.importorskip("lifelines")
    rossi = lifelines.datasets.load_rossi()
    table = describe_cohort(rossi, group="fin")
    assert _row(table, "n", "")[["Overall", "0", "1"]].tolist() == ["432", "216", "216"]
    groups = [rossi[rossi.fin == k] for k in (0, 1)]
    # age (17..44) and prio (0..18) have > 10 distinct values and are skewed: median (Q1, Q3), Mann-Whitney
    for name in ("age", "prio"):
        row = _row(table, name, "median (Q1, Q3)")
        assert row["test used"] == "Mann-Whitney U"
        assert abs(row["p-value"] - stats.mannwhitneyu(groups[0][name], groups[1][name]).pvalue) < 1e-12
        q1, med, q3 = np.percentile(rossi[name], [25, 50, 75])
        assert row["Overall"] == f"{med:.1f} ({q1:.1f}, {q3:.1f})"
    arrest = _row(table, "arrest", "n (%)")
    assert arrest["test used"] == "chi-square (Yates)"
    expected = stats.chi2_contingency(pd.crosstab(rossi.arrest, rossi.fin).to_numpy()).pvalue
    assert abs(arrest["p-value"] - expected) < 1e-12
    n_arrest = int(groups[1].arrest.sum())
    assert _row(table, "arrest", "1")["1"] == f"{n_arrest} ({100 * n_arrest / 216:.1f})"
    md = table1_to_markdown(table)
    assert md.count("\n") == len(table) + 2 and "| arrest | n (%) |" in md
    html = table1_to_html(table)
    assert html.startswith("<table") and "esoct-table1" in html and "Mann-Whitney U" in html


def test_format_p():
    assert format_p(0.0004) == "<0.001"
    assert format_p(0.0123) == "0.012"
    assert format_p(float("nan")) == ""


def test_categorical_missing_values_are_counted_and_left_out_of_percentages():
    df = pd.DataFrame({"g": ["a", "a", "a", "b", "b", "b"], "c": ["u", None, "v", "u", "u", None]})
    table = describe_cohort(df, group="g", categorical=["c"])
    assert _row(table, "c", "u")[["Overall", "a", "b"]].tolist() == ["3 (75.0)", "1 (50.0)", "2 (100.0)"]
    assert _row(table, "c", "missing")[["Overall", "a", "b"]].tolist() == ["2", "1", "1"]
