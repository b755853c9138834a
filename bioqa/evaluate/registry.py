"""Metrics as plug-ins: what a metric declares, what it returns, and the registry that names them.

A metric scores generated answers against references. It declares its name (what `--eval_metrics` and
`metrics=` take), the scores it adds to each prediction row with their titles and scales, and what it needs
offline; it returns one `MetricScores`: per-example scores and the rule that makes a corpus score of any
subset of them (the mean, unless it says otherwise), which the bootstrap resamples. Everything downstream
(prediction rows, predict_metrics.json, the Trainer's eval_* logs, the comparison, the report and the model
card) reads the scores a metric returns, so a metric is one class registered once::

    import metrics_utils

    def mentions_drug(prediction, references):
        return float(any(word in prediction.lower() for word in ("aspirin", "ibuprofen")))

    metrics_utils.register_metric(metrics_utils.mean_metric("mentions_drug", mentions_drug))

The built-in metrics (ROUGE, BLEU, METEOR, exact match and token F1) are in `bioqa.evaluate.builtin`;
accuracy and macro-F1 of labels are computed by `bioqa.data.labels` and described here (LABEL_SCORES) so that
every table names and scales them the same way. Importing this module imports only the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Score:
    """One number a metric reports per example and over the corpus."""

    name: str  # the prediction row's key, and eval_<name> in the Trainer's logs
    title: str  # as the model card shows it
    top: float = 1.0  # the scale's top: 1 (a 0-1 score) or 100 (a 0-100 score)

    @property
    def scale(self) -> str:
        return f"0-{self.top:g}"


@dataclass
class MetricScores:
    """One metric's per-example scores over a set of answers; its corpus score is their mean.

    A metric whose corpus score is not the mean of its per-example scores (corpus BLEU, say) returns a
    subclass that overrides `corpus`; `details` holds what is reported beside the scores (BLEU's signature).
    """

    per_example: dict[str, list[float]]
    details: dict[str, Any] = field(default_factory=dict)

    def array(self, name: str):
        """Per-example scores of `name` as a numpy array, cached for resampling."""
        import numpy as np

        cache = self.__dict__.setdefault("_arrays", {})
        if name not in cache:
            cache[name] = np.asarray(self.per_example[name], dtype=float)
        return cache[name]

    def corpus(self, indices: Any = None) -> dict[str, float]:
        """The corpus score of every name over the examples at `indices` (numpy indices, repeats allowed; None:
        all of them, summed exactly)."""
        if indices is None:
            return {name: math.fsum(values) / len(values) for name, values in self.per_example.items()}
        return {name: float(self.array(name)[indices].mean()) for name in self.per_example}


class Metric:
    """The protocol of a metric: subclass it, or build one from a per-example function with `mean_metric`.

    `score` gets the predictions and, for each, its list of references, plus keyword options: `num_workers`
    always, and whichever of `score_predictions`'s other options the metric lists in `options`.
    """

    name: str = ""
    scores: tuple[Score, ...] = ()
    options: tuple[str, ...] = ()  # the keyword options of score_predictions this metric reads
    needs: str = ""  # what it needs that a fresh install lacks offline, and how to get it ("" for nothing)

    def check(self) -> None:
        """Raise (with `needs` in the message) if what the metric needs is missing; before any scoring starts."""

    def score(self, predictions: Sequence[str], references: list[list[str]], **options: Any) -> MetricScores:
        raise NotImplementedError

    @property
    def headline(self) -> str:
        """The score plots and the report's examples rank by: the first."""
        return self.scores[0].name

    def __repr__(self) -> str:
        return f"<metric {self.name}: {', '.join(s.name for s in self.scores)}>"


class _MeanMetric(Metric):
    def __init__(self, name: str, function: Callable[[str, list[str]], float], title: str, top: float):
        self.name, self.function = name, function
        self.scores = (Score(name, title, top),)

    def score(self, predictions: Sequence[str], references: list[list[str]], **options: Any) -> MetricScores:
        return MetricScores({self.name: [float(self.function(p, refs)) for p, refs in zip(predictions, references)]})


def mean_metric(
    name: str, function: Callable[[str, list[str]], float], *, title: str | None = None, top: float = 1.0
) -> Metric:
    """A metric from `function(prediction, references) -> score` for one example; the corpus score is the mean.
    `top` is the scale's top (1 or 100); `title` names it in tables (default: the name)."""
    return _MeanMetric(name, function, title or name, top)


# Labels (accuracy and macro-F1 of the label read from each answer, and of the label chosen by log-likelihood)
# are scored by bioqa.data.labels over predicted and gold labels, not over texts; their names and scales here.
LABEL_SCORES = (
    Score("accuracy", "Accuracy"),
    Score("macro_f1", "Macro-F1"),
    Score("unparsed", "Unparsed answers (share)"),
    Score("loglik_accuracy", "Accuracy (log-likelihood)"),
    Score("loglik_macro_f1", "Macro-F1 (log-likelihood)"),
)

_REGISTRY: dict[str, Metric] = {}
ROW_FIELDS = frozenset({"id", "question", "reference", "prediction", "label", "predicted_label", "loglik_label"})


def register_metric(metric: Metric, *, replace: bool = False) -> Metric:
    """Make `metric` available by its name to every scoring in this process; returns it.

    ValueError for a name taken by another metric (unless `replace`), a score name another metric or the
    prediction rows already use, or a metric that declares no scores."""
    if not isinstance(metric, Metric) or not metric.name or not metric.scores:
        raise ValueError(f"{metric!r} is not a metric: subclass bioqa.evaluate.registry.Metric, or use mean_metric")
    if metric.name in _REGISTRY and not replace:
        raise ValueError(f"a metric named {metric.name!r} is registered already; pass replace=True to replace it")
    taken = {s.name: m.name for m in _REGISTRY.values() if m.name != metric.name for s in m.scores}
    taken |= {s.name: "labels" for s in LABEL_SCORES} | {name: "prediction rows" for name in ROW_FIELDS}
    clashes = [f"{s.name} (used by {taken[s.name]})" for s in metric.scores if s.name in taken]
    if clashes:
        raise ValueError(f"metric {metric.name!r} reports scores whose names are taken: {', '.join(clashes)}")
    _REGISTRY[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    """Remove a registered metric (a notebook's experiment, a test's)."""
    _REGISTRY.pop(name, None)


def registered() -> dict[str, Metric]:
    """The registered metrics by name, in registration order (the built-ins first)."""
    return dict(_REGISTRY)


def get_metric(name: str) -> Metric:
    """The metric registered as `name`; ValueError naming the registered ones otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(_REGISTRY)} or register it first")
    return _REGISTRY[name]


def score_info(name: str) -> Score | None:
    """How a score (rougeL, bleu, accuracy, ...) is titled and scaled; None for a name nothing reports."""
    found = [s for m in _REGISTRY.values() for s in m.scores] + list(LABEL_SCORES)
    return next((s for s in found if s.name == name), None)


def metrics_reporting(names: Sequence[str]) -> tuple[str, ...]:
    """The registered metrics with a score among `names` (the keys of a prediction row)."""
    present = set(names)
    return tuple(m.name for m in _REGISTRY.values() if any(s.name in present for s in m.scores))
