"""Delta-radiomics: hand-computed relative changes and every NaN reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from esoct.errors import InputError
from esoct.features import delta as D
from esoct.features.delta import delta_features


def _long():
    return pd.DataFrame(
        {
            "patient_id": ["p1", "p1", "p2", "p2", "p3", "p4", "p4"],
            "timepoint": ["pre", "post", "pre", "post", "pre", "post", "pre"],
            "center": ["A"] * 7,
            "original_shape_MeshVolume": [200.0, 150.0, 80.0, 100.0, 50.0, 40.0, 0.0],
            "original_firstorder_Mean": [40.0, 10.0, np.nan, 5.0, 30.0, 20.0, 25.0],
            "original_firstorder_Entropy": [2.0, 3.0, 4.0, np.inf, 1.0, 1.5, -np.inf],
        }
    )


def test_hand_computed_deltas_and_reasons():
    res = delta_features(_long())
    t = res.table.set_index("patient_id")
    assert list(res.table["patient_id"]) == ["p1", "p2", "p3", "p4"]
    assert list(res.table.columns) == [
        "patient_id", "delta_original_shape_MeshVolume", "delta_original_firstorder_Mean",
        "delta_original_firstorder_Entropy",
    ]
    assert res.skipped_columns == ["center"]
    assert t.loc["p1", "delta_original_shape_MeshVolume"] == pytest.approx(-0.25)
    assert t.loc["p1", "delta_original_firstorder_Mean"] == pytest.approx(-0.75)
    assert t.loc["p1", "delta_original_firstorder_Entropy"] == pytest.approx(0.5)
    assert t.loc["p2", "delta_original_shape_MeshVolume"] == pytest.approx(0.25)
    assert t.loc["p4", "delta_original_firstorder_Mean"] == pytest.approx(-0.2)
    assert not np.isinf(res.table.iloc[:, 1:].to_numpy()).any()
    assert int(res.table.iloc[:, 1:].isna().sum().sum()) == len(res.nan_report) == 7
    report = {(r.patient_id, r.feature): r.reason for r in res.nan_report.itertuples()}
    assert report == {
        ("p2", "original_firstorder_Mean"): D.PRE_NAN,
        ("p2", "original_firstorder_Entropy"): D.POST_INF,
        ("p3", "original_shape_MeshVolume"): D.NO_POST,
        ("p3", "original_firstorder_Mean"): D.NO_POST,
        ("p3", "original_firstorder_Entropy"): D.NO_POST,
        ("p4", "original_shape_MeshVolume"): D.PRE_ZERO,
        ("p4", "original_firstorder_Entropy"): D.PRE_INF,
    }
    assert list(res.nan_report.columns) == ["patient_id", "feature", "reason"]


def test_missing_pre_overflow_and_other_timepoints_ignored():
    long = pd.DataFrame(
        {
            "patient_id": ["a", "a", "a", "b"],
            "timepoint": ["pre", "mid", "post", "post"],
            "f": [1e-320, 5.0, 1e10, 3.0],
        }
    )
    res = delta_features(long)
    assert res.table["delta_f"].isna().all()
    assert list(res.nan_report["reason"]) == [D.OVERFLOW, D.NO_PRE]


def test_columns_and_custom_timepoints():
    long = pd.DataFrame({"patient_id": [7, 7], "timepoint": ["t0", "t1"], "f": [4.0, 5.0], "g": [2.0, 1.0]})
    res = delta_features(long, columns=["g"], pre="t0", post="t1", prefix="d_")
    assert list(res.table.columns) == ["patient_id", "d_g"]
    assert res.table.loc[0, "patient_id"] == "7"
    assert res.table.loc[0, "d_g"] == pytest.approx(-0.5)
    assert res.nan_report.empty


def test_reads_parquet_file(tmp_path):
    path = tmp_path / "radiomics.parquet"
    _long().to_parquet(path, index=False)
    res = delta_features(path)
    assert res.table.set_index("patient_id").loc["p1", "delta_original_shape_MeshVolume"] == pytest.approx(-0.25)


def test_duplicate_rows_raise_naming_patient():
    long = _long()
    long.loc[len(long)] = ["p1", "pre", "A", 1.0, 1.0, 1.0]
    with pytest.raises(InputError, match=r"p1 \(pre\)") as err:
        delta_features(long)
    assert err.value.patient == "p1"


def test_missing_columns_raise(tmp_path):
    with pytest.raises(InputError, match="timepoint"):
        delta_features(_long().drop(columns="timepoint"))
    with pytest.raises(InputError, match="not in the table: nope"):
        delta_features(_long(), columns=["nope"])
    with pytest.raises(InputError, match="not numeric: center"):
        delta_features(_long(), columns=["center"])
    with pytest.raises(InputError, match="not found") as err:
        delta_features(tmp_path / "missing.parquet")
    assert err.value.path.endswith("missing.parquet")
