import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from esoct.tstage.cv import cross_validate, fold_metrics, predict  # noqa: E402
from esoct.tstage.data import make_sequence_set  # noqa: E402
from esoct.tstage.presets import get_preset  # noqa: E402

TINY = dict(width=0.125, epochs=1, image_size=32)


def _cohort(blobs, n=15):
    images, labels, _ = blobs(n, seed=11)
    images.append(images[0][:1])  # a patient with one tumour slice
    labels.append(1)
    return make_sequence_set([f"P{i:02d}" for i in range(n + 1)], images, labels)


def test_fold_metrics_values():
    y = np.array([0, 0, 1, 1, 1])
    proba = np.c_[1 - np.array([0.2, 0.6, 0.7, 0.9, 0.4]), [0.2, 0.6, 0.7, 0.9, 0.4]]
    m = fold_metrics(y, proba)
    assert m["accuracy"] == pytest.approx(3 / 5) and m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2) and m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert m["auc"] == pytest.approx(5 / 6)


def test_five_fold_cv_both_models_outputs_and_rerun(blobs, tmp_path):
    seqs = _cohort(blobs)
    assert "patient P15" in seqs.failures["P15"]
    preset = get_preset("fast", **TINY)
    res = cross_validate(seqs, tmp_path, preset=preset, seed=0, progress=False)
    out = tmp_path / "results" / "tstage"
    assert len(res.per_fold) == 10 and set(res.per_fold["model"]) == {"resolstm", "resnet"}
    table = res.table("resolstm")
    assert table["Fold"].tolist() == ["1", "2", "3", "4", "5", "Average"]
    assert table.iloc[-1]["Accuracy"] == pytest.approx(table.iloc[:5]["Accuracy"].mean())
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 30 and set(preds.groupby("model")["patient_id"].nunique()) == {15}
    assert np.allclose(preds["p_T1-2"] + preds["p_T3-4"], 1)
    assert "P15" in res.failures and "P15" in (out / "failures.csv").read_text()
    ci = res.pooled["resolstm"]["auc"]
    assert ci.low <= ci.estimate <= ci.high and res.delong is not None and 0 <= res.delong.p_value <= 1
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["delong"]["p_value"] == pytest.approx(res.delong.p_value) and len(doc["tables"]["resnet"]) == 6
    for name in ("roc_resolstm", "confusion_resnet", "tsne_resolstm", "gradcam_resolstm"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 5_000
    assert "ResoLSTM-Depth" in res.summary() and "DeLong test" in res.summary()
    # models per fold are loadable for inference
    fold1 = preds[(preds["model"] == "resolstm") & (preds["fold"] == 1)]
    new = predict(tmp_path, seqs.subset(fold1["patient_id"].tolist()), kind="resolstm", fold=1)
    np.testing.assert_allclose(new["p_T3-4"], fold1["p_T3-4"], rtol=1e-5)
    assert len(predict(tmp_path, seqs, kind="resnet")) == 15
    # rerun: same folds, completed folds reused, same numbers
    folds = json.loads((out / "folds.json").read_text())
    again = cross_validate(seqs, tmp_path, preset=preset, seed=0, progress=False, figures=False)
    assert json.loads((out / "folds.json").read_text()) == folds
    pd.testing.assert_frame_equal(again.per_fold, res.per_fold)


def test_fold_without_a_class_is_recorded_and_others_kept(blobs, tmp_path):
    images, labels, _ = blobs(12, seed=5)
    seqs = make_sequence_set([f"P{i:02d}" for i in range(12)], images, labels)
    # fold 0 holds every class-1 patient: its training set has class 0 only
    fold = np.zeros(12, int)
    fold[seqs.labels == 0] = [1, 2] * 3
    folds = pd.DataFrame({"patient_id": seqs.patient_ids, "fold": fold})
    res = cross_validate(seqs, tmp_path, preset=get_preset("fast", **TINY), models=("resolstm",), folds=folds,
                         progress=False, figures=False)
    assert "no patient of class T3-4" in res.failures["resolstm fold 1"]
    assert res.per_fold["fold"].tolist() == [2, 3]  # the other folds were trained and kept
    assert res.per_fold["auc"].isna().all()  # their test folds hold one class only: AUC undefined, not invented
    assert (tmp_path / "models" / "tstage" / "resolstm" / "fold-2" / "best.pt").is_file()
