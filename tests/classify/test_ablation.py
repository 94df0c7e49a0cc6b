"""Ablation grid (Tables 12 and 13): variants, one results table, same folds for every variant."""

from __future__ import annotations

import json

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from esoct.classify.ablation import ablation_grid, format_ablation, run_ablation  # noqa: E402
from esoct.classify.multitask import KrtDataset, TrainConfig  # noqa: E402
from esoct.errors import InputError  # noqa: E402


def test_grid_has_the_four_component_steps_for_each_input():
    grid = ablation_grid()
    assert [(v.step, v.input) for v in grid[:4]] == [("plain", "krt"), ("+residual", "krt"), ("+gates", "krt"),
                                                      ("+transfer", "krt")]
    assert [(v.residual, v.gates, v.transfer) for v in grid[:4]] == [
        (False, False, False), (True, False, False), (True, True, False), (True, True, True)]
    assert len(grid) == 8 and {v.input for v in grid[4:]} == {"whole"}
    assert len({v.name for v in grid}) == 8
    with pytest.raises(InputError, match="unknown ablation steps"):
        ablation_grid(steps=["+dropout"])


def test_run_ablation_writes_one_table_over_the_same_folds(encoder_factory, blob_task, tmp_path):
    images, labels, ids, _ = blob_task(3, size=8, seed=3)
    datasets = {"krt": KrtDataset(images, labels, ids), "whole": KrtDataset(images[:, ::-1].copy(), labels, ids)}
    seg_calls = []

    def seg_fn(fold, train_ids, kind):
        seg_calls.append((fold, kind, len(train_ids)))
        torch.manual_seed(50 + fold)
        return encoder_factory(residual=True)

    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, seed=0, device="cpu")
    variants = ablation_grid(inputs=("krt", "whole"), steps=["plain", "+transfer"])
    res = run_ablation(datasets, seg_fn, encoder_factory, tmp_path, cfg, variants=variants, n_splits=3, hidden=8,
                       figures=False)
    table = pd.read_csv(tmp_path / "ablation.csv")
    assert len(table) == 4 and list(table["input"]) == ["krt"] * 2 + ["whole"] * 2
    assert {"auc", "auc_low", "auc_high", "precision", "recall", "specificity", "npv", "f1"} <= set(table.columns)
    assert table["auc"].between(0, 1).all()
    params = table.set_index(["input", "step"])["trainable_params"]
    assert params["krt", "plain"] < params["krt", "+transfer"] == params["whole", "+transfer"]
    # plain variants need no segmentation encoder; gated ones get one per fold built without the test patients
    assert len(seg_calls) == 2 * 3 and all(n == 8 for _, _, n in seg_calls)
    assert {kind for _, kind, _ in seg_calls} == {"krt", "whole"}
    folds = [json.loads((tmp_path / v.name / "folds.json").read_text())["folds"] for v in variants]
    assert all(f == folds[0] for f in folds)
    assert "avg AUC" in format_ablation(res.table) and (tmp_path / "ablation.txt").is_file()
    with pytest.raises(InputError, match="needs a segmentation encoder"):
        run_ablation(datasets, None, encoder_factory, tmp_path / "x", cfg, variants=variants[1:2], n_splits=3)
