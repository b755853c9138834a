"""Evaluation: metrics, labels, bootstrap statistics, prediction files, comparison and report."""
