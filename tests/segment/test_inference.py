import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from esoct.errors import InputError  # noqa: E402
from esoct.io.volume import Volume  # noqa: E402
from esoct.models.unet3d import UNet3D  # noqa: E402
from esoct.segment.data import Preprocessing  # noqa: E402
from esoct.segment.inference import (  # noqa: E402
    Segmenter,
    load_segmenter,
    predict_volume,
    resample_probabilities,
    sliding_window_probabilities,
)

PREP = Preprocessing((2.0, 1.5, 1.5), -200.0, 400.0, 100.0, 100.0)


class Identity(nn.Module):
    def forward(self, x):
        return x


class Threshold(nn.Module):
    """Class 1 logit = 8 * normalised CT (above the mean HU -> class 1), class 0 logit = 0."""

    config = {"in_channels": 1, "n_classes": 2}

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), 8 * x], dim=1)


def test_gaussian_sliding_window_reproduces_the_input():
    torch.manual_seed(0)
    x = torch.randn(3, 13, 37, 29)  # not a multiple of the window
    probs = sliding_window_probabilities(Identity(), x, (8, 16, 16), overlap=0.5)
    assert probs.shape == (3, 13, 37, 29)
    assert torch.allclose(probs, torch.softmax(x, dim=0), atol=1e-5)
    assert torch.allclose(probs.sum(0), torch.ones(13, 37, 29), atol=1e-5)
    # an image smaller than the window is padded and cropped back
    small = torch.randn(3, 5, 9, 7)
    assert torch.allclose(sliding_window_probabilities(Identity(), small, (8, 16, 16)), torch.softmax(small, 0), atol=1e-5)


def test_mirroring_tta_of_a_flip_equivariant_model_equals_no_tta():
    torch.manual_seed(1)
    pointwise = nn.Conv3d(1, 4, kernel_size=1)  # acts voxel by voxel: commutes with flips
    x = torch.randn(1, 12, 20, 20)
    plain = sliding_window_probabilities(pointwise, x, (8, 16, 16))
    tta = sliding_window_probabilities(pointwise, x, (8, 16, 16), mirror_axes=(0, 1, 2))
    assert torch.allclose(plain, tta, atol=1e-5)
    # a 3x3x3 convolution with random weights is not flip-equivariant: TTA changes its output
    spatial = nn.Conv3d(1, 4, kernel_size=3, padding=1)
    a = sliding_window_probabilities(spatial, x, (8, 16, 16))
    b = sliding_window_probabilities(spatial, x, (8, 16, 16), mirror_axes=(0, 1, 2))
    assert (a - b).abs().max() > 1e-3


def oblique_volume(shape=(18, 30, 26), spacing=(3.0, 1.1, 0.9)):
    theta = np.deg2rad(20)
    direction = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    z, y, x = np.indices(shape)
    c = np.array(shape) / 2
    r2 = ((z - c[0]) * spacing[0]) ** 2 + ((y - c[1]) * spacing[1]) ** 2 + ((x - c[2]) * spacing[2]) ** 2
    sphere = r2 < 10.0**2
    hu = np.where(sphere, 300.0, -50.0).astype(np.float32)
    return Volume(hu, spacing=spacing, origin=(-12.5, 40.0, 7.25), direction=direction), sphere


def test_output_has_exactly_the_input_geometry_and_right_labels():
    vol, sphere = oblique_volume()
    seg = Segmenter(Threshold(), PREP, (8, 16, 16), 2)
    labels, report = predict_volume(seg, vol, tta=True)
    assert labels.same_geometry(vol, atol=0) and labels.shape == vol.shape
    assert np.array_equal(labels.direction, vol.direction) and labels.origin == vol.origin
    assert labels.array.dtype == np.uint8 and set(np.unique(labels.array)) == {0, 1}
    pred = labels.array == 1
    dice = 2 * (pred & sphere).sum() / (pred.sum() + sphere.sum())
    assert dice > 0.95  # resampled to 2 x 1.5 x 1.5 mm and back, nearest neighbour
    assert report.small_removed == {1: 0}


def test_volume_smaller_than_the_patch_and_a_real_unet():
    vol, _ = oblique_volume(shape=(4, 10, 9), spacing=(2.0, 1.5, 1.5))
    torch.manual_seed(0)
    net = UNet3D(1, 6, channels=(4, 8, 8), strides=(1, (1, 2, 2), 2), deep_supervision=2)
    labels = Segmenter(net, PREP, (8, 16, 16), 6).predict(vol)
    assert labels.same_geometry(vol, atol=0) and labels.array.dtype == np.uint8
    assert labels.array.max() < 6
    with pytest.raises(InputError, match="input channels"):
        Segmenter(net, PREP, (8, 16, 16), 6).predict(vol, extra=np.zeros((2, 4, 10, 9), np.float32))
    with pytest.raises(InputError, match="do not match the resampled image"):
        Segmenter(net, PREP, (8, 16, 16), 6).predict(vol, extra=np.zeros((2, 4, 14, 12), np.float32))


def test_resample_probabilities_between_grids():
    coarse = Volume(np.zeros((4, 6, 6), np.float32), spacing=(4.0, 4.0, 4.0))
    fine = Volume(np.zeros((8, 12, 12), np.float32), spacing=(2.0, 2.0, 2.0))
    probs = np.stack([np.full((4, 6, 6), 0.25, np.float32), np.full((4, 6, 6), 0.75, np.float32)])
    up = resample_probabilities(probs, coarse, fine)
    assert up.shape == (2, 8, 12, 12)
    inside = up[:, :7, :11, :11]  # the last fine voxel centres lie beyond the coarse ones
    assert np.allclose(inside[0], 0.25) and np.allclose(inside[1], 0.75)
    assert np.allclose(up.sum(0), 1.0, atol=1e-6)


def test_load_segmenter_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_segmenter(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a segmentation checkpoint"):
        load_segmenter(tmp_path / "bad.pt")
    with pytest.raises(InputError, match="Volume"):
        predict_volume(Segmenter(Threshold(), PREP, (8, 16, 16), 2), np.zeros((4, 4, 4)))
