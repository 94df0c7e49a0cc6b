"""Figures: files written, and the numbers drawn equal scikit-learn's and lifelines' on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from esoct.errors import InputError
from esoct.report.figures import (
    PlotResult,
    calibration_bins,
    plot_calibration,
    plot_confusion,
    plot_decision_curve,
    plot_importance,
    plot_km,
    plot_roc_folds,
    plot_survival_calibration,
    plot_td_cindex,
    roc_on_grid,
)
from esoct.report.style import PALETTE, esoct_style, save_figure

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _assert_png(path, min_px: int = 400, max_px: int = 3000) -> None:
    """A PNG of a sensible size exists at ``path``."""
    assert path.suffix == ".png" and path.stat().st_size > 5_000
    with Image.open(path) as image:
        width, height = image.size
    assert min_px <= width <= max_px and min_px <= height <= max_px, (width, height)


@pytest.fixture(scope="module")
def folds():
    rng = np.random.default_rng(0)
    out = []
    for _ in range(5):
        y = rng.integers(0, 2, 80)
        out.append((y, y * 1.2 + rng.normal(size=80)))
    return out


@pytest.fixture(scope="module")
def gbsg2():
    datasets = pytest.importorskip("sksurv.datasets")
    x, y = datasets.load_gbsg2()
    return y["time"] / 30.44, y["cens"].astype(int), x["horTh"].astype(str).to_numpy()


def test_roc_folds_mean_auc_band_and_files(folds, tmp_path):
    res = plot_roc_folds(folds, path=tmp_path / "roc", svg=True)
    assert isinstance(res, PlotResult)
    _, ax = res
    aucs = [sklearn_metrics.roc_auc_score(y, s) for y, s in folds]
    assert res.data["aucs"] == aucs
    assert res.data["auc_mean"] == np.mean(aucs)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"Mean ROC (AUC = {np.mean(aucs):.3f} \u00b1 {np.std(aucs, ddof=1):.3f})" in legend
    tpr = res.data["mean_tpr"]
    assert np.all(np.diff(tpr) >= 0) and tpr[0] == 0 and tpr[-1] == 1
    assert np.all(res.data["band_low"] <= tpr) and np.all(tpr <= res.data["band_high"])
    assert [p.name for p in res.paths] == ["roc.png", "roc.svg"]
    _assert_png(res.paths[0])
    assert res.paths[1].read_text().lstrip().startswith("<?xml")


def test_roc_on_grid_takes_the_top_of_vertical_steps():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    tpr, auc = roc_on_grid(y, s, np.array([0.0, 0.25, 0.5, 1.0]))
    # points (0, 0) (0, .5) (.5, .5) (.5, 1) (1, 1): at FPR 0 the curve has risen to 0.5
    assert tpr.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert auc == 0.75


def test_roc_on_fine_grid_integrates_to_sklearn_auc(folds):
    grid = np.linspace(0, 1, 20001)
    for y, s in folds:
        tpr, auc = roc_on_grid(y, s, grid)
        assert np.all(np.diff(tpr) >= 0)
        assert abs(np.trapezoid(tpr, grid) - auc) < 1e-3


def test_roc_rejects_single_class_and_nan(folds):
    with pytest.raises(InputError, match="fold 2 has only class 1"):
        plot_roc_folds([folds[0], (np.ones(5), np.arange(5.0))])
    with pytest.raises(InputError, match="NaN"):
        plot_roc_folds([(np.array([0, 1]), np.array([0.2, np.nan]))])


def test_km_at_risk_equals_lifelines_and_logrank(gbsg2, tmp_path):
    lifelines = pytest.importorskip("lifelines")
    from lifelines.statistics import logrank_test

    time, event, groups = gbsg2
    res = plot_km(time, event, groups, path=tmp_path / "km.png")
    at_risk = res.data["at_risk"]
    ticks = res.data["at_risk_times"]
    assert ticks[0] == 0 and ticks == list(res.ax.get_xticks())
    for g in ("no", "yes"):
        table = lifelines.KaplanMeierFitter().fit(time[groups == g], event[groups == g]).event_table
        for t in ticks:
            later = table.loc[table.index >= t, "at_risk"]
            expected = int(later.iloc[0]) if len(later) else 0
            assert at_risk.loc[g, t] == expected, (g, t)
    drawn = sorted(int(t.get_text()) for t in res.data["table_ax"].texts)
    assert drawn == sorted(at_risk.to_numpy().ravel().tolist())
    lr = logrank_test(time[groups == "no"], time[groups == "yes"], event[groups == "no"], event[groups == "yes"])
    assert abs(res.data["logrank_p"] - lr.p_value) < 1e-12
    assert any("Log-rank p" in t.get_text() for t in res.ax.texts)
    _assert_png(res.paths[0])


def test_km_survival_equals_lifelines_and_bad_input(gbsg2):
    lifelines = pytest.importorskip("lifelines")
    time, event, _ = gbsg2
    res = plot_km(time, event, at_risk_times=[0, 24, 48])
    expected = lifelines.KaplanMeierFitter().fit(time, event).survival_function_.iloc[:, 0]
    np.testing.assert_array_equal(res.data["survival"]["All"].to_numpy(), expected.to_numpy())
    assert res.data["at_risk"].columns.tolist() == [0.0, 24.0, 48.0] and np.isnan(res.data["logrank_p"])
    with pytest.raises(InputError, match="negative"):
        plot_km([1.0, -2.0], [1, 0])
    with pytest.raises(InputError, match="0/1"):
        plot_km([1.0, 2.0], [1, 2])


def test_calibration_bins_equal_sklearn_and_file(tmp_path):
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(4)
    p = rng.uniform(size=400)
    y = rng.binomial(1, p)
    for strategy in ("uniform", "quantile"):
        prob_true, prob_pred = calibration_curve(y, p, n_bins=8, strategy=strategy)
        bins = calibration_bins(y, p, 8, strategy)
        np.testing.assert_allclose(bins.fraction_positive, prob_true, atol=1e-12)
        np.testing.assert_allclose(bins.mean_predicted, prob_pred, atol=1e-12)
        assert bins["count"].sum() == 400
        assert np.all((bins.ci_low <= bins.fraction_positive) & (bins.fraction_positive <= bins.ci_high))
    res = plot_calibration(y, {"A": p, "B": np.clip(p * 0.8 + 0.1, 0, 1)}, path=tmp_path / "cal.png")
    assert res.data["brier"]["A"] == pytest.approx(sklearn_metrics.brier_score_loss(y, p), abs=1e-15)
    _assert_png(res.paths[0])


def test_survival_calibration_overlay(tmp_path):
    res = plot_survival_calibration([0.3, 0.5, 0.7], [0.25, 0.55, 0.72], [0.1, 0.4, 0.6], [0.4, 0.7, 0.85], t=36,
                                    label="Training")
    res2 = plot_survival_calibration([0.35, 0.6], [0.3, 0.5], t=36, label="Testing", ax=res.ax, path=tmp_path / "sc.png")
    assert res2.fig is res.fig and len(res.ax.get_legend().get_texts()) == 3
    _assert_png(res2.paths[0])
    with pytest.raises(InputError, match="contain"):
        plot_survival_calibration([0.3], [0.5], [0.1], [0.4])


def test_decision_curve_treat_all_at_zero_is_prevalence(tmp_path):
    rng = np.random.default_rng(5)
    y = rng.binomial(1, 0.3, 500)
    proba = np.clip(0.3 + 0.3 * (y - 0.3) + rng.normal(0, 0.15, 500), 0, 1)
    th = np.linspace(0, 0.95, 96)
    prevalence = y.mean()
    nb_all = prevalence - (1 - prevalence) * th / (1 - th)
    nb = np.array([((proba >= t) & (y == 1)).mean() - ((proba >= t) & (y == 0)).mean() * t / (1 - t) for t in th])
    res = plot_decision_curve(th, {"Entropy": nb}, nb_all, path=tmp_path / "dca.png", svg=True)
    treat_all = res.data["lines"]["Treat all"]
    assert treat_all.get_xdata()[0] == 0 and treat_all.get_ydata()[0] == prevalence
    assert np.all(res.data["lines"]["Treat none"].get_ydata() == 0)
    assert res.ax.get_xlim() == (0.1, 0.7)
    assert len(res.paths) == 2
    _assert_png(res.paths[0])


def test_td_cindex_overlay_and_importance_and_confusion(tmp_path):
    times = np.linspace(6, 60, 20)
    res = plot_td_cindex(times, 0.7 + 0 * times, 0.65 + 0 * times, 0.75 + 0 * times, label="Fusion")
    plot_td_cindex(times, 0.6 + 0 * times, label="Clinical", ax=res.ax)
    assert [t.get_text() for t in res.ax.get_legend().get_texts()] == ["Fusion", "Clinical"]
    save_figure(res.fig, tmp_path / "tdc.png")
    _assert_png(tmp_path / "tdc.png")

    imp = plot_importance(["a", "b", "c", "d"], [0.1, 0.4, 0.2, 0.05], top=3, path=tmp_path / "imp.png")
    assert imp.data["order"]["name"].tolist() == ["b", "c", "a"]
    assert [t.get_text() for t in imp.ax.get_yticklabels()] == ["b", "c", "a"]
    _assert_png(imp.paths[0], min_px=300)

    cm = np.array([[5, 1], [0, 0]])
    conf = plot_confusion(cm, ["LNM-", "LNM+"], path=tmp_path / "cm.png")
    np.testing.assert_array_equal(conf.data["row_fraction"][0], [5 / 6, 1 / 6])
    assert np.isnan(conf.data["row_fraction"][1]).all()
    assert {t.get_text() for t in conf.ax.texts} == {"5\n83 %", "1\n17 %", "0"}
    _assert_png(conf.paths[0])
    with pytest.raises(InputError, match="square"):
        plot_confusion(np.ones((2, 3)), ["a", "b"])


def test_style_context_restores_and_sets_palette():
    import matplotlib as mpl

    before = mpl.rcParams["axes.prop_cycle"]
    with esoct_style():
        assert mpl.rcParams["axes.prop_cycle"].by_key()["color"] == list(PALETTE)
        assert mpl.rcParams["savefig.dpi"] == 200
    assert mpl.rcParams["axes.prop_cycle"] == before
