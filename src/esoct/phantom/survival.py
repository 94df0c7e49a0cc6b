"""Overall survival of phantom patients from a documented proportional-hazards model.

Hazard ``h(t | x) = h0(t) * exp(lp)`` with a Weibull baseline
``h0(t) = (shape / scale) * (t / scale) ** (shape - 1)`` (t in months) and the
linear predictor

``lp = 0.60 (T - 2.5) + 0.80 lnm + 0.35 zlogvol - 1.80 (response - 0.5) + 0.45 texture + 0.02 (age - 63)``

where ``zlogvol = (ln(V_ml) - 2.0) / 0.9`` standardises the pre-treatment tumour
volume, ``response`` is the fraction of tumour volume removed by treatment and
``texture`` the tumour's heterogeneity trait (standard normal). Event times are
drawn by inversion; censoring is administrative (uniform 24-72 months of
follow-up) plus exponential loss to follow-up, giving about 30-40 % censoring.
"""

from __future__ import annotations

import math

import numpy as np

COEFFICIENTS = {
    "t_stage_minus_2.5": 0.60,
    "lnm": 0.80,
    "z_log_volume": 0.35,
    "response_minus_0.5": -1.80,
    "texture_trait": 0.45,
    "age_minus_63": 0.02,
}
WEIBULL_SHAPE = 1.2
WEIBULL_SCALE_MONTHS = 36.0
FOLLOW_UP_MONTHS = (24.0, 72.0)
LOSS_RATE_PER_MONTH = 0.006


def linear_predictor(t_stage: int, lnm: int, volume_ml: float, response: float, texture: float, age: float) -> float:
    """The true log relative hazard of a patient (see the module docstring)."""
    c = COEFFICIENTS
    zvol = (math.log(max(volume_ml, 1e-3)) - 2.0) / 0.9
    return (
        c["t_stage_minus_2.5"] * (t_stage - 2.5)
        + c["lnm"] * lnm
        + c["z_log_volume"] * zvol
        + c["response_minus_0.5"] * (response - 0.5)
        + c["texture_trait"] * texture
        + c["age_minus_63"] * (age - 63.0)
    )


def draw_survival(lp: float, rng: np.random.Generator) -> tuple[float, int]:
    """Observed (time in months, event 0/1) for linear predictor ``lp``."""
    u = rng.random()
    t_event = WEIBULL_SCALE_MONTHS * (-math.log(1 - u) / math.exp(lp)) ** (1 / WEIBULL_SHAPE)
    t_admin = rng.uniform(*FOLLOW_UP_MONTHS)
    t_loss = rng.exponential(1 / LOSS_RATE_PER_MONTH)
    t_cens = min(t_admin, t_loss)
    if t_event <= t_cens:
        return round(max(t_event, 0.1), 2), 1
    return round(t_cens, 2), 0


def model_description() -> dict:
    """The survival model as recorded in truth.json."""
    return {
        "model": "proportional hazards, Weibull baseline",
        "linear_predictor": "sum(coefficients * covariates); z_log_volume = (ln(V_ml) - 2.0) / 0.9",
        "coefficients": COEFFICIENTS,
        "baseline": {"weibull_shape": WEIBULL_SHAPE, "weibull_scale_months": WEIBULL_SCALE_MONTHS},
        "censoring": {"administrative_follow_up_months_uniform": list(FOLLOW_UP_MONTHS), "loss_rate_per_month": LOSS_RATE_PER_MONTH},
    }


def harrell_c(lp: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """Harrell's concordance of risk ``lp`` with observed survival (ties in risk count 1/2).

    Thin wrapper over scikit-survival's ``concordance_index_censored``.
    """
    from sksurv.metrics import concordance_index_censored

    return float(concordance_index_censored(np.asarray(event, bool), np.asarray(time, float), np.asarray(lp, float))[0])
