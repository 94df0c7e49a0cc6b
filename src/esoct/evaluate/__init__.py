"""Metrics with confidence intervals, statistical tests, calibration and decision curves (torch-free)."""
