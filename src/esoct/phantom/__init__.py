"""Synthetic thorax-CT phantom cohorts with known ground truth (T stage, nodes, survival)."""

from esoct.phantom.cohort import generate_cohort

__all__ = ["generate_cohort"]
