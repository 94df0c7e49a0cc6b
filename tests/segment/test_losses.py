import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from esoct.errors import InputError  # noqa: E402
from esoct.train.losses import (  # noqa: E402
    DeepSupervisionLoss,
    FocalLoss,
    SegmentationLoss,
    deep_supervision_weights,
    downsample_target,
    focal_loss,
)

LOGITS = torch.tensor([[[[[2.0, -1.0]]], [[[0.5, 0.0]]], [[[-1.0, 3.0]]]]])  # (1, 3, 1, 1, 2)
TARGET = torch.tensor([[[[0, 2]]]])  # (1, 1, 1, 2) -> voxel 0 class 0, voxel 1 class 2


def hand_focal(alpha, gamma):
    z = LOGITS[0, :, 0, 0, :].numpy().astype(float)  # (3 classes, 2 voxels)
    p = np.exp(z) / np.exp(z).sum(axis=0)
    pt = np.array([p[0, 0], p[2, 1]])
    return float(np.mean(-alpha * (1 - pt) ** gamma * np.log(pt)))


def test_focal_loss_equals_hand_computation():
    assert focal_loss(LOGITS, TARGET).item() == pytest.approx(hand_focal(0.25, 2.0), rel=1e-6)
    # the value itself, written out: p_t = 0.78560 and 0.93624, (1 - p_t)^2 (-log p_t) = 0.011093, 0.000268
    assert focal_loss(LOGITS, TARGET).item() == pytest.approx(0.25 * (0.011093 + 0.000268) / 2, rel=1e-3)


def test_gamma_zero_is_alpha_times_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 3, 4, 5)
    target = torch.randint(0, 6, (2, 3, 4, 5))
    ce = F.cross_entropy(logits, target)
    assert focal_loss(logits, target, alpha=0.25, gamma=0.0).item() == pytest.approx(0.25 * ce.item(), rel=1e-6)
    assert focal_loss(logits, target, alpha=1.0, gamma=0.0).item() == pytest.approx(ce.item(), rel=1e-6)
    # focusing: gamma 2 weighs every voxel by (1 - p_t)^2 < 1
    assert focal_loss(logits, target, gamma=2.0) < focal_loss(logits, target, gamma=0.0)


def test_matches_monai_per_voxel_terms_and_why_not_monai_mean():
    from monai.losses import FocalLoss as MonaiFocal

    torch.manual_seed(1)
    logits = torch.randn(2, 6, 3, 4, 5)
    target = torch.randint(0, 6, (2, 1, 3, 4, 5))
    ours = focal_loss(logits, target)
    terms = MonaiFocal(use_softmax=True, to_onehot_y=True, alpha=[0.25] * 6, gamma=2.0, reduction="none")(logits, target)
    assert ours.item() == pytest.approx(terms.sum(dim=1).mean().item(), rel=1e-5)
    # MONAI's mean divides by the 6 channels too, and its scalar alpha weighs background 0.75
    monai_mean = MonaiFocal(use_softmax=True, to_onehot_y=True, alpha=[0.25] * 6, reduction="mean")(logits, target)
    assert monai_mean.item() == pytest.approx(ours.item() / 6, rel=1e-5)


def test_per_class_alpha_and_ignore_index():
    per_class = focal_loss(LOGITS, TARGET, alpha=[0.5, 0.1, 0.2])
    z = LOGITS[0, :, 0, 0, :].numpy().astype(float)
    p = np.exp(z) / np.exp(z).sum(axis=0)
    expected = np.mean([-0.5 * (1 - p[0, 0]) ** 2 * np.log(p[0, 0]), -0.2 * (1 - p[2, 1]) ** 2 * np.log(p[2, 1])])
    assert per_class.item() == pytest.approx(expected, rel=1e-6)
    only_first = focal_loss(LOGITS, torch.tensor([[[[0, 255]]]]), ignore_index=255)
    assert only_first.item() == pytest.approx(-0.25 * (1 - p[0, 0]) ** 2 * np.log(p[0, 0]), rel=1e-6)
    with pytest.raises(InputError, match="alpha has 2 values"):
        focal_loss(LOGITS, TARGET, alpha=[0.5, 0.5])
    with pytest.raises(InputError, match="does not fit"):
        FocalLoss()(LOGITS, torch.zeros(1, 1, 2, 2, dtype=torch.long))


def test_deep_supervision_weights_and_target_downsampling():
    assert deep_supervision_weights(4) == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15])
    t = torch.tensor([[0, 0, 1, 2], [0, 3, 0, 0]]).reshape(1, 1, 1, 2, 4)
    assert downsample_target(t, (1, 1, 2)).flatten().tolist() == [0, 1]
    assert downsample_target(t, (1, 1, 2), mode="max").flatten().tolist() == [3, 2]
    with pytest.raises(InputError, match="multiple"):
        downsample_target(t, (1, 1, 3))


def test_deep_supervision_loss_is_weighted_sum_over_resolutions():
    torch.manual_seed(2)
    target = torch.randint(0, 3, (2, 1, 4, 8, 8))
    outputs = [torch.randn(2, 3, 4, 8, 8), torch.randn(2, 3, 4, 4, 4), torch.randn(2, 3, 2, 2, 2)]
    ds = DeepSupervisionLoss(FocalLoss())
    expected = (
        4 / 7 * focal_loss(outputs[0], target)
        + 2 / 7 * focal_loss(outputs[1], target[:, :, :, ::2, ::2])
        + 1 / 7 * focal_loss(outputs[2], target[:, :, ::2, ::4, ::4])
    )
    assert ds(outputs, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert ds(outputs[0], target).item() == pytest.approx(focal_loss(outputs[0], target).item())
    equal = DeepSupervisionLoss(FocalLoss(), weights=[1, 1, 1])(outputs, target)
    assert equal.item() == pytest.approx(sum(
        focal_loss(o, downsample_target(target, o.shape[2:])).item() for o in outputs) / 3, rel=1e-6)


def test_optional_dice_term():
    target = torch.zeros(1, 1, 2, 4, 4, dtype=torch.long)
    target[..., 1:3, 1:3] = 1
    perfect = torch.where(target.bool(), 1.0, -1.0).float() * 20
    logits = torch.cat([-perfect, perfect], dim=1)
    assert SegmentationLoss(dice_weight=1.0)(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    wrong = -logits
    assert SegmentationLoss(dice_weight=1.0)(wrong, target).item() > SegmentationLoss()(wrong, target).item() + 0.99
