import numpy as np
import pytest

torch = pytest.importorskip("torch")

from esoct.errors import InputError  # noqa: E402
from esoct.io.volume import Volume  # noqa: E402
from esoct.preprocess.roi.pipelines import resolstm_inputs  # noqa: E402
from esoct.tstage.data import (  # noqa: E402
    SequenceDataset,
    load_roi_sequences,
    make_sequence_set,
    orient_head_to_foot,
    pad_collate,
    t_stage_label,
)


def test_t_stage_labels():
    assert [t_stage_label(t) for t in ("T1", "T2", "T3", "T4", "T1b", "t4a", 3)] == [0, 0, 1, 1, 0, 1, 1]
    assert [t_stage_label(t, "four") for t in ("T1", "T2", "T3", "T4")] == [0, 1, 2, 3]
    with pytest.raises(InputError, match="patient EP9: pT must be T1..T4"):
        t_stage_label("Tx", patient="EP9")


def _scan(flip_z: bool):
    """A 6-slice scan, HU = 20 * physical z (mm) + 40, a tumour on slices 1..4; optionally the same
    anatomy stored with the array z index running towards the feet."""
    z = np.arange(6)
    hu = np.broadcast_to((20.0 * z + 40.0 - 100.0)[:, None, None], (6, 20, 20)).astype(np.float32).copy()
    lab = np.zeros((6, 20, 20), np.uint8)
    lab[1:5, 6:14, 7:13] = 1
    direction, origin = np.eye(3), (0.0, 0.0, 0.0)
    if flip_z:
        hu, lab = hu[::-1].copy(), lab[::-1].copy()
        direction, origin = np.diag([1.0, 1.0, -1.0]), (0.0, 0.0, 5.0)
    kw = dict(spacing=(1.0, 1.0, 1.0), origin=origin, direction=direction)
    return Volume(hu, **kw), Volume(lab, **kw)


def test_slice_order_head_to_foot_as_the_roi_pipeline_defines_it(tmp_path):
    seqs = [resolstm_inputs(*_scan(flip), size=16) for flip in (False, True)]
    np.testing.assert_allclose(seqs[0].images, seqs[1].images)  # the direction matrix decides, not the array
    assert np.all(np.diff(seqs[0].z_mm) < 0)
    head_first = seqs[0].images[:, 8, 8]
    assert np.all(np.diff(head_first) < 0)  # superior slices are brighter here
    ok = seqs[0]
    # stored head to foot, foot to head (reversed), with repeated z, and a one-slice patient
    np.savez(tmp_path / "A_pre_slices.npz", images=ok.images, z_mm=ok.z_mm)
    np.savez(tmp_path / "B_pre_slices.npz", images=ok.images[::-1], z_mm=ok.z_mm[::-1])
    np.savez(tmp_path / "C_pre_slices.npz", images=ok.images, z_mm=np.r_[ok.z_mm[:2], ok.z_mm[1:3]])
    np.savez(tmp_path / "D_pre_slices.npz", images=ok.images[:1], z_mm=ok.z_mm[:1])
    s = load_roi_sequences(tmp_path, {"A": "T1", "B": "T3", "C": "T2", "D": "T4", "E": "T2"})
    assert s.patient_ids == ["A", "B"] and s.labels.tolist() == [0, 1] and s.reversed == ["B"]
    np.testing.assert_array_equal(s.images[1], ok.images)
    assert "not strictly monotonic" in s.failures["C"] and "patient C" in s.failures["C"]
    assert "1 slice(s)" in s.failures["D"] and "patient D" in s.failures["D"]
    assert "no ROI sequence file" in s.failures["E"]
    (tmp_path / "failures.csv").write_text("patient_id,reason\nF,patient F: mask file not found\n")
    missing_mask = load_roi_sequences(tmp_path, {"F": "T2"})
    assert "ROI extraction failed: patient F: mask file not found" in missing_mask.failures["F"]
    with pytest.raises(InputError, match="patient D.*at least 2"):
        load_roi_sequences(tmp_path, {"D": "T4"}, on_error="raise")
    resized = load_roi_sequences(tmp_path, {"A": "T1"}, size=8)
    assert resized.images[0].shape == (4, 8, 8)


def test_orient_refuses_mismatch():
    im = np.zeros((3, 4, 4), np.float32)
    assert orient_head_to_foot(im, [3.0, 2.0, 1.0])[1] is False
    with pytest.raises(InputError, match="3 slices but 2 z positions"):
        orient_head_to_foot(im, [1.0, 2.0], patient="P1")


def test_augmentation_seeded_same_for_all_slices_and_collate():
    base = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    seqs = make_sequence_set(["P0", "P1"], [np.repeat(base, 3, axis=0), np.repeat(base, 2, axis=0)], [0, 1])
    ds = SequenceDataset(seqs, augment=True, rotate_deg=30, seed=4)
    a, b = ds[0]["x"], ds[0]["x"]
    torch.testing.assert_close(a, b)  # same seed, epoch and item -> same draw
    assert torch.equal(a[0], a[1]) and torch.equal(a[1], a[2])  # one transform per patient
    draws = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        draws.add(round(float(ds[0]["x"].sum()), 3))
    assert len(draws) > 3  # epochs differ
    batch = pad_collate([ds[0], ds[1]])
    assert batch["x"].shape == (2, 3, 1, 16, 16) and batch["lengths"].tolist() == [3, 2]
    assert batch["y"].tolist() == [0, 1] and float(batch["x"][1, 2].abs().sum()) == 0.0
    bad = make_sequence_set(["Q"], [base], [0])
    assert "patient Q" in bad.failures["Q"] and len(bad) == 0
