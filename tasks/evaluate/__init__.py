"""Evaluate stage: accuracy, calibration and figures of a model on a test split."""
