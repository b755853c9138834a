"""Scores of generated answers: ROUGE, BLEU and METEOR by default, any registered metric on request; exact,
offline and fast.

Plain functions over lists of strings, for scripts and notebooks alike::

    import metrics_utils
    metrics_utils.compute_metrics(["IL-6 is a cytokine."], ["Interleukin 6 (IL-6) is a cytokine."])

The definitions equal the Hugging Face `evaluate` 0.4.6 metric scripts and use the same libraries:

* ROUGE (rouge1, rouge2, rougeL, rougeLsum; F1, 0-1 scale): `rouge_score` with evaluate's defaults
  (no stemmer, its default tokenizer, rougeLsum sentences split on newlines, the best-scoring
  reference per type for multi-reference). evaluate aggregates with an unseeded bootstrap median;
  we report the exact mean of per-example F1, which is deterministic.
* BLEU (0-100 scale): sacreBLEU corpus BLEU with its defaults (13a tokenizer, exp smoothing),
  with its signature string. References may differ in count per prediction.
* METEOR (0-1 scale): `nltk.translate.meteor_score` with alpha 0.9, beta 3, gamma 0.5 over
  `nltk.word_tokenize` tokens; multi-reference takes the maximum; the corpus score is the mean.
* exact_match and token_f1 (0-100 scale): the SQuAD v1.1 definitions, as `evaluate`'s "squad" metric
  (see bioqa.evaluate.builtin).

Each metric is a plug-in (bioqa.evaluate.registry): `register_metric` adds one for every scoring in the
process, and `metrics=` names which to compute.

Speed comes from doing each piece of work once, never from changing a definition: each distinct
text is tokenised once, rouge1/2 counts n-grams directly, rougeL uses a bit-parallel LCS that
gives the same lengths as rouge_score's table, METEOR gets NLTK's own stemmer and WordNet with
memoised lookups, BLEU is computed from sacreBLEU's per-sentence statistics (which also yield
per-example BLEU and bootstrap intervals without re-tokenising), and large inputs are split over
a pool of forked worker processes.

Text without ASCII letters or digits: rouge_score's tokenizer keeps only [a-z0-9] runs, so such a
text has no ROUGE tokens and scores ROUGE 0 even against itself; BLEU and METEOR tokenise Unicode
and still score it. Empty predictions or references score 0 on every metric (but two empty texts
match exactly, as in SQuAD).

Importing this module imports only the standard library; rouge-score, sacrebleu, nltk and numpy
load on first use. METEOR needs NLTK's WordNet and punkt_tab: `make setup` installs them into
./nltk_data, which is added to NLTK's search path when METEOR is first computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bioqa.errors import did_you_mean
from bioqa.evaluate import builtin
from bioqa.evaluate.bootstrap import bootstrap_intervals
from bioqa.evaluate.registry import Metric, MetricScores, get_metric, registered

Reference = str | Sequence[str]
ROUGE_TYPES = builtin.ROUGE_TYPES
DEFAULT_METRICS = builtin.DEFAULT_METRICS


def metric_names() -> tuple[str, ...]:
    """Every metric registered in this process (the built-ins first): what eval_metrics and metrics= take."""
    return tuple(registered())


def score_names(metrics: Sequence[str] | None = None) -> tuple[str, ...]:
    """The per-example scores the given metrics (default: all registered) report, in order."""
    chosen = registered() if metrics is None else {name: get_metric(name) for name in metrics}
    return tuple(score.name for metric in chosen.values() for score in metric.scores)


def unknown_metrics(names: Sequence[str], setting: str) -> str | None:
    """The problem with metric names nobody registered, for the setting that named them; None if all are known."""
    unknown = [name for name in names if name not in registered()]
    if not unknown:
        return None
    close = [hint for name in unknown if (hint := did_you_mean(name, registered()))]
    return (
        f"{setting} {' '.join(unknown)} unknown{' (' + '; '.join(close) + ')' if close else ''}; choose from "
        f"{' '.join(registered())}, or register the metric first (from Python: metrics_utils.register_metric)"
    )


# ----------------------------------------------------------------------------- input checks


def _check_inputs(predictions: Sequence[str], references: Sequence[Reference]) -> list[list[str]]:
    """Validate inputs; return references as one list of strings per prediction."""
    for name, value in (("predictions", predictions), ("references", references)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a list, got {type(value).__name__}")
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references differ in length: {len(predictions)} predictions, {len(references)} references"
        )
    if not predictions:
        raise ValueError("predictions is empty: there is nothing to score")
    for i, pred in enumerate(predictions):
        if not isinstance(pred, str):
            raise TypeError(f"predictions[{i}] is {type(pred).__name__}, expected str")
    return [_reference_list(ref, i) for i, ref in enumerate(references)]


def _reference_list(ref: Any, index: int) -> list[str]:
    if isinstance(ref, str):
        return [ref]
    if isinstance(ref, bytes) or not isinstance(ref, Sequence):
        raise TypeError(f"references[{index}] is {type(ref).__name__}, expected str or list of str")
    if not ref:
        raise ValueError(f"references[{index}] is an empty list; give at least one reference")
    for j, item in enumerate(ref):
        if not isinstance(item, str):
            raise TypeError(f"references[{index}][{j}] is {type(item).__name__}, expected str")
    return list(ref)


def _chosen_metrics(metrics: Sequence[str | Metric]) -> list[Metric]:
    """The metrics named (registered names, or Metric objects used as they are), in the order given, once each."""
    if isinstance(metrics, str) or not metrics:
        raise ValueError(f"metrics must be a non-empty list of metric names; registered: {list(registered())}")
    unknown = [m for m in metrics if not isinstance(m, Metric) and m not in registered()]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(registered())} or register them first")
    chosen = {m.name if isinstance(m, Metric) else m: m if isinstance(m, Metric) else get_metric(m) for m in metrics}
    return list(chosen.values())


# ----------------------------------------------------------------------------- scoring


@dataclass
class TextScores:
    """Per-example scores of one system, one `MetricScores` per metric, with the answers' lengths.

    `per_example` maps each score name (rouge types, "bleu" as sentence BLEU, "meteor", ...) to one score per
    example; `resampled` gives every corpus score over a resample, each by its metric's own corpus rule.
    """

    parts: dict[str, MetricScores]
    prediction_words: list[int]
    reference_words: list[int]

    def __len__(self) -> int:
        return len(self.prediction_words)

    @property
    def per_example(self) -> dict[str, list[float]]:
        return {name: values for part in self.parts.values() for name, values in part.per_example.items()}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.per_example)

    def resampled(self, indices: Any) -> dict[str, float]:
        """Every corpus score over the examples at `indices` (repeats allowed)."""
        return {name: value for part in self.parts.values() for name, value in part.corpus(indices).items()}

    def corpus(self) -> dict[str, Any]:
        """Corpus scores (each metric's own rule over all examples), length statistics in words, and the
        metrics' details (BLEU's signature)."""
        result: dict[str, Any] = {}
        for part in self.parts.values():
            result.update(part.corpus())
        n = len(self)
        result.update(
            {
                "num_examples": n,
                "pred_words_mean": sum(self.prediction_words) / n,
                "pred_words_max": max(self.prediction_words),
                "ref_words_mean": sum(self.reference_words) / n,
                "empty_predictions": self.prediction_words.count(0),
            }
        )
        for part in self.parts.values():
            result.update(part.details)
        return result

    def rows(self) -> list[dict[str, float]]:
        """One dict of scores per example, in input order."""
        per_example = self.per_example
        return [dict(zip(per_example, values)) for values in zip(*per_example.values())]


def score_predictions(
    predictions: Sequence[str],
    references: Sequence[Reference],
    *,
    metrics: Sequence[str | Metric] = DEFAULT_METRICS,
    num_workers: int | None = None,
    **options: Any,
) -> TextScores:
    """Score every prediction against its reference(s); see `compute_metrics` for the arguments."""
    refs = _check_inputs(predictions, references)
    chosen = _chosen_metrics(metrics)
    readers = {name for metric in [*chosen, *registered().values()] for name in metric.options}
    unread = sorted(set(options) - readers)
    if unread:
        raise TypeError(
            f"score_predictions() got unexpected keyword argument(s) {', '.join(unread)}: no metric reads them"
        )
    for metric in chosen:
        metric.check()
    parts = {}
    for metric in chosen:
        own = {key: value for key, value in options.items() if key in metric.options}
        parts[metric.name] = metric.score(list(predictions), refs, num_workers=num_workers, **own)
    return TextScores(
        parts,
        [len(p.split()) for p in predictions],
        [max(len(r.split()) for r in rs) for rs in refs],
    )


def compute_metrics(
    predictions: Sequence[str],
    references: Sequence[Reference],
    *,
    bootstrap_samples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    **options: Any,
) -> dict[str, Any]:
    """Corpus scores of `predictions` against `references`: ROUGE, BLEU and METEOR unless `metrics` says otherwise.

    Args:
        predictions: generated answers, one string each.
        references: for each prediction, a reference string or a list of reference strings.
        metrics: registered metric names or `Metric` objects (default rouge, bleu, meteor; also built in:
            exact_match and token_f1, SQuAD's; METEOR needs `make setup`'s NLTK data).
        rouge_types: ROUGE variants (default rouge1, rouge2, rougeL, rougeLsum); use_stemmer: Porter
            stemming for ROUGE (default False, as evaluate); rouge_tokenizer: a callable text -> tokens
            replacing rouge_score's default tokenizer.
        bleu_options: keyword arguments of `sacrebleu.metrics.BLEU` (tokenize, lowercase,
            smooth_method, smooth_value, effective_order, force); default sacreBLEU's own.
        meteor_alpha, meteor_beta, meteor_gamma: METEOR parameters (default 0.9, 3, 0.5).
        num_workers: processes for scoring; None picks by input size and CPU count (Linux only).
        bootstrap_samples: if > 0, add seeded percentile bootstrap intervals as `<metric>_ci_low`
            and `<metric>_ci_high`, at `confidence` (default 0.95) with `seed`; None with fewer than
            10 examples (bootstrap.MIN_EXAMPLES), where a bootstrap means nothing.

    Returns:
        rouge1, rouge2, rougeL, rougeLsum (mean per-example F1, 0-1), bleu (corpus BLEU, 0-100),
        meteor (mean, 0-1), num_examples, length statistics in whitespace words (pred_words_mean,
        pred_words_max, ref_words_mean, empty_predictions), bleu_signature, and the intervals.

    Raises:
        ValueError: lengths differ, no examples, an empty reference list or a metric nobody registered.
        TypeError: a prediction or reference that is not a string (the message names its index).
        MissingNLTKDataError: METEOR asked for without WordNet / punkt_tab installed.
    """
    scores = score_predictions(predictions, references, **options)
    result = scores.corpus()
    if bootstrap_samples > 0:
        intervals = bootstrap_intervals(scores, bootstrap_samples, confidence, seed)  # {} below MIN_EXAMPLES
        for name in scores.names:
            result[f"{name}_ci_low"], result[f"{name}_ci_high"] = intervals.get(name, (None, None))
    return result


def per_example_scores(
    predictions: Sequence[str], references: Sequence[Reference], **options: Any
) -> list[dict[str, float]]:
    """One dict of scores per example (ROUGE F1, sentence BLEU, METEOR, or the chosen metrics'), for error analysis."""
    return score_predictions(predictions, references, **options).rows()
