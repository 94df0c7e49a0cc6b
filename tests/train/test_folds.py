import json

import numpy as np
import pytest

from esoct.errors import InputError
from esoct.train.folds import fold_split, load_or_make_folds, patient_folds


def _cohort(n=40):
    ids = [f"P{i:03d}" for i in range(n)]
    labels = ["T1-2" if i % 3 else "T3-4" for i in range(n)]
    return ids, labels


def test_each_patient_tested_once_and_stratified():
    ids, labels = _cohort()
    folds = patient_folds(ids, labels, 5, seed=1)
    assert sorted(folds["fold"].value_counts().tolist()) == [8] * 5
    for k in range(5):
        train, test = fold_split(folds, k)
        assert not set(train) & set(test) and len(train) + len(test) == 40
        share = np.mean([labels[ids.index(p)] == "T3-4" for p in test])
        assert abs(share - 14 / 40) <= 0.1
    assert patient_folds(ids, labels, 5, seed=1).equals(folds)
    assert not patient_folds(ids, labels, 5, seed=2)["fold"].equals(folds["fold"])


def test_saved_folds_are_reused_and_mismatch_refused(tmp_path):
    ids, labels = _cohort()
    path = tmp_path / "folds.json"
    first = load_or_make_folds(path, ids, labels, 5, seed=3)
    doc = json.loads(path.read_text())
    doc["folds"]["P000"] = (doc["folds"]["P000"] + 1) % 5  # an edited file is what a rerun uses
    path.write_text(json.dumps(doc))
    again = load_or_make_folds(path, ids, labels, 5, seed=99)
    assert again.loc[0, "fold"] == (first.loc[0, "fold"] + 1) % 5
    with pytest.raises(InputError, match="saved folds cover 40 patients"):
        load_or_make_folds(path, ids[:-1], labels[:-1], 5)
    labels2 = list(labels)
    labels2[0] = "T3-4" if labels[0] == "T1-2" else "T1-2"
    with pytest.raises(InputError, match="labels changed"):
        load_or_make_folds(path, ids, labels2, 5)


def test_bad_input():
    ids, labels = _cohort(12)
    with pytest.raises(InputError, match="fewer than the 5 folds"):
        patient_folds(ids, ["a"] * 11 + ["b"], 5)
    with pytest.raises(InputError, match="repeated"):
        patient_folds(ids[:-1] + ids[:1], labels, 5)
