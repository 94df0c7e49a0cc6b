"""Classifier training (focal loss, checkpoints, resume), Table 8 metrics and five-fold patient-level CV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from esoct.classify.multitask import (  # noqa: E402
    KrtDataset,
    TrainConfig,
    alpha_weights,
    cross_validate,
    fit_classifier,
    predict_proba,
    t_stage_metrics,
)
from esoct.errors import InputError  # noqa: E402
from esoct.models.multitask import build_multitask_classifier  # noqa: E402


def _model(factory, seed=0, gates=True):
    torch.manual_seed(100)
    seg = factory(residual=True)  # an untrained stand-in for the segmentation encoder
    model, _ = build_multitask_classifier(seg, factory, residual=True, gates=gates, transfer=gates, hidden=16,
                                          seed=seed)
    return model


def test_table8_metrics_match_hand_counts():
    y = np.array(["T1", "T1", "T2", "T2", "T3", "T3", "T4", "T4"])
    proba = np.array([
        [0.7, 0.1, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1],  # T1 right, T1 -> T2
        [0.1, 0.6, 0.2, 0.1], [0.1, 0.7, 0.1, 0.1],  # T2 right twice
        [0.1, 0.1, 0.6, 0.2], [0.1, 0.2, 0.3, 0.4],  # T3 right, T3 -> T4
        [0.1, 0.1, 0.2, 0.6], [0.3, 0.1, 0.1, 0.5],  # T4 right twice
    ])
    m = t_stage_metrics(y, proba, n_resamples=200)
    t = m.table
    # T2: TP 2, FP 1 (a T1), FN 0, TN 5
    assert t.loc["T2", "recall"] == 1.0 and t.loc["T2", "precision"] == pytest.approx(2 / 3)
    assert t.loc["T2", "specificity"] == pytest.approx(5 / 6) and t.loc["T2", "npv"] == 1.0
    assert t.loc["T2", "f1"] == pytest.approx(0.8)
    # T1: TP 1, FP 0, FN 1, TN 6
    assert t.loc["T1", "recall"] == 0.5 and t.loc["T1", "npv"] == pytest.approx(6 / 7)
    assert m.accuracy == pytest.approx(6 / 8)
    assert m.confusion.loc["T1", "T2"] == 1 and m.confusion.loc["T3", "T4"] == 1 and np.trace(m.confusion.values) == 6
    from sklearn.metrics import roc_auc_score

    codes = np.array([int(s[1]) - 1 for s in y])
    assert t.loc["average", "auc"] == pytest.approx(roc_auc_score(codes, proba, multi_class="ovr"))
    assert t.loc["T3", "auc"] == pytest.approx(roc_auc_score(codes == 2, proba[:, 2]))
    assert t.loc["average", "recall"] == pytest.approx(t.loc[["T1", "T2", "T3", "T4"], "recall"].mean())
    assert t.loc["average", "auc_low"] <= t.loc["average", "auc"] <= t.loc["average", "auc_high"]


def test_class_weights_from_plan_or_inverse_frequency():
    codes = np.array([0] * 2 + [1] * 4 + [2] * 8 + [3] * 2)
    w = alpha_weights(codes)
    assert np.allclose(w, np.array([1 / 2, 1 / 4, 1 / 8, 1 / 2]) / (1 / 2 + 1 / 4 + 1 / 8 + 1 / 2))
    assert np.allclose(alpha_weights(codes, {"T1": 0.2, "T2": 0.16, "T3": 0.1, "T4": 0.54}), [0.2, 0.16, 0.1, 0.54])
    with pytest.raises(InputError, match="unknown stages"):
        alpha_weights(codes, {"T5": 1.0})
    with pytest.raises(InputError, match="patient P9"):
        KrtDataset(np.zeros((1, 4, 4, 4)), ["T5"], ["P9"])


def test_synthetic_four_class_task_is_learned(encoder_factory, blob_task):
    images, labels, ids, _ = blob_task(12, seed=0)
    train = KrtDataset(images[:32], labels[:32], ids[:32])
    test = KrtDataset(images[32:], labels[32:], ids[32:])
    model = _model(encoder_factory)
    fit = fit_classifier(model, train, TrainConfig(epochs=12, batch_size=8, lr=3e-3, seed=0, device="cpu"))
    assert fit.history[-1] < fit.history[0]
    proba = predict_proba(model, test)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    m = t_stage_metrics(labels[32:], proba, n_resamples=100)
    assert m.table.loc["average", "auc"] > 0.8


def test_checkpoint_resume_gives_the_uninterrupted_result(encoder_factory, blob_task, tmp_path):
    images, labels, ids, _ = blob_task(3, seed=1)
    data = KrtDataset(images, labels, ids)
    cfg = TrainConfig(epochs=3, batch_size=4, lr=1e-3, seed=5, device="cpu")
    straight = _model(encoder_factory, gates=False)
    fit_classifier(straight, data, cfg)
    resumed = _model(encoder_factory, gates=False)
    fit_classifier(resumed, data, TrainConfig(**{**cfg.__dict__, "epochs": 2}), checkpoint=tmp_path / "c.pt")
    again = _model(encoder_factory, gates=False)
    fit = fit_classifier(again, data, cfg, checkpoint=tmp_path / "c.pt")
    assert fit.resumed_from == 2 and len(fit.history) == 3
    for a, b in zip(straight.state_dict().values(), again.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_cross_validation_predicts_every_patient_exactly_once(encoder_factory, blob_task, tmp_path):
    images, labels, ids, _ = blob_task(5, seed=2)
    data = KrtDataset(images, labels, ids)
    calls = []

    def model_fn(fold, train_ids):
        calls.append((fold, set(train_ids)))
        return _model(encoder_factory, seed=fold)

    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, seed=0, device="cpu")
    cv = cross_validate(data, model_fn, tmp_path / "cv", cfg, n_splits=5, seed=0)
    pred = pd.read_csv(tmp_path / "cv" / "predictions.csv", dtype={"patient_id": str})
    assert sorted(pred["patient_id"]) == sorted(ids) and pred["patient_id"].is_unique
    assert np.allclose(pred[["p_T1", "p_T2", "p_T3", "p_T4"]].sum(axis=1), 1.0, atol=1e-5)
    truth = dict(zip(ids, labels))
    assert all(truth[p] == t for p, t in zip(pred["patient_id"], pred["pT"]))
    for k in range(5):
        fold = json.loads((tmp_path / "cv" / f"fold-{k}" / "metrics.json").read_text())
        assert fold["n_test"] == 4 and fold["n_train"] == 16 and len(fold["loss_history"]) == 2
        test_ids = set(pred.loc[pred["fold"] == k, "patient_id"])
        assert sorted(pred.loc[pred["fold"] == k, "pT"]) == ["T1", "T2", "T3", "T4"]  # stratified
        assert not (test_ids & calls[k][1]) and len(calls[k][1]) == 16  # the model never saw its test patients
    doc = json.loads((tmp_path / "cv" / "metrics.json").read_text())
    assert doc["n_patients"] == 20 and set(doc["table8"]) == {"T1", "T2", "T3", "T4", "average"}
    assert (tmp_path / "cv" / "figures" / "confusion.png").stat().st_size > 0
    assert int(cv.metrics.confusion.values.sum()) == 20
    # a rerun reuses the completed folds (no model is built) and gives the same predictions
    calls.clear()
    again = cross_validate(data, model_fn, tmp_path / "cv", cfg, n_splits=5, seed=0, figures=False)
    assert calls == [] and again.predictions.equals(cv.predictions)
