"""Helpers behind the toolkit's entry scripts and `metrics_utils`; importing the package loads nothing."""
