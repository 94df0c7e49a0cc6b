"""Feature extraction: radiomics (PyRadiomics), delta-radiomics, elasticity and fractal features, deep features.

PyRadiomics is imported only when features are extracted, so ``import esoct.features`` stays light.
"""

from esoct.features.cohort import CohortFeatures, extract_cohort
from esoct.features.radiomics import RadiomicsExtractor, RadiomicsResult

__all__ = ["CohortFeatures", "RadiomicsExtractor", "RadiomicsResult", "extract_cohort"]
