"""Survival models with the scikit-survival estimator API: RSF preset, Cox, Coxnet, signatures, the paper's presets."""

from esoct.survival.cox import CoxnetCV, CoxPH, RadiomicsSignature
from esoct.survival.forest import PaperRandomSurvivalForest, nodesize_params, paper_rsf
from esoct.survival.presets import (
    FEATURE_GROUPS,
    PRESET_NAMES,
    FeatureGroup,
    PresetFeatures,
    PresetFit,
    evaluate_presets,
    fit_preset,
    stage_to_ordinal,
)
from esoct.survival.risk_groups import KaplanMeierResult, RiskGroups, adjusted_cox, km_by_group, median_split

__all__ = [
    "FEATURE_GROUPS", "PRESET_NAMES", "CoxPH", "CoxnetCV", "FeatureGroup", "KaplanMeierResult",
    "PaperRandomSurvivalForest", "PresetFeatures", "PresetFit", "RadiomicsSignature", "RiskGroups",
    "adjusted_cox", "evaluate_presets", "fit_preset", "km_by_group", "median_split", "nodesize_params",
    "paper_rsf", "stage_to_ordinal",
]
