"""Cox nomogram: the points table reproduces the model, the figure is written as a readable PNG."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lifelines")
pytest.importorskip("sksurv")

from lifelines.datasets import load_rossi  # noqa: E402
from sksurv.util import Surv  # noqa: E402

from esoct.errors import InputError  # noqa: E402
from esoct.report.nomogram import nomogram_figure, nomogram_points  # noqa: E402
from esoct.survival.cox import CoxPH  # noqa: E402


@pytest.fixture(scope="module")
def rossi_cox():
    df = load_rossi()
    X = df[["fin", "age", "prio", "wexp"]]
    return CoxPH().fit(X, Surv.from_arrays(df["arrest"].astype(bool), df["week"])), X


def test_points_reproduce_the_model(rossi_cox):
    cox, X = rossi_cox
    pts = nomogram_points(cox, X, time_points=(12, 36))
    np.testing.assert_allclose(pts["linear_predictor"], cox.predict(X), atol=1e-10)
    np.testing.assert_allclose(pts["survival_36"], cox.predict_survival_function(X, [36.0])[:, 0], atol=1e-12)
    point_cols = [c for c in pts.columns if c.startswith("points[")]
    assert pts[point_cols].min().min() >= -1e-9
    assert pts[point_cols].max().max() == pytest.approx(100.0)  # the widest covariate spans 0-100
    np.testing.assert_allclose(pts[point_cols].sum(axis=1), pts["total_points"])


def test_figure_is_written(rossi_cox, tmp_path):
    import matplotlib.image as mpimg

    cox, X = rossi_cox
    path = nomogram_figure(cox, X, time_points=(12, 36), path=tmp_path / "nomo.png", time_unit="week", svg=True)
    assert path == tmp_path / "nomo.png" and path.stat().st_size > 10_000
    assert path.with_suffix(".svg").exists()
    img = mpimg.imread(path)
    assert img.shape[0] > 500 and img.shape[1] > 1000
    with pytest.raises(InputError, match="before the first event"):
        nomogram_figure(cox, X, time_points=(0.5,), path=tmp_path / "bad.png")
