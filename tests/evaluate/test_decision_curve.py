"""Decision curve analysis: net benefit by hand and against a direct loop."""

from __future__ import annotations

import numpy as np
import pytest

from esoct.errors import InputError
from esoct.evaluate.decision_curve import DEFAULT_THRESHOLDS, net_benefit

# prevalence 0.3
Y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
P = np.array([0.9, 0.6, 0.2, 0.7, 0.4, 0.3, 0.15, 0.1, 0.05, 0.5])


def test_net_benefit_by_hand():
    # pt = 0.2 (odds 1/4): treated 0.9, 0.6, 0.2 | 0.7, 0.4, 0.3, 0.5 -> TP 3, FP 4
    #   model 3/10 - 4/10 * 1/4 = 0.2; treat-all 0.3 - 0.7 / 4 = 0.125
    # pt = 0.5 (odds 1): TP 2 (0.9, 0.6), FP 2 (0.7, 0.5, treated at p >= pt)
    #   model 0.2 - 0.2 = 0; treat-all 0.3 - 0.7 = -0.4
    # pt = 0.75 (odds 3): TP 1, FP 0 -> model 0.1; treat-all 0.3 - 2.1 = -1.8
    table = net_benefit(Y, P, thresholds=[0.2, 0.5, 0.75])
    assert list(table["tp"]) == [3, 2, 1] and list(table["fp"]) == [4, 2, 0]
    assert table["net_benefit_model"].tolist() == pytest.approx([0.2, 0.0, 0.1], abs=1e-15)
    assert table["net_benefit_all"].tolist() == pytest.approx([0.125, -0.4, -1.8], abs=1e-15)
    assert table["net_benefit_none"].tolist() == [0.0, 0.0, 0.0]


def test_standardised_net_benefit_divides_by_the_prevalence():
    table = net_benefit(Y, P, thresholds=[0.2, 0.5], standardized=True)
    assert table["snb_model"].tolist() == pytest.approx([0.2 / 0.3, 0.0], abs=1e-15)
    assert table["snb_all"].tolist() == pytest.approx([0.125 / 0.3, -0.4 / 0.3], abs=1e-15)


def test_default_thresholds_are_10_to_70_percent_and_match_a_direct_loop():
    assert len(DEFAULT_THRESHOLDS) == 61
    assert DEFAULT_THRESHOLDS[0] == 0.10 and DEFAULT_THRESHOLDS[-1] == 0.70 and DEFAULT_THRESHOLDS[20] == 0.30
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.35
    p = np.round(np.clip(0.35 + 0.3 * (y - 0.35) + rng.normal(0, 0.2, 500), 0, 1), 2)  # ties on the grid
    table = net_benefit(y, p)
    for row in table.itertuples():
        pt = row.threshold
        treated = p >= pt
        nb = np.sum(treated & y) / 500 - np.sum(treated & ~y) / 500 * pt / (1 - pt)
        assert row.net_benefit_model == pytest.approx(nb, abs=1e-15)
        assert row.net_benefit_all == pytest.approx(y.mean() - (1 - y.mean()) * pt / (1 - pt), abs=1e-15)


def test_perfect_model_reaches_the_prevalence():
    table = net_benefit(Y, Y * 0.99 + 0.005, thresholds=[0.1, 0.5, 0.9], standardized=True)
    assert table["net_benefit_model"].tolist() == pytest.approx([0.3] * 3, abs=1e-15)
    assert table["snb_model"].tolist() == pytest.approx([1.0] * 3, abs=1e-15)


def test_bad_input():
    with pytest.raises(InputError, match="strictly between 0 and 1: 2 do not"):
        net_benefit(Y, P, thresholds=[0.0, 0.5, 1.0])
    with pytest.raises(InputError, match="outside \\[0, 1\\]"):
        net_benefit(Y, P * 2)
    with pytest.raises(InputError, match="lengths must match"):
        net_benefit(Y, P[:4])
    with pytest.raises(InputError, match="without events"):
        net_benefit(np.zeros(10), P, standardized=True)
    with pytest.raises(InputError, match="no threshold"):
        net_benefit(Y, P, thresholds=[])
