"""Lymph-node detection: short axis of known ellipses, the hit rule, sensitivity, FP/patient, FROC, stations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from esoct.errors import InputError
from esoct.evaluate.node_detection import (
    assign_stations,
    detection_summary,
    froc,
    match_nodes,
    sensitivity_at_fp,
    short_axis_mm,
    station_table,
)

SPACING = (5.0, 2.0, 2.0)  # (z, y, x) mm, a thick-slice chest CT
SHAPE = (16, 64, 64)
LN = 4


def _ellipsoid(shape, centre_mm, semi_mm, spacing=SPACING) -> np.ndarray:
    """Filled ellipsoid; positions are index * spacing, centre and semi-axes in mm, (z, y, x)."""
    grid = np.indices(shape, dtype=float)
    r = sum(((grid[a] * spacing[a] - centre_mm[a]) / semi_mm[a]) ** 2 for a in range(3))
    return r <= 1.0


def _reference() -> np.ndarray:
    """Label map with three nodes, in scipy label order: A (6 mm), B (12 mm), C (2 x 2 voxels, 4.6 mm); plus a tumour."""
    ref = np.zeros(SHAPE, np.uint8)
    ref[2:5, 2:10, 40:60] = 1  # tumour: not a node, must be ignored
    ref[_ellipsoid(SHAPE, (40, 30, 30), (20, 3, 5))] = LN  # A: short axis 2 * 3 mm, the longest in z so first
    ref[_ellipsoid(SHAPE, (40, 80, 80), (15, 9, 6))] = LN  # B: short axis 2 * 6 mm
    ref[12:14, 50:52, 10:12] = LN  # C: 2 x 2 x 2 voxels
    return ref


def _node_masks(ref):
    labels, n = ndimage.label(ref == LN, structure=np.ones((3, 3, 3)))
    return [labels == i for i in range(1, n + 1)]


# ---------------------------------------------------------------- short axis


@pytest.mark.parametrize(
    ("centre", "semi", "expected"),
    [((40, 30, 30), (10, 3, 5), 6.0), ((40, 30, 30), (10, 5, 3), 6.0), ((40, 80, 80), (15, 9, 6), 12.0), ((40, 80, 80), (15, 6, 9), 12.0)],
)
def test_short_axis_of_voxelised_ellipsoids_at_thick_slices(centre, semi, expected):
    mask = _ellipsoid(SHAPE, centre, semi)
    assert short_axis_mm(mask, SPACING) == pytest.approx(expected, rel=0.15)


def test_short_axis_is_exact_for_a_finely_sampled_oblique_ellipse():
    # ellipse of semi-axes 3 and 7 mm rotated 30 degrees in-plane, 0.1 mm pixels: 2a = 6 mm
    spacing = (1.0, 0.1, 0.1)
    yy, xx = np.indices((200, 200)) * 0.1 - 10.0
    t = math.radians(30)
    u, v = yy * math.cos(t) + xx * math.sin(t), -yy * math.sin(t) + xx * math.cos(t)
    plane = (u / 3.0) ** 2 + (v / 7.0) ** 2 <= 1
    mask = np.zeros((3, 200, 200), bool)
    mask[1] = plane
    mask[0] = plane & (np.abs(u) < 1)  # a smaller slice: must not be the one measured
    assert short_axis_mm(mask, spacing) == pytest.approx(6.0, rel=0.01)


def test_short_axis_single_voxel_and_empty():
    one = np.zeros((3, 3, 3), bool)
    one[1, 1, 1] = True
    # uniform voxel of width 2 mm: variance 4 / 12, short axis 4 sqrt(1/3) = 2.309 mm
    assert short_axis_mm(one, SPACING) == pytest.approx(4 * math.sqrt(4 / 12))
    assert short_axis_mm(np.zeros((3, 3, 3), bool), SPACING) == 0.0


# ---------------------------------------------------------------- matching one patient


def test_perfect_prediction_detects_every_node_with_dice_one():
    ref = _reference()
    nodes, preds = match_nodes(ref, ref, SPACING, patient="p1")
    assert len(nodes) == 3 and len(preds) == 3
    assert nodes["detected"].all() and preds["true_positive"].all()
    np.testing.assert_allclose(nodes["dice"], 1.0)
    assert list(nodes["matched_components"]) == [(1,), (2,), (3,)]
    assert list(preds["matched_nodes"]) == [(1,), (2,), (3,)]
    assert (nodes["patient_id"] == "p1").all()
    summary = detection_summary(nodes, preds)
    assert summary["sensitivity"] == 1.0 and summary["fp_per_patient"] == 0.0
    assert summary["node_dice_mean"] == 1.0 and summary["n_patients"] == 1


def test_node_table_sizes_bins_and_centroids():
    ref = _reference()
    nodes, _ = match_nodes(ref, ref, SPACING)
    masks = _node_masks(ref)
    np.testing.assert_allclose(nodes["volume_mm3"], [m.sum() * 20.0 for m in masks])  # 5 * 2 * 2 mm^3 per voxel
    # A, B and C in label order: their centroids (index * spacing) identify them
    np.testing.assert_allclose(nodes[["z_mm", "y_mm", "x_mm"]].to_numpy()[:2], [[40, 30, 30], [40, 80, 80]], atol=1e-9)
    np.testing.assert_allclose(nodes.loc[2, ["z_mm", "y_mm", "x_mm"]].to_numpy(dtype=float), [62.5, 101.0, 21.0])
    assert list(nodes["size_bin"]) == ["5-10", ">10", "<5"]
    assert nodes.loc[2, "short_axis_mm"] == pytest.approx(4 * math.sqrt(1 + 4 / 12))  # 2 x 2 pixels of 2 mm
    summary = detection_summary(nodes, _)
    assert {b: v["n"] for b, v in summary["sensitivity_by_size"].items()} == {"<5": 1, "5-10": 1, ">10": 1}
    assert summary["n_nodes_5mm"] == 2


def test_size_bin_boundaries_are_inclusive_at_5_and_10():
    # 2 x 2 pixels of side s: short axis 4 sqrt(s^2 / 4 + s^2 / 12) = 4 s / sqrt(3); s chosen for exactly 5 and 10 mm
    masks = np.zeros((1, 20, 20), np.uint8)
    masks[0, 2:4, 2:4] = LN
    masks[0, 10:12, 10:12] = LN
    for target, expected in ((5.0, "5-10"), (10.0, "5-10"), (4.99, "<5"), (10.01, ">10")):
        s = target * math.sqrt(3) / 4
        nodes, _ = match_nodes(masks, masks, (1.0, s, s))
        assert nodes["short_axis_mm"].iloc[0] == pytest.approx(target)
        assert nodes["size_bin"].iloc[0] == expected, target
        assert detection_summary(nodes, _)["n_nodes_5mm"] == (2 if target >= 5.0 else 0)  # two equal nodes


def test_dice_of_a_shifted_cube():
    ref = np.zeros((10, 20, 20), np.uint8)
    ref[2:6, 4:8, 4:8] = LN  # 64 voxels
    pred = np.roll(ref, 1, axis=2)  # overlap 48: Dice 2 * 48 / 128
    nodes, preds = match_nodes(ref, pred, SPACING)
    assert nodes["dice"].iloc[0] == pytest.approx(0.75)
    assert nodes["detected"].iloc[0] and preds["true_positive"].iloc[0]


def test_centroid_inside_detects_despite_low_dice():
    ref = _reference()
    b = _node_masks(ref)[1]
    pred = np.zeros_like(ref)
    pred[8, 40, 40:42] = LN  # two voxels at B's centre: Dice 4 / (|B| + 2) < 0.1
    nodes, preds = match_nodes(ref, pred, SPACING)
    assert nodes.loc[1, "dice"] == pytest.approx(4 / (b.sum() + 2)) and nodes.loc[1, "dice"] < 0.1
    assert list(nodes["detected"]) == [False, True, False]
    assert preds["true_positive"].all() and preds["matched_nodes"].iloc[0] == (2,)


def test_centroid_inside_counts_even_without_any_overlap():
    # a hollow shell around B: Dice 0, but its centroid is B's centre
    ref = _reference()
    b = _node_masks(ref)[1]
    shell = ndimage.binary_dilation(b, iterations=3) & ~ndimage.binary_dilation(b, iterations=2)
    pred = np.where(shell, LN, 0).astype(np.uint8)
    nodes, preds = match_nodes(ref, pred, SPACING)
    assert nodes.loc[1, "dice"] == 0.0
    assert list(nodes["detected"]) == [False, True, False]
    assert preds["true_positive"].all()


def test_centroid_rule_uses_the_nearest_voxel():
    ref = np.zeros((8, 30, 40), np.uint8)
    ref[2:6, 5:25, 10:30] = LN  # 1600 voxels starting at x index 10
    inside = [(3, 10, 9), (4, 10, 9), (3, 10, 10), (4, 10, 10), (3, 11, 10)]  # centroid x 9.6: nearest voxel x 10
    outside = [(3, 10, 9), (4, 10, 9), (3, 11, 9), (3, 10, 10), (4, 10, 10)]  # centroid x 9.4: nearest voxel x 9
    for voxels, hit in ((inside, True), (outside, False)):
        pred = np.zeros_like(ref)
        pred[tuple(np.array(voxels).T)] = LN
        nodes, preds = match_nodes(ref, pred, SPACING)
        assert len(preds) == 1 and nodes["dice"].iloc[0] < 0.1
        assert nodes["detected"].iloc[0] == hit and preds["true_positive"].iloc[0] == hit


def test_low_dice_and_centroid_outside_is_a_miss_and_a_false_positive():
    ref = np.zeros((10, 40, 40), np.uint8)
    ref[2:6, 4:14, 4:14] = LN  # 400 voxels
    pred = np.zeros_like(ref)
    pred[2:6, 4:14, 13:23] = LN  # overlap 40: Dice 80 / 800 = 0.1, not > 0.1; centroid outside
    nodes, preds = match_nodes(ref, pred, SPACING)
    assert nodes["dice"].iloc[0] == pytest.approx(0.1)
    assert not nodes["detected"].iloc[0] and not preds["true_positive"].iloc[0]
    # the same pair with a looser threshold matches
    nodes, preds = match_nodes(ref, pred, SPACING, min_dice=0.05)
    assert nodes["detected"].iloc[0] and preds["true_positive"].iloc[0]


def test_far_blob_is_one_false_positive():
    ref = _reference()
    pred = ref.copy()
    pred[pred == 1] = 0
    pred[2:4, 55:60, 55:60] = LN  # nowhere near a node
    nodes, preds = match_nodes(ref, pred, SPACING, patient="p1")
    summary = detection_summary(nodes, preds)
    assert summary["sensitivity"] == 1.0
    assert summary["n_false_positives"] == 1 and summary["fp_per_patient"] == 1.0
    assert preds["true_positive"].sum() == 3
    # the same over two patients, one of them perfect: 0.5 FP per patient
    n2, p2 = match_nodes(ref, ref, SPACING, patient="p2")
    both = detection_summary(pd.concat([nodes, n2]), pd.concat([preds, p2]))
    assert both["n_patients"] == 2 and both["fp_per_patient"] == 0.5
    assert detection_summary(nodes, preds, n_patients=4)["fp_per_patient"] == 0.25


def test_missing_node_lowers_sensitivity_by_one_node():
    ref = _reference()
    a, b, c = _node_masks(ref)
    pred = np.where(a | b, LN, 0).astype(np.uint8)  # C (the < 5 mm node) missed
    nodes, preds = match_nodes(ref, pred, SPACING)
    s = detection_summary(nodes, preds)
    assert (s["n_nodes"], s["n_detected"]) == (3, 2)
    assert s["sensitivity"] == pytest.approx(2 / 3)
    assert s["sensitivity_5mm"] == 1.0  # the missed node is below 5 mm
    assert s["sensitivity_by_size"]["<5"] == {"n": 1, "detected": 0, "sensitivity": 0.0}
    assert s["sensitivity_by_size"][">10"]["sensitivity"] == 1.0
    assert s["node_dice_mean"] == pytest.approx(2 / 3)
    assert s["fp_per_patient"] == 0.0
    # miss B instead: now the >= 5 mm sensitivity drops to 1/2
    pred = np.where(a | c, LN, 0).astype(np.uint8)
    s = detection_summary(*match_nodes(ref, pred, SPACING))
    assert s["sensitivity_5mm"] == 0.5 and s["sensitivity_by_size"][">10"]["detected"] == 0


def test_wilson_intervals():
    ref = _reference()
    a, b, _ = _node_masks(ref)
    nodes, preds = match_nodes(ref, np.where(a | b, LN, 0), SPACING)
    s = detection_summary(nodes, preds)
    # Wilson 95 % interval of 2/3 by hand: centre (k + z^2/2) / (n + z^2), half z sqrt(k (n-k)/n + z^2/4) / (n + z^2)
    z = 1.959963984540054
    centre, half = (2 + z**2 / 2) / (3 + z**2), z * math.sqrt(2 * 1 / 3 + z**2 / 4) / (3 + z**2)
    np.testing.assert_allclose(s["sensitivity_ci"], [centre - half, centre + half], rtol=1e-9)
    assert s["sensitivity_5mm_ci"][1] == 1.0 and s["sensitivity_5mm_ci"][0] < 1.0
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    np.testing.assert_allclose(s["sensitivity_ci"], proportion.proportion_confint(2, 3, alpha=0.05, method="wilson"), rtol=1e-9)
    empty = detection_summary(nodes.iloc[:0], preds.iloc[:0], n_patients=1)
    assert math.isnan(empty["sensitivity"]) and all(math.isnan(v) for v in empty["sensitivity_ci"])
    assert all(math.isnan(v["sensitivity"]) for v in empty["sensitivity_by_size"].values())


def test_26_connectivity_joins_diagonal_voxels():
    ref = np.zeros((4, 4, 4), np.uint8)
    ref[1, 1, 1] = ref[2, 2, 2] = LN  # corner neighbours: one node
    nodes, _ = match_nodes(ref, ref, SPACING)
    assert len(nodes) == 1 and nodes["volume_mm3"].iloc[0] == 40.0


def test_boolean_masks_and_other_labels():
    ref = _reference()
    nodes, _ = match_nodes(ref == LN, ref == LN, SPACING)
    assert len(nodes) == 3
    tumour, _ = match_nodes(ref, ref, SPACING, label=1)
    assert len(tumour) == 1


# ---------------------------------------------------------------- FROC


def _two_patients():
    """p1: every node found, B split in two pieces, one FP; p2: A found by a tiny piece, C missed, one FP."""
    ref = _reference()
    a, b, c = _node_masks(ref)
    pred1 = ref.copy()
    pred1[pred1 == 1] = 0
    pred1[:, 38, :][b[:, 38, :]] = 0  # B cut in a 126-voxel (2520 mm^3) and a 26-voxel (520 mm^3) piece
    pred1[0, 60, 60] = LN  # a 1-voxel FP (20 mm^3)
    pred2 = np.where(b, LN, 0).astype(np.uint8)  # B whole (173 voxels, 3460 mm^3)
    pred2[8, 15, 15:17] = LN  # 2 voxels (40 mm^3) inside A: found by the centroid rule
    pred2[0:3, 55:58, 55:58] = LN  # a 27-voxel FP (540 mm^3)
    n1, p1 = match_nodes(ref, pred1, SPACING, patient="p1")
    n2, p2 = match_nodes(ref, pred2, SPACING, patient="p2")
    return pd.concat([n1, n2], ignore_index=True), pd.concat([p1, p2], ignore_index=True)


def test_split_node_keeps_its_best_piece():
    nodes, preds = _two_patients()
    b1 = nodes[(nodes["patient_id"] == "p1") & (nodes["node"] == 2)].iloc[0]
    assert b1["dice"] == pytest.approx(2 * 126 / (173 + 126))
    pieces = preds[(preds["patient_id"] == "p1") & preds["component"].isin(b1["matched_components"])]
    assert sorted(pieces["volume_mm3"]) == [520.0, 2520.0]
    assert all(m == (2,) for m in pieces["matched_nodes"])


def test_froc_is_monotone_and_starts_at_the_summary():
    nodes, preds = _two_patients()
    summary = detection_summary(nodes, preds)
    assert summary["sensitivity"] == pytest.approx(5 / 6) and summary["fp_per_patient"] == 1.0
    table = froc(nodes, preds)
    assert list(table.columns) == ["min_volume_mm3", "fp_per_patient", "sensitivity"]
    assert (np.diff(table["fp_per_patient"]) <= 0).all() and (np.diff(table["sensitivity"]) <= 0).all()
    assert table["fp_per_patient"].iloc[0] == summary["fp_per_patient"]
    assert table["sensitivity"].iloc[0] == summary["sensitivity"]
    # nodes need (largest matching piece): p1 A 1260, B 2520, C 160; p2 A 40, B 3460, C never. FPs: 20 and 540 mm^3
    expected = pd.DataFrame(
        {
            "min_volume_mm3": [0.0, 20, 40, 160, 520, 540, 1260, 2520, 3460],
            "fp_per_patient": [1.0, 1, 0.5, 0.5, 0.5, 0.5, 0, 0, 0],
            "sensitivity": np.array([5, 5, 5, 4, 3, 3, 3, 2, 1]) / 6,
        }
    )
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    nxt = froc(nodes, preds, thresholds=[1e9, 41.0])
    assert list(nxt["min_volume_mm3"]) == [41.0, 1e9]
    assert list(nxt["sensitivity"]) == pytest.approx([4 / 6, 0.0]) and list(nxt["fp_per_patient"]) == [0.5, 0.0]
    # only nodes >= 5 mm: the C nodes (4.6 mm; missed in p2) leave the denominator
    big = froc(nodes, preds, min_short_axis_mm=5.0)
    assert big["sensitivity"].iloc[0] == 1.0 and big["fp_per_patient"].iloc[0] == 1.0
    assert big["sensitivity"].iloc[0] == detection_summary(nodes, preds)["sensitivity_5mm"]


def test_sensitivity_at_fp():
    table = froc(*_two_patients())
    assert sensitivity_at_fp(table, 1.0) == pytest.approx(5 / 6)
    assert sensitivity_at_fp(table, 0.5) == pytest.approx(5 / 6)  # at 40 mm^3
    assert sensitivity_at_fp(table, 0.0) == pytest.approx(3 / 6)  # at 1260 mm^3
    assert math.isnan(sensitivity_at_fp(table.iloc[:2], 0.5))


# ---------------------------------------------------------------- stations


def test_station_table_counts():
    nodes, preds = _two_patients()
    stations = {1: "2R", 2: "7", 3: ""}
    nodes["station"] = nodes["node"].map(stations)
    table = station_table(nodes).set_index("station")
    assert list(table.index) == ["2R", "7", "unassigned", "all"]
    assert table.loc["2R", ["n", "detected"]].tolist() == [2, 2]
    assert table.loc["unassigned", ["n", "detected"]].tolist() == [2, 1]
    assert table.loc["all", ["n", "detected"]].tolist() == [6, 5]
    assert table.loc["all", "sensitivity"] == pytest.approx(5 / 6)
    assert table.loc["7", "median_short_axis_mm"] == pytest.approx(nodes.loc[nodes["node"] == 2, "short_axis_mm"].iloc[0])


def test_assign_stations_picks_the_nearest_centre():
    ref = _reference()
    origin = (-100.0, 20.0, -30.0)  # (z, y, x) mm
    # physical centroids (origin + index * spacing): A (-60, 50, 0), B (-60, 100, 50), C (-37.5, 121, -9)
    centres = np.array([[-60.0, 55.0, 0.0], [-60.0, 52.0, 0.0], [-60.0, 100.0, 50.0], [-30.0, 121.0, -9.0]])
    names = ["4R", "2R", "7", "8M"]
    out = assign_stations(ref, SPACING, origin, centres, names)
    assert out == ["2R", "7", "8M"]  # A: 2R at 2 mm beats 4R at 5 mm; C: 8M at 7.5 mm
    assert assign_stations(ref, SPACING, origin, centres, names, max_distance_mm=5.0) == ["2R", "7", ""]
    assert assign_stations(ref, SPACING, (0.0, 0.0, 0.0), centres, names) == ["", "", ""]  # origin matters
    assert assign_stations(ref, SPACING, origin, np.empty((0, 3)), []) == ["", "", ""]
    nodes, _ = match_nodes(ref, ref, SPACING, stations=out)
    assert list(nodes["station"]) == ["2R", "7", "8M"]
    with pytest.raises(InputError, match="one station per centre"):
        assign_stations(ref, SPACING, origin, centres, names[:3])


# ---------------------------------------------------------------- errors


def test_input_errors():
    ref = _reference()
    with pytest.raises(InputError, match="differ in shape"):
        match_nodes(ref, ref[:, :, :32], SPACING)
    with pytest.raises(InputError, match="spacing"):
        match_nodes(ref, ref, (5.0, 0.0, 2.0))
    with pytest.raises(InputError, match="spacing"):
        match_nodes(ref, ref, (5.0, 2.0))
    with pytest.raises(InputError, match="3 lymph-node components"):
        match_nodes(ref, ref, SPACING, stations=["7"])
    with pytest.raises(InputError, match="patient p9"):
        match_nodes(ref, ref[:1], SPACING, patient="p9")
    with pytest.raises(InputError, match="3-D"):
        short_axis_mm(np.ones((3, 3)), SPACING)
    nodes, preds = match_nodes(ref, ref, SPACING)
    with pytest.raises(InputError, match="lacks the columns"):
        detection_summary(nodes.drop(columns="detected"), preds)
