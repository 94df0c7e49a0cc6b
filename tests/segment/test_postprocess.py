import numpy as np
import pytest

from esoct.errors import InputError
from esoct.io.volume import Volume
from esoct.segment.postprocess import keep_largest_component, postprocess_labels, remove_small_components


def cube(arr, corner, edge, label):
    z, y, x = corner
    arr[z : z + edge, y : y + edge, x : x + edge] = label


def test_keep_largest_component_of_an_organ():
    lab = np.zeros((20, 20, 20), np.uint8)
    cube(lab, (1, 1, 1), 3, 2)  # 27 voxels
    cube(lab, (10, 10, 10), 2, 2)  # 8 voxels
    cube(lab, (15, 1, 1), 1, 2)  # 1 voxel
    out, n = keep_largest_component(lab, 2)
    assert n == 2
    assert (out == 2).sum() == 27 and (out[1:4, 1:4, 1:4] == 2).all()
    assert (out != lab).sum() == 9 and set(np.unique(out[out != lab])) == {0}
    same, n0 = keep_largest_component(out, 2)
    assert n0 == 0 and np.array_equal(same, out)


def test_connectivity():
    lab = np.zeros((3, 3, 3), np.uint8)
    lab[0, 0, 0] = lab[1, 1, 1] = 3  # touch by a corner only
    assert keep_largest_component(lab, 3, connectivity=3)[1] == 0
    assert keep_largest_component(lab, 3, connectivity=1)[1] == 1
    with pytest.raises(InputError, match="connectivity"):
        keep_largest_component(lab, 3, connectivity=4)


def test_small_tumour_components_are_removed_in_ml():
    lab = np.zeros((30, 30, 30), np.uint8)
    cube(lab, (0, 0, 0), 10, 1)  # 1000 voxels of 1 mm^3 = 1.0 ml
    cube(lab, (15, 15, 15), 4, 1)  # 64 voxels = 0.064 ml
    cube(lab, (25, 0, 0), 2, 1)  # 8 voxels
    out, n = remove_small_components(lab, 1, 0.5, (1.0, 1.0, 1.0))
    assert n == 2 and (out == 1).sum() == 1000
    # with 2 mm voxels the 64-voxel blob is 0.512 ml and stays
    out, n = remove_small_components(lab, 1, 0.5, (2.0, 2.0, 2.0))
    assert n == 1 and (out == 1).sum() == 1064
    # when every component is small, the largest survives unless asked otherwise
    small = np.where(lab == 1, 0, lab).astype(np.uint8)
    cube(small, (15, 15, 15), 4, 1)
    cube(small, (25, 0, 0), 2, 1)
    out, n = remove_small_components(small, 1, 0.5, (1.0, 1.0, 1.0))
    assert n == 1 and (out == 1).sum() == 64
    out, n = remove_small_components(small, 1, 0.5, (1.0, 1.0, 1.0), keep_largest=False)
    assert n == 2 and (out == 1).sum() == 0


def test_postprocess_labels_applies_the_nn_transec_rules():
    lab = np.zeros((30, 30, 30), np.uint8)
    cube(lab, (0, 0, 0), 10, 1)  # tumour 1 ml
    cube(lab, (20, 20, 20), 2, 1)  # spurious tumour blob 8 voxels
    cube(lab, (0, 15, 0), 5, 2)
    cube(lab, (10, 15, 0), 2, 2)  # second aorta piece
    cube(lab, (0, 0, 15), 4, 3)
    cube(lab, (20, 0, 15), 1, 3)  # second esophagus piece
    cube(lab, (12, 0, 0), 3, 4)
    cube(lab, (20, 0, 0), 3, 4)  # two lymph nodes: both stay
    cube(lab, (12, 12, 12), 6, 5)
    vol = Volume(lab, spacing=(1.0, 1.0, 1.0), origin=(5.0, -3.0, 2.0))
    out, report = postprocess_labels(vol, min_tumour_ml=0.5)
    assert isinstance(out, Volume) and out.same_geometry(vol)
    assert report.largest_kept == {2: 1, 3: 1, 5: 0}
    assert report.small_removed == {1: 1}
    assert report.n_removed == 3
    counts = {c: int((out.array == c).sum()) for c in range(1, 6)}
    assert counts == {1: 1000, 2: 125, 3: 64, 4: 54, 5: 216}
    arr, _ = postprocess_labels(lab, (1.0, 1.0, 1.0), tumour_label=None)
    assert (arr == 1).sum() == 1008
    with pytest.raises(InputError, match="spacing"):
        postprocess_labels(lab)
