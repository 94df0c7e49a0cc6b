"""PatchDataset's class weights: foreground patches centre on each class as often as asked."""

import numpy as np
import pytest

pytest.importorskip("torch")

from esoct.errors import InputError  # noqa: E402
from esoct.io.volume import Volume  # noqa: E402
from esoct.segment.data import Case, PatchDataset  # noqa: E402


def two_class_case():
    image = np.zeros((16, 32, 32), np.float32)
    labels = np.zeros((16, 32, 32), np.uint8)
    labels[2:6, 2:8, 2:8] = 1  # class 1 in one corner
    labels[10:14, 24:30, 24:30] = 2  # class 2 in the opposite corner
    return Case("P1", Volume(image, (1.0, 1.0, 1.0)), Volume(labels, (1.0, 1.0, 1.0)))


def centred_class(ds, n):
    out = []
    for i in range(n):
        lab = ds[i]["label"][0].numpy()
        c = lab[lab.shape[0] // 2, lab.shape[1] // 2, lab.shape[2] // 2]
        out.append(int(c))
    return np.array(out)


def test_class_weights_bias_the_drawn_class():
    case = two_class_case()
    uniform = centred_class(PatchDataset([case], (4, 4, 4), 400, foreground_fraction=1.0, seed=0), 400)
    weighted = centred_class(PatchDataset([case], (4, 4, 4), 400, foreground_fraction=1.0, seed=0,
                                          class_weights={1: 4.0}), 400)
    assert set(uniform) <= {1, 2} and set(weighted) <= {1, 2}
    assert abs((uniform == 1).mean() - 0.5) < 0.08
    assert abs((weighted == 1).mean() - 0.8) < 0.06  # 4 : 1


def test_bad_class_weights_are_refused():
    with pytest.raises(InputError, match="positive"):
        PatchDataset([two_class_case()], (4, 4, 4), 4, class_weights={1: 0.0})
