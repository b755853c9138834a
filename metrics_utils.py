"""ROUGE, BLEU, METEOR (and any registered metric) for generated answers, and accuracy / macro-F1 of their labels
(the public API).

    import metrics_utils
    metrics_utils.compute_metrics(["IL-6 is a cytokine."], ["Interleukin 6 (IL-6) is a cytokine."])
    metrics_utils.label_metrics([metrics_utils.extract_label("Yes, it does.", ["yes", "no"])], ["yes"], ["yes", "no"])

The functions live in the package: scoring in `bioqa.evaluate.metrics` (its docstring gives the definitions),
metrics as plug-ins in `bioqa.evaluate.registry` (`register_metric`, `mean_metric`),
labels of yes/no/maybe and multiple-choice answers in `bioqa.data.labels`,
intervals and the paired test in `bioqa.evaluate.bootstrap`, answer clean-up in `bioqa.generate.postprocess`, Trainer
glue in `bioqa.train.trainer_metrics`. This module is the name people import in notebooks and scripts,
installed with the package. Importing it loads only the standard library.
"""

from bioqa.data.labels import (
    LabelScores,
    extract_label,
    label_metrics,
    mcnemar_exact,
    normalise_label,
    render_options,
    strip_label,
)
from bioqa.evaluate.bootstrap import bootstrap_intervals, paired_bootstrap
from bioqa.evaluate.metrics import (
    DEFAULT_METRICS,
    ROUGE_TYPES,
    TextScores,
    compute_metrics,
    metric_names,
    per_example_scores,
    score_predictions,
)
from bioqa.evaluate.registry import Metric, MetricScores, Score, mean_metric, register_metric, unregister_metric
from bioqa.evaluate.scorers import NLTK_DATA_DIR, MissingNLTKDataError, nltk_data_available
from bioqa.generate.postprocess import postprocess_text
from bioqa.train.trainer_metrics import trainer_compute_metrics

__all__ = [
    "DEFAULT_METRICS",
    "metric_names",
    "Metric",
    "MetricScores",
    "Score",
    "mean_metric",
    "register_metric",
    "unregister_metric",
    "ROUGE_TYPES",
    "NLTK_DATA_DIR",
    "MissingNLTKDataError",
    "TextScores",
    "compute_metrics",
    "score_predictions",
    "per_example_scores",
    "bootstrap_intervals",
    "paired_bootstrap",
    "postprocess_text",
    "trainer_compute_metrics",
    "extract_label",
    "strip_label",
    "label_metrics",
    "LabelScores",
    "mcnemar_exact",
    "normalise_label",
    "render_options",
    "nltk_data_available",
]
