import numpy as np
import pytest

torch = pytest.importorskip("torch")

from esoct.errors import InputError  # noqa: E402
from esoct.tstage.data import make_sequence_set  # noqa: E402
from esoct.tstage.presets import PRESETS, get_preset, lr_at_epoch  # noqa: E402
from esoct.tstage.train import load_model, predict_proba, train_fold  # noqa: E402


def test_paper_schedule_and_presets():
    paper = PRESETS["paper"]
    assert (paper.epochs, paper.batch_size, paper.image_size, paper.width) == (150, 8, 224, 1.0)
    lrs = np.array([lr_at_epoch(paper, e) for e in range(150)])
    assert lrs[0] == 1e-6 and lrs[4] == 1e-6 and lrs[5] == pytest.approx(9e-7)
    assert lrs[105] == pytest.approx(1e-6 * 0.9**21) and lrs[105] >= 1e-7  # still above: reduce once more
    assert lrs[110] == pytest.approx(1e-6 * 0.9**22) and lrs[110] < 1e-7
    assert np.all(lrs[110:] == lrs[110])  # below 1e-7: no further reduction
    fast = PRESETS["fast"]
    assert fast.image_size < 224 and fast.width < 1 and fast.lr > paper.lr and fast.batch_size == 8
    with pytest.raises(InputError, match="unknown preset"):
        get_preset("slow")


def _small(blobs, n=16, seed=0):
    images, labels, _ = blobs(n, seed=seed)
    return make_sequence_set([f"P{i:02d}" for i in range(n)], images, labels)


def test_resume_after_interruption_gives_the_same_result(blobs, tmp_path):
    data = _small(blobs)
    train, val = data.subset(data.patient_ids[:12]), data.subset(data.patient_ids[12:])
    preset = get_preset("fast", width=0.125, epochs=3, dropout=0.2)
    straight = train_fold("resolstm", train, val, preset, tmp_path / "a", seed=1, progress=False)
    stopped = train_fold("resolstm", train, val, preset, tmp_path / "b", seed=1, progress=False, stop_after=1)
    assert stopped.model is None and not stopped.completed and len(stopped.history) == 1
    resumed = train_fold("resolstm", train, val, preset, tmp_path / "b", seed=1, progress=False)
    assert resumed.completed and resumed.best_epoch == straight.best_epoch
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in straight.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history]
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    last_a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    last_b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    np.testing.assert_array_equal(predict_proba(straight.model, val), predict_proba(resumed.model, val))
    assert "resumed after epoch 1" in (tmp_path / "b" / "train.log").read_text()
    # a finished fold is not retrained: same model straight from disk
    again = train_fold("resolstm", train, val, preset, tmp_path / "a", seed=1, progress=False)
    assert again.completed and len(again.history) == 3
    with pytest.raises(InputError, match="belongs to another run"):  # never resume someone else's run
        train_fold("resolstm", train, val, preset, tmp_path / "a", seed=2, progress=False)


def test_corrupt_checkpoint_and_model_file(blobs, tmp_path):
    data = _small(blobs, n=8)
    preset = get_preset("fast", width=0.125, epochs=1)
    (tmp_path / "fold").mkdir()
    (tmp_path / "fold" / "last.pt").write_bytes(b"\x00 truncated checkpoint")
    with pytest.raises(InputError, match="last.pt.*corrupt or incompatible checkpoint"):
        train_fold("resnet", data, data, preset, tmp_path / "fold", progress=False)
    (tmp_path / "best.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="corrupt or incompatible model file"):
        load_model(tmp_path / "best.pt")


def test_training_set_without_a_class_is_refused(blobs, tmp_path):
    data = _small(blobs, n=8)
    only0 = data.subset([p for p, y in zip(data.patient_ids, data.labels) if y == 0])
    with pytest.raises(InputError, match="no patient of class T3-4"):
        train_fold("resolstm", only0, data, get_preset("fast", width=0.125, epochs=1), tmp_path, progress=False)


def test_fast_preset_learns_the_blob_task(blob_model):
    from sklearn.metrics import roc_auc_score

    result, test = blob_model["result"], blob_model["test"]
    proba = predict_proba(result.model, test)
    auc = roc_auc_score(test.labels, proba[:, 1])
    assert auc > 0.8, (auc, [round(h["val_accuracy"], 3) for h in result.history])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
