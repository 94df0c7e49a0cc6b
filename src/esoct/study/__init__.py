"""Study pipelines: per-patient cohort runs, ROI extraction, the demo."""
