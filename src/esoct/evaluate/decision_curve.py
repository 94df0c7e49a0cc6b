"""Decision curve analysis: net benefit of a model against treat-all and treat-none over threshold probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd

from esoct.errors import InputError
from esoct.evaluate.calibration import check_proba

#: The RLN paper's range of threshold probabilities, 10% to 70% in steps of 1%.
DEFAULT_THRESHOLDS = np.round(np.arange(0.10, 0.71, 0.01), 2)


def net_benefit(y_true, proba, thresholds=None, standardized: bool = False) -> pd.DataFrame:
    """Net benefit of treating the patients whose predicted risk reaches each threshold probability.

    At threshold probability ``pt`` a patient is treated when ``proba >= pt``, and
    ``NB = TP / n - FP / n * pt / (1 - pt)``: true positives are counted as benefit, false
    positives as harm weighted by the odds of the threshold. Treat-all has
    ``NB = prevalence - (1 - prevalence) * pt / (1 - pt)``; treat-none has ``NB = 0``.
    The standardised net benefit divides by the prevalence (1 = perfect prediction).

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        Outcome.
    proba : array-like of float, shape (n,)
        Predicted probability of the outcome, in [0, 1].
    thresholds : array-like of float, optional
        Threshold probabilities, each strictly between 0 and 1; default
        :data:`DEFAULT_THRESHOLDS` (0.10, 0.11, ..., 0.70).
    standardized : bool
        Add ``snb_model`` and ``snb_all`` (net benefit / prevalence; needs at least one event).

    Returns
    -------
    pandas.DataFrame
        One row per threshold: ``threshold``, ``tp``, ``fp`` (patients treated with and without
        the outcome), ``net_benefit_model``, ``net_benefit_all``, ``net_benefit_none`` and, when
        asked, ``snb_model``, ``snb_all``.

    References
    ----------
    .. [1] Vickers, A.J., Elkin, E.B. "Decision curve analysis: a novel method for evaluating
           prediction models", Medical Decision Making 26(6), 565-574, 2006.
    .. [2] Kerr, K.F., Brown, M.D., Zhu, K., Janes, H. "Assessing the clinical impact of risk
           prediction models with decision curves: guidance for correct interpretation and
           appropriate use", Journal of Clinical Oncology 34(21), 2534-2540, 2016.
    """
    y, p = check_proba(y_true, proba)
    pt = _check_thresholds(thresholds)
    n = y.size
    tp = _count_at_or_above(np.sort(p[y]), pt)
    fp = _count_at_or_above(np.sort(p[~y]), pt)
    odds = pt / (1 - pt)
    prevalence = y.mean()
    table = pd.DataFrame(
        {
            "threshold": pt,
            "tp": tp,
            "fp": fp,
            "net_benefit_model": tp / n - fp / n * odds,
            "net_benefit_all": prevalence - (1 - prevalence) * odds,
            "net_benefit_none": np.zeros(pt.size),
        }
    )
    if standardized:
        if prevalence == 0:
            raise InputError("the standardised net benefit is undefined without events (prevalence 0)")
        table["snb_model"] = table["net_benefit_model"] / prevalence
        table["snb_all"] = table["net_benefit_all"] / prevalence
    return table


def _check_thresholds(thresholds) -> np.ndarray:
    pt = DEFAULT_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=float).ravel()
    if pt.size == 0:
        raise InputError("no threshold probabilities given")
    bad = ~((pt > 0) & (pt < 1))
    if bad.any():
        raise InputError(
            f"threshold probabilities must lie strictly between 0 and 1: {int(bad.sum())} do not, e.g. {pt[bad][0]}"
        )
    return pt


def _count_at_or_above(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return sorted_values.size - np.searchsorted(sorted_values, thresholds, side="left")
