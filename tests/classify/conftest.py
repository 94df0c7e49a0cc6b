"""Fixtures of the classification tests: a tiny U-Net encoder and a synthetic 4-class blob task."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402


def tiny_encoder(residual: bool = True) -> nn.Module:
    """Encoder factory of the tests: the real U-Net encoder, 3 stages of 4, 8, 16 channels."""
    from esoct.models.unet3d import UNetEncoder

    return UNetEncoder(1, (4, 8, 16), (1, (2, 2, 2), (2, 2, 2)), 3, residual=residual)


@pytest.fixture
def encoder_factory():
    return tiny_encoder


def _blob_task(n_per_class: int, size: int = 16, seed: int = 0, offset: bool = False):
    """Synthetic 4-class volumes: a bright ball whose radius (2, 3, 4, 5 voxels) is the class.

    Returns ``images (N, size, size, size)``, ``labels`` ("T1".."T4"), ``ids``, ``centres (N, 3)``.
    """
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:size, :size, :size]
    images, labels, centres = [], [], []
    for k in range(4):
        for _ in range(n_per_class):
            if offset:
                c = rng.integers(5, size - 5, size=3)
            else:
                c = size // 2 + rng.integers(-1, 2, size=3)
            r = 2 + k
            ball = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) <= r * r
            img = rng.normal(0.0, 0.3, (size,) * 3) + 1.5 * ball
            images.append(img.astype(np.float32))
            labels.append(f"T{k + 1}")
            centres.append(c)
    order = rng.permutation(len(images))
    ids = [f"P{i:03d}" for i in range(len(images))]
    return np.stack(images)[order], [labels[i] for i in order], ids, np.array(centres)[order]


@pytest.fixture
def blob_task():
    """The synthetic task generator (see ``_blob_task``)."""
    return _blob_task


