"""Benchmarks through lm-evaluation-harness: its tasks by name, and a local task from the user's own label data."""
