"""3D Grad-CAM of the gated classifier: shape, localisation of the synthetic target, MONAI vs hooks, overlays."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from esoct.classify.gradcam3d import grad_cam_3d, save_cam_overlays  # noqa: E402
from esoct.classify.multitask import KrtDataset, TrainConfig, fit_classifier  # noqa: E402
from esoct.errors import InputError  # noqa: E402
from esoct.models.multitask import build_multitask_classifier  # noqa: E402


@pytest.fixture(scope="module")
def trained():
    """A gated classifier trained on balls at random places (radius 2..5 voxels = stage T1..T4)."""
    torch.set_num_threads(1)
    from esoct.models.unet3d import UNetEncoder

    def enc(residual=True):
        return UNetEncoder(1, (4, 8, 16), (1, (2, 2, 2), (2, 2, 2)), 3, residual=residual)

    rng = np.random.default_rng(7)
    size = 16
    zz, yy, xx = np.mgrid[:size, :size, :size]

    def make(n, stages):
        images, labels, masks = [], [], []
        for i in range(n):
            k = stages[i % len(stages)]
            c = rng.integers(5, size - 5, size=3)
            ball = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) <= (2 + k) ** 2
            images.append((rng.normal(0, 0.3, (size,) * 3) + 1.5 * ball).astype(np.float32))
            labels.append(f"T{k + 1}")
            masks.append(ball)
        return np.stack(images), labels, np.stack(masks)

    images, labels, _ = make(40, [0, 1, 2, 3])
    torch.manual_seed(0)
    model, _ = build_multitask_classifier(enc(), enc, gates=True, transfer=True, hidden=16, seed=0)
    fit_classifier(model, KrtDataset(images, labels, [f"P{i}" for i in range(40)]),
                   TrainConfig(epochs=12, batch_size=8, lr=3e-3, seed=0, device="cpu"))
    # test crops of the large-ball stages: their evidence is the presence of the ball (the small-ball
    # stages are told by its absence, which Grad-CAM's ReLU does not show)
    test_images, _, test_masks = make(12, [2, 3])
    return model.eval(), test_images, test_masks


def test_cam_has_the_crop_shape_and_is_higher_on_the_target(trained):
    model, images, masks = trained
    inside, outside = [], []
    for img, mask in zip(images, masks):
        res = grad_cam_3d(model, img)
        assert res.cam.shape == img.shape and res.layer == "cls_encoder.stages.2"
        assert 0.0 <= res.cam.min() and res.cam.max() <= 1.0 + 1e-6
        assert res.proba.shape == (4,) and res.class_index == int(res.proba.argmax())
        inside.append(res.cam[mask].mean())
        outside.append(res.cam[~mask].mean())
    inside, outside = np.array(inside), np.array(outside)
    assert inside.mean() > outside.mean() + 0.1
    assert np.mean(inside > outside) >= 0.8


def test_monai_gradcam_equals_the_hook_implementation_and_leaves_the_model_clean(trained):
    model, images, _ = trained
    n_hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())
    a = grad_cam_3d(model, images[0], class_index=2, method="monai")
    b = grad_cam_3d(model, images[0], class_index=2, method="hooks")
    assert a.class_index == b.class_index == 2
    assert np.allclose(a.cam, b.cam, atol=1e-5)
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()) == n_hooks
    with pytest.raises(InputError, match="one crop"):
        grad_cam_3d(model, images[:2])


def test_overlays_are_written_for_the_maximum_and_the_centre(trained, tmp_path):
    model, images, masks = trained
    res = grad_cam_3d(model, images[0])
    paths = save_cam_overlays(images[0], res.cam, tmp_path, "P28", labels=masks[0].astype(np.uint8),
                              spacing_zyx=(2.0, 1.0, 1.0), title="P28")
    assert set(paths) == {"max", "center"}
    for p in paths.values():
        assert p.suffix == ".png" and p.stat().st_size > 5000
    with pytest.raises(InputError, match="same shape"):
        save_cam_overlays(images[0], res.cam[:-1], tmp_path)
