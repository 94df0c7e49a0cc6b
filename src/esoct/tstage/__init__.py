"""T-staging from 2D tumour ROI slice sequences: ResoLSTM-Depth and its ResNet-18 baseline.

Modules (each imports torch itself; importing this package does not)
-------
data      labels from pT, ROI sequences from the cache (checked: >= 2 slices, head to foot), dataset,
          seeded rotation/flip augmentation, padding collate
presets   ``paper`` and ``fast`` training settings
train     one fold: training with per-epoch checkpoints, exact resume, model selection, prediction
cv        five-fold patient-level cross-validation of both models, tables, DeLong, predictions, figures
explain   t-SNE of the LSTM features, Grad-CAM on ResNet layer4 (MONAI), their figures

See ``docs/tstage.md``.
"""
