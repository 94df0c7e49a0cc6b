"""Feature selection as scikit-learn transformers, fitted inside the training fold only."""

from esoct.select.binary import LassoLogisticSelector, RandomForestSelector
from esoct.select.correlation import CorrelationFilter
from esoct.select.cox import LassoCoxSelector, UnivariateCoxFilter, univariate_cox
from esoct.select.icc import ICCFilter, icc, perturbed_masks
from esoct.select.pca import PCAFeatures
from esoct.select.validation import CrossValidatedAUC, cross_validated_auc

__all__ = [
    "CorrelationFilter", "CrossValidatedAUC", "ICCFilter", "LassoCoxSelector", "LassoLogisticSelector",
    "PCAFeatures", "RandomForestSelector", "UnivariateCoxFilter", "cross_validated_auc", "icc",
    "perturbed_masks", "univariate_cox",
]
