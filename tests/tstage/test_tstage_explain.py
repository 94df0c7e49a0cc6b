import numpy as np
import pytest

torch = pytest.importorskip("torch")

from esoct.tstage.explain import TARGET_LAYER, grad_cam, plot_tsne, sequence_features, tsne_embedding  # noqa: E402


def test_grad_cam_cpu_path_shape_and_bright_target(blob_model):
    model, test, masks = blob_model["result"].model, blob_model["test"], blob_model["test_masks"]
    layer4 = dict(model.named_modules())[TARGET_LAYER]
    hooks_before = len(layer4._forward_hooks) + len(layer4._backward_hooks)
    inside, outside = [], []
    for i in np.flatnonzero(test.labels == 1):  # large bright blobs, explained for their class
        cam = grad_cam(model, test.images[i], class_idx=1)
        assert cam.shape == test.images[i].shape and cam.dtype == np.float32
        assert cam.min() >= 0 and cam.max() in (0.0, pytest.approx(1.0))  # 0: no positive evidence (ReLU)
        inside.append(cam[masks[i]].mean())
        outside.append(cam[~masks[i]].mean())
    assert np.mean(inside) > np.mean(outside), (inside, outside)
    assert len(layer4._forward_hooks) + len(layer4._backward_hooks) == hooks_before  # hooks went on a copy
    assert not model.training


def test_tsne_of_lstm_features(blob_model, tmp_path):
    model, test = blob_model["result"].model, blob_model["test"]
    feats = sequence_features(model, test)
    assert feats.shape == (len(test), 128)
    emb = tsne_embedding(feats, seed=0)
    assert emb.shape == (len(test), 2)
    np.testing.assert_allclose(emb, tsne_embedding(feats, seed=0))  # seeded
    res = plot_tsne(model, test, tmp_path / "tsne.png", test_ids=test.patient_ids[:5])
    assert res.paths[0].stat().st_size > 10_000
