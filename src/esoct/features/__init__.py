"""Feature extraction: radiomics (PyRadiomics), delta-radiomics, elasticity and fractal features, deep features."""
