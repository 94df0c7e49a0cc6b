"""Explanations: Grad-CAM, t-SNE, SHAP and SurvSHAP(t)."""

from esoct.explain.survshap import SurvShapResult, survshap_explain

__all__ = ["SurvShapResult", "survshap_explain"]
