"""ROI files are written under a temporary name and renamed: a crash mid-write leaves no file that
"done" (the file exists) would take for complete."""

from __future__ import annotations

import numpy as np
import pytest

from esoct.study import roi_extraction
from esoct.study.roi_extraction import save_npz_atomic


def test_a_complete_write_leaves_only_the_file(tmp_path):
    path = save_npz_atomic(tmp_path / "P1_pre_slices.npz", images=np.ones((2, 3, 3), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P1_pre_slices.npz"]
    with np.load(path) as z:
        np.testing.assert_array_equal(z["images"], np.ones((2, 3, 3)))


def test_a_crash_mid_write_leaves_nothing(tmp_path, monkeypatch):
    real = np.savez_compressed

    def dying(file, **arrays):
        real(file, **arrays)  # the bytes are on disk ...
        raise KeyboardInterrupt  # ... when the run is killed, before the rename

    monkeypatch.setattr(roi_extraction.np, "savez_compressed", dying)
    with pytest.raises(KeyboardInterrupt):
        save_npz_atomic(tmp_path / "P1_pre_slab.npz", channels=np.zeros((7, 4, 4), np.float32))
    assert list(tmp_path.iterdir()) == []
