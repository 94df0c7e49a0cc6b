"""The T-stage comparison table of the report: pooled AUCs and the paired DeLong test, as computed."""

from types import SimpleNamespace

import numpy as np

from esoct.evaluate.roc import auc_ci, delong_test
from esoct.study.run import _tstage_comparison


def test_comparison_rows_carry_the_pooled_aucs_and_the_delong_test():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 30)
    a, b = y + rng.normal(0, 1, 60), y + rng.normal(0, 1.5, 60)
    d = delong_test(y, a, b)
    result = SimpleNamespace(pooled={"resolstm": {"n": 60, "auc": auc_ci(y, a), "accuracy": 0.8},
                                     "resnet": {"n": 60, "auc": auc_ci(y, b), "accuracy": 0.7}}, delong=d)
    table = _tstage_comparison(result)
    assert table["model"].tolist() == ["ResoLSTM-Depth", "ResNet-18", "ResoLSTM-Depth minus ResNet-18 (DeLong)"]
    assert table.loc[0, "AUC (95 % CI)"] == str(auc_ci(y, a))
    assert f"p = {d.p_value:.4f}" in table.loc[2, "AUC (95 % CI)"] and d.p_value < 0.05
    single = _tstage_comparison(SimpleNamespace(pooled={"resolstm": result.pooled["resolstm"]}, delong=None))
    assert single["model"].tolist() == ["ResoLSTM-Depth"]
