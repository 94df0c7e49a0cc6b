"""The paper's six presets: feature groups, stage coding, CV tuning on the training cohort, Table-2 evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sksurv")

from sksurv.util import Surv  # noqa: E402

from esoct.errors import InputError  # noqa: E402
from esoct.survival.presets import (  # noqa: E402
    FEATURE_GROUPS,
    PRESET_NAMES,
    PresetFeatures,
    evaluate_presets,
    fit_preset,
    stage_to_ordinal,
)


def _centre(n: int, rng: np.random.Generator, centre: str, shift: float = 0.0):
    """A cohort whose survival depends on dl_pre_0, dl_post_0 and delta_0 only (clinical columns are noise)."""
    df = pd.DataFrame(
        {
            "patient_id": [f"{centre}{i:03d}" for i in range(n)],
            "age": rng.normal(63, 9, n),
            "stage": rng.choice(["II", "III", "IVA", "IVB"], n),
            "volume_reduction_rate": rng.uniform(0, 0.8, n),
        }
    )
    for prefix in ("delta_", "dl_pre_", "dl_post_"):
        for j in range(4):
            df[f"{prefix}{j}"] = rng.normal(shift, 1.0, n)
    lp = 0.9 * df["dl_pre_0"] + 0.9 * df["dl_post_0"] + 0.7 * df["delta_0"]
    t = rng.exponential(30.0 * np.exp(-lp))
    c = rng.uniform(12.0, 80.0, n)
    return df, Surv.from_arrays(t <= c, np.minimum(t, c))


@pytest.fixture(scope="module")
def two_centres():
    rng = np.random.default_rng(7)
    train, y_train = _centre(200, rng, "A")
    test, y_test = _centre(100, rng, "B", shift=0.2)
    return train, y_train, test, y_test


def test_feature_groups_resolve(two_centres):
    train = two_centres[0]
    assert PRESET_NAMES == ("Clinical", "Delta_radiomics", "DL_Pre", "DL_Post", "DL_Longitudinal", "Fusion")
    cols = {name: g.resolve(train.columns) for name, g in FEATURE_GROUPS.items()}
    assert cols["Clinical"] == ["age", "stage", "volume_reduction_rate"]
    assert cols["DL_Pre"] == [f"dl_pre_{j}" for j in range(4)]
    assert cols["DL_Longitudinal"] == cols["DL_Pre"] + cols["DL_Post"]
    assert set(cols["Fusion"]) == set(cols["Clinical"] + cols["Delta_radiomics"] + cols["DL_Longitudinal"])
    assert "patient_id" not in cols["Fusion"]
    with pytest.raises(InputError, match="lacks the column"):
        FEATURE_GROUPS["Clinical"].resolve(["age", "stage"])
    with pytest.raises(InputError, match="found no column"):
        PresetFeatures("DL_Pre").fit(train[["age", "stage"]])


def test_stage_to_ordinal():
    got = stage_to_ordinal(["II", "III", "IVA", "IVB", "stage iiib", "Stage I", "0", 3, "4"])
    np.testing.assert_allclose(got, [2.0, 3.0, 4.1, 4.2, 3.2, 1.0, 0.0, 3.0, 4.0])
    with pytest.raises(InputError, match="not an AJCC stage"):
        stage_to_ordinal(["II", "V"])
    with pytest.raises(InputError, match="missing"):
        stage_to_ordinal(pd.Series(["II", None], index=["p1", "p2"]))
    X = pd.DataFrame({"age": [60.0, 70.0], "stage": ["III", "IVA"], "volume_reduction_rate": [0.1, 0.5]})
    out = PresetFeatures("Clinical").fit_transform(X)
    assert out["stage"].tolist() == [3.0, 4.1]


def test_fit_preset_tunes_on_training_only(two_centres):
    train, y_train, _, _ = two_centres
    fit = fit_preset("DL_Post", train, y_train, cv=3, n_estimators=20)
    assert fit.columns == [f"dl_post_{j}" for j in range(4)]
    assert set(fit.best_params) == {"min_samples_split"}
    assert fit.best_params["min_samples_split"] in (20, 30)
    assert len(fit.cv_results) == 2 and 0.5 < fit.cv_c_index < 1
    assert fit.model.named_steps["rsf"].get_params()["n_estimators"] == 20
    assert fit.predict(train).shape == (len(train),)
    custom = fit_preset("DL_Post", train, y_train, cv=3, n_estimators=10, param_grid={"min_samples_leaf": [3]})
    assert custom.best_params == {"min_samples_leaf": 3}
    dup = pd.concat([train, train.iloc[:1]])
    with pytest.raises(InputError, match="more than once"):
        fit_preset("DL_Post", dup, np.concatenate([y_train, y_train[:1]]), cv=3, n_estimators=5)


def test_fusion_beats_noise_on_external_centre(two_centres):
    train, y_train, test, y_test = two_centres
    table = evaluate_presets(
        train, y_train, test, y_test, names=("Clinical", "Fusion"), cv=3, n_estimators=40, n_bootstrap=60
    )
    assert list(table.columns[:4]) == ["cohort", "model", "n", "events"]
    assert table.shape[0] == 4
    t = table.set_index(["cohort", "model"])
    fusion, clinical = t.loc[("test", "Fusion")], t.loc[("test", "Clinical")]
    assert fusion["c_index"] > clinical["c_index"] + 0.1
    assert fusion["c_index"] > 0.65 and abs(clinical["c_index"] - 0.5) < 0.1
    assert fusion["ibs"] < clinical["ibs"]
    assert fusion["c_index_lower"] < fusion["c_index"] < fusion["c_index_upper"]
    assert fusion["ibs_lower"] < fusion["ibs"] < fusion["ibs_upper"]
    assert fusion["c_index_p"] < 0.05 and np.isnan(clinical["c_index_p"])
    assert 0 < fusion["c_index_p"] <= 1 and fusion["n_bootstrap_valid"] > 50
    assert np.isnan(fusion["cv_c_index"]) and t.loc[("train", "Fusion"), "cv_c_index"] > 0.6
    with pytest.raises(InputError, match="both cohorts"):
        evaluate_presets(train, y_train, train, y_train, names=("Clinical",), n_estimators=5, n_bootstrap=0)
