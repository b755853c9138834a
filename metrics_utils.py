"""ROUGE, BLEU and METEOR for generated answers: exact, offline and fast (the public API).

    import metrics_utils
    metrics_utils.compute_metrics(["IL-6 is a cytokine."], ["Interleukin 6 (IL-6) is a cytokine."])

The functions live in the package: scoring in `bioqa.metrics` (its docstring gives the definitions),
intervals and the paired test in `bioqa.bootstrap`, answer clean-up in `bioqa.postprocess`, Trainer
glue in `bioqa.trainer_metrics`. This module is the name people import in notebooks and scripts,
installed with the package. Importing it loads only the standard library.
"""

from bioqa.bootstrap import bootstrap_intervals, paired_bootstrap
from bioqa.metrics import ALL_METRICS, ROUGE_TYPES, Scores, compute_metrics, per_example_scores, score_predictions
from bioqa.postprocess import postprocess_text
from bioqa.scorers import NLTK_DATA_DIR, MissingNLTKDataError, nltk_data_available
from bioqa.trainer_metrics import trainer_compute_metrics

__all__ = [
    "ALL_METRICS",
    "ROUGE_TYPES",
    "NLTK_DATA_DIR",
    "MissingNLTKDataError",
    "Scores",
    "compute_metrics",
    "score_predictions",
    "per_example_scores",
    "bootstrap_intervals",
    "paired_bootstrap",
    "postprocess_text",
    "trainer_compute_metrics",
    "nltk_data_available",
]
