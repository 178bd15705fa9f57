"""Experiment trackers: lifecycle-hook observers that record runs (MLflow)."""
