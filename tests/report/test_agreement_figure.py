"""Volume agreement figures: files written, and what is drawn equals the statistics of esoct.evaluate.segmentation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from esoct.errors import InputError
from esoct.evaluate.segmentation import volume_agreement
from esoct.report.agreement_figure import plot_bland_altman, plot_volume_agreement, plot_volume_correlation
from esoct.report.figures import PlotResult


@pytest.fixture(scope="module")
def volumes():
    rng = np.random.default_rng(11)
    ref = rng.uniform(5.0, 60.0, 20)
    return ref, ref * 1.04 + rng.normal(0.0, 2.5, 20)


def _assert_png(path, min_px: int = 400) -> None:
    assert path.suffix == ".png" and path.stat().st_size > 5_000
    with Image.open(path) as image:
        assert min(image.size) >= min_px


def test_correlation_plot(volumes, tmp_path):
    ref, pred = volumes
    res = plot_volume_correlation(ref, pred, title="tumour", path=tmp_path / "corr", svg=True)
    assert isinstance(res, PlotResult)
    assert [p.name for p in res.paths] == ["corr.png", "corr.svg"]
    _assert_png(res.paths[0])
    r, p = stats.pearsonr(ref, pred)
    assert res.data["stats"].pearson_r == pytest.approx(r) and res.data["stats"].p_value == pytest.approx(p)
    np.testing.assert_allclose(res.ax.collections[0].get_offsets(), np.column_stack([ref, pred]))
    texts = " ".join(t.get_text() for t in res.ax.texts)
    assert f"Pearson r = {r:.3f}" in texts and "p < 0.001" in texts
    slope, intercept = np.polyfit(ref, pred, 1)
    assert f"y = {slope:.3f} x" in texts
    fit = [line for line in res.ax.lines if line.get_label() == "Least-squares fit"][0]
    x, y = fit.get_data()
    np.testing.assert_allclose(y, slope * np.asarray(x) + intercept)


def test_bland_altman_plot(volumes, tmp_path):
    ref, pred = volumes
    res = plot_bland_altman(ref, pred, title="tumour", path=tmp_path / "ba.png")
    _assert_png(res.paths[0])
    a = volume_agreement(ref, pred)
    assert res.data["stats"] == a
    diff = pred - ref
    assert a.mean_difference_ml == pytest.approx(diff.mean())
    assert (a.loa_low_ml, a.loa_high_ml) == pytest.approx((diff.mean() - 1.96 * diff.std(ddof=1), diff.mean() + 1.96 * diff.std(ddof=1)))
    np.testing.assert_allclose(res.ax.collections[0].get_offsets(), np.column_stack([(ref + pred) / 2, diff]))
    horizontal = sorted({round(float(line.get_ydata()[0]), 9) for line in res.ax.lines})
    assert horizontal == sorted(round(v, 9) for v in (a.loa_low_ml, a.loa_high_ml, 0.0, a.mean_difference_ml))
    low, high = res.ax.get_ylim()
    assert low < min(a.loa_low_ml, diff.min()) and high > max(a.loa_high_ml, diff.max())


def test_figure_11_grid(volumes, tmp_path):
    ref, pred = volumes
    res = plot_volume_agreement({"tumour": (ref, pred), "aorta": (3 * ref, 3 * pred + 1)}, path=tmp_path / "fig11.png")
    _assert_png(res.paths[0])
    axes = res.ax
    assert axes.shape == (2, 2)
    assert [ax.get_title() for ax in axes.ravel()] == ["A1  tumour", "A2  aorta", "B1  tumour", "B2  aorta"]
    assert res.data["stats"]["aorta"].mean_difference_ml == pytest.approx(np.mean(3 * pred + 1 - 3 * ref))


def test_bad_input():
    with pytest.raises(InputError, match="at least 3"):
        plot_bland_altman([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(InputError, match="expected 3"):
        plot_volume_correlation([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(InputError, match="pair"):
        plot_volume_agreement({"tumour": [1.0, 2.0, 3.0]})
    with pytest.raises(InputError, match="no class"):
        plot_volume_agreement({})
