"""Metrics with confidence intervals, statistical tests, calibration and decision curves (torch-free).

Modules
-------
bootstrap        seeded (stratified) resampling, percentile and BCa intervals, the ``CI`` result type
roc              AUC with DeLong variance and CI, paired DeLong test, one-vs-rest AUC, ROC points
threshold        confusion matrix, accuracy/sensitivity/specificity/PPV/NPV/F1 at a threshold or Youden's
calibration      Brier score, reliability curve, calibration intercept and slope, Hosmer-Lemeshow
decision_curve   net benefit against treat-all and treat-none
concordance      Harrell's and Uno's C with fast exact bootstrap CIs, truncated C-index curve
survival_metrics time-dependent AUC, Brier score over time, integrated Brier score, survival calibration
compare          paired comparison of two survival models (bootstrap, survcomp's cindex.comp)
table1           the cohort description table with p-values
"""
