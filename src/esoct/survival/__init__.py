"""Survival models with the scikit-survival estimator API: RSF preset, Cox, Coxnet, signatures, the paper's presets."""
