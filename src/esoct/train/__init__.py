"""Training infrastructure: devices and seeds, patient-level folds, losses and training loops."""
