"""Synthetic ROI sequences for the T-stage tests: the size of a bright blob decides the class."""

from __future__ import annotations

import numpy as np
import pytest


def blob_sequences(n: int, size: int = 64, seed: int = 0, min_len: int = 3, max_len: int = 6):
    """``n`` sequences ``(S, size, size)`` in [0, 1]: noisy background 0.25, a bright (0.9) disc.

    Class 0: disc radius 6-9 % of the side; class 1: 14-18 %, centred in a random quadrant.
    Classes alternate (balanced).
    Returns ``(images, labels, masks)``; ``masks`` are the discs.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels, masks = [], [], []
    for i in range(n):
        y = i % 2
        s = int(rng.integers(min_len, max_len + 1))
        seq = 0.25 + 0.05 * rng.standard_normal((s, size, size))
        cy, cx = (rng.choice([0.27, 0.73], 2) + rng.uniform(-0.04, 0.04, 2)) * size  # one quadrant
        r = (rng.uniform(0.06, 0.09) if y == 0 else rng.uniform(0.14, 0.18)) * size
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        seq[:, disc] = 0.9
        images.append(np.clip(seq, 0, 1).astype(np.float32))
        labels.append(y)
        masks.append(np.broadcast_to(disc, seq.shape).copy())
    return images, labels, masks


@pytest.fixture(scope="session")
def blobs():
    return blob_sequences


@pytest.fixture(scope="session")
def blob_model(tmp_path_factory):
    """A ResoLSTM-Depth trained with the ``fast`` preset (tiny width) on the blob task, its
    validation and test sets; shared by the learning and the Grad-CAM tests."""
    torch = pytest.importorskip("torch")
    from esoct.tstage.data import make_sequence_set
    from esoct.tstage.presets import get_preset
    from esoct.tstage.train import train_fold

    images, labels, masks = blob_sequences(72, seed=3)
    ids = [f"S{i:03d}" for i in range(72)]
    train = make_sequence_set(ids[:40], images[:40], labels[:40])
    val = make_sequence_set(ids[40:52], images[40:52], labels[40:52])
    test = make_sequence_set(ids[52:], images[52:], labels[52:])
    preset = get_preset("fast", width=0.125, epochs=8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = train_fold("resolstm", train, val, preset, tmp_path_factory.mktemp("blob_model"), seed=0, progress=False)
    torch.set_num_threads(threads)
    return {"result": result, "test": test, "test_masks": masks[52:], "preset": preset}
