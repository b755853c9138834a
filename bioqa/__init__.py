"""The toolkit as a package: library modules (data, prompts, metrics, merging, ...) and the command-line layer
(`bioqa.cli`); `metrics_utils` re-exports `bioqa.metrics`. Importing the package loads nothing."""
