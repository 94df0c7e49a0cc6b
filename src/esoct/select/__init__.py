"""Feature selection as scikit-learn transformers, fitted inside the training fold only."""
