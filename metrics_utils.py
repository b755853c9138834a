"""ROUGE, BLEU and METEOR for generated answers: exact, offline and fast (the public API).

    import metrics_utils
    metrics_utils.compute_metrics(["IL-6 is a cytokine."], ["Interleukin 6 (IL-6) is a cytokine."])

The functions live in `bioqa.metrics` (its docstring gives the definitions); this module is the
name people import in notebooks and scripts, installed with the package. Importing it loads only
the standard library.
"""

from bioqa.metrics import (ALL_METRICS, NLTK_DATA_DIR, ROUGE_TYPES, MissingNLTKDataError, Scores, bootstrap_intervals,
                           compute_metrics, nltk_data_available, paired_bootstrap, per_example_scores, postprocess_text,
                           score_predictions, trainer_compute_metrics)

__all__ = [
    "ALL_METRICS", "ROUGE_TYPES", "NLTK_DATA_DIR", "MissingNLTKDataError", "Scores",
    "compute_metrics", "score_predictions", "per_example_scores", "bootstrap_intervals", "paired_bootstrap",
    "postprocess_text", "trainer_compute_metrics", "nltk_data_available",
]
