"""Explanations: Grad-CAM, t-SNE, SHAP and SurvSHAP(t)."""
