"""Box-counting dimension on sets of known dimension (tolerance 0.05), counts and local slopes."""

from __future__ import annotations

import numpy as np
import pytest

from esoct.errors import InputError
from esoct.features.fractal import box_counting, surface
from esoct.io.volume import Volume

TOL = 0.05  # absolute tolerance on the dimension, as documented in docs/elasticity.md
MENGER_DIM = np.log(20) / np.log(3)  # 2.7268...


def menger_sponge(level: int) -> np.ndarray:
    """Level-``level`` Menger sponge, ``3**level`` voxels per edge (built by Kronecker products)."""
    seed = np.ones((3, 3, 3), bool)
    centre = np.indices((3, 3, 3)) == 1
    seed[centre.sum(axis=0) >= 2] = False  # remove the centre and the 6 face centres: 20 sub-cubes kept
    sponge = np.ones((1, 1, 1), bool)
    for _ in range(level):
        sponge = np.kron(seed, sponge).astype(bool)
    return sponge


def _padded(shape=(70, 70, 70)):
    return np.zeros(shape, bool)


def test_filled_cube_is_3_with_exact_counts():
    cube = _padded()
    cube[3:67, 3:67, 3:67] = True  # 64 voxels per edge, 0.5 mm voxels -> 32 mm
    res = box_counting(cube, (0.5, 0.5, 0.5))
    assert res.dimension == pytest.approx(3.0, abs=TOL)
    np.testing.assert_allclose(res.sizes_mm, [0.5, 1, 2, 4, 8, 16])  # up to half the 32 mm extent
    np.testing.assert_array_equal(res.counts, [64**3, 32**3, 16**3, 8**3, 4**3, 2**3])
    np.testing.assert_allclose(res.local_slopes, 3.0)
    assert res.r2 == pytest.approx(1.0)


def test_plane_is_2_and_line_is_1():
    plane = _padded()
    plane[30, 3:67, 3:67] = True
    line = _padded()
    line[30, 40, 3:67] = True
    assert box_counting(plane).dimension == pytest.approx(2.0, abs=TOL)
    assert box_counting(line).dimension == pytest.approx(1.0, abs=TOL)


@pytest.mark.parametrize("level", [3, 4])
def test_menger_sponge(level):
    sponge = menger_sponge(level)
    assert sponge.sum() == 20**level
    res = box_counting(sponge, sizes_mm=3.0 ** np.arange(level))
    assert res.dimension == pytest.approx(MENGER_DIM, abs=TOL)
    np.testing.assert_array_equal(res.counts, 20 ** np.arange(level, 0, -1))
    np.testing.assert_allclose(res.local_slopes, MENGER_DIM, atol=1e-9)


def test_physical_spacing_and_anisotropic_boxes():
    cube = _padded((40, 70, 70))
    cube[4:36, 3:67, 3:67] = True  # 32 slices of 2 mm x 64 x 64 pixels of 1 mm: a 64 mm cube
    vol = Volume(cube, spacing=(2.0, 1.0, 1.0))
    res = box_counting(vol)
    np.testing.assert_allclose(res.sizes_mm, [2, 4, 8, 16, 32])
    np.testing.assert_array_equal(res.sizes_vox[0], [1, 2, 2])
    assert res.dimension == pytest.approx(3.0, abs=TOL)


def test_2d_square():
    square = np.zeros((40, 40), bool)
    square[4:36, 4:36] = True
    assert box_counting(square).dimension == pytest.approx(2.0, abs=TOL)


def test_closed_boundaries_have_exact_counts_and_local_slopes():
    # boundary of a 32 x 32 square: N(s) = 4 (32 / s) - 4 boxes; a closed curve, dimension 1 at small s
    square = np.zeros((40, 40), bool)
    square[4:36, 4:36] = True
    res = box_counting(surface(square))
    np.testing.assert_array_equal(res.counts, [4 * (32 // s) - 4 for s in (1, 2, 4, 8, 16)])
    assert res.local_slopes[0] == pytest.approx(1.0, abs=TOL)
    # surface of a 64-voxel cube: N(s) = 6 (64/s)^2 - 12 (64/s) + 8, dimension 2 at small s; the
    # whole-range fit reads high (2.28) because the largest boxes see the closed shell as a solid
    cube = _padded()
    cube[3:67, 3:67, 3:67] = True
    shell = surface(cube)
    assert shell.sum() == 64**3 - 62**3
    res = box_counting(shell)
    m = 64 // res.sizes_mm.astype(int)
    np.testing.assert_array_equal(res.counts, 6 * m**2 - 12 * m + 8)
    assert res.local_slopes[0] == pytest.approx(2.0, abs=TOL)
    assert res.dimension == pytest.approx(2.284, abs=1e-3)


def test_empty_set_and_bad_input():
    res = box_counting(np.zeros((5, 5, 5), bool))
    assert np.isnan(res.dimension) and res.counts.size == 0
    single = np.zeros((5, 5, 5), bool)
    single[2, 2, 2] = True
    res = box_counting(single)  # one voxel: one box at every size, dimension 0
    assert res.dimension == pytest.approx(0.0)
    with pytest.raises(InputError, match="2D"):
        box_counting(np.zeros(5, bool))
    with pytest.raises(InputError, match="spacing"):
        box_counting(np.ones((3, 3, 3), bool), (1.0, 1.0))
    with pytest.raises(InputError, match="positive"):
        box_counting(np.ones((3, 3, 3), bool), sizes_mm=[0.0, 1.0])
